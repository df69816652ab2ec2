"""The :class:`~stackback.ports.Cloud` adapter over a real OpenStack (openstacksdk).

``adapter`` holds :class:`OpenStackCloud`; ``convert`` turns openstacksdk resources into
the port's value objects; ``errors`` maps SDK exceptions onto stackback's; ``images``
lists Glance images in batches.
"""

from stackback.cloud.openstack.adapter import IMAGE_IDS_PER_LISTING, OpenStackCloud

__all__ = ["IMAGE_IDS_PER_LISTING", "OpenStackCloud"]
