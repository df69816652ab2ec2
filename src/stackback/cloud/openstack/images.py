"""Glance image listings that filter on custom properties on the server.

openstacksdk's ``image.images(**query)`` silently drops query keys it does not know, and
custom properties are never known to it, although Glance filters on them
(``GET /v2/images?stackback_run=X`` answers only the matching images; seen on Glance 33).
The listing here sends them; callers still check the pairs themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from keystoneauth1.adapter import Adapter
from openstack import resource
from openstack.image.v2.image import Image

#: Query parameters openstacksdk's Image already maps (Glance core filters).
IMAGE_QUERY_NAMES = frozenset(
    {
        "id", "name", "visibility", "member_status", "owner", "status", "size_min",
        "size_max", "protected", "is_hidden", "os_hidden", "sort_key", "sort_dir", "sort",
        "tag", "created_at", "updated_at", "limit", "marker",
    }
)  # fmt: skip
#: Keyword names ``Resource.list`` takes for itself: never usable as filters.
LIST_ARGUMENTS = frozenset(
    {"session", "paginated", "base_path", "allow_unknown_params", "microversion", "headers",
     "max_items"}
)  # fmt: skip


def property_filters(metadata: Mapping[str, str]) -> dict[str, str]:
    """The pairs Glance can match exactly: custom keys, non-empty values without operators."""
    return {
        key: value
        for key, value in metadata.items()
        if key not in IMAGE_QUERY_NAMES | LIST_ARGUMENTS and value and ":" not in value
    }


@functools.cache
def _filtered_image_class(keys: frozenset[str]) -> type[Image]:
    query = resource.QueryParameters(
        *(IMAGE_QUERY_NAMES - {"is_hidden", "os_hidden", "limit", "marker"}),
        *sorted(keys),
        is_hidden="os_hidden",
    )
    return type("PropertyFilteredImage", (Image,), {"_query_mapping": query})


def list_images(proxy: Adapter, owner: str, metadata: Mapping[str, str]) -> Iterator[Image]:
    """The images of ``owner``, narrowed by Glance to those carrying ``metadata`` (if it can).

    Pairs Glance cannot match exactly are left out of the query: check them on the result.
    """
    filters = property_filters(metadata)
    image_class = _filtered_image_class(frozenset(filters))
    query: dict[str, Any] = {**filters, "owner": owner}
    return image_class.list(proxy, **query)
