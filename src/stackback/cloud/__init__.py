"""Cloud adapters behind the :class:`stackback.ports.Cloud` port.

``sim`` / ``sim:PATH`` name the built-in simulator; ``credential:<id>`` a stored
Keystone trust or application credential (opened by the provider's ``credentials``
hook); any other name is a clouds.yaml entry reached through openstacksdk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from stackback.errors import InvalidInput
from stackback.ports import Clock, Cloud
from stackback.records import credential_id_of

CredentialOpener = Callable[[str], Cloud]
"""Opens the cloud of a stored credential, by the credential's id."""


def is_simulator(spec: str) -> bool:
    return spec == "sim" or spec.startswith("sim:")


def check_cloud_name(spec: str) -> None:
    """Refuse a cloud that clouds.yaml does not define (reads the file; contacts nothing).

    A stored credential (``credential:<id>``) is not a clouds.yaml entry: it is looked up
    when it is opened."""
    if is_simulator(spec) or credential_id_of(spec) is not None:
        return
    from openstack import exceptions
    from openstack.config.loader import OpenStackConfig

    try:
        OpenStackConfig().get_one(cloud=spec)
    except exceptions.ConfigException as error:
        raise InvalidInput(
            f"cloud {spec!r} is not defined in clouds.yaml ({error})", field="os-cloud"
        ) from None


class CloudProvider:
    """Opens (and caches) the cloud a policy or run names, or the default one."""

    def __init__(
        self,
        default: str | None,
        clock: Clock,
        state_dir: Path,
        *,
        sim_project: str = "demo",
        credentials: CredentialOpener | None = None,
    ) -> None:
        self.default = default
        self.clock = clock
        self.state_dir = state_dir
        self.sim_project = sim_project
        self.credentials = credentials
        self._clouds: dict[str, Cloud] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str | None) -> Cloud:
        spec = name or self.default
        if not spec:
            raise InvalidInput(
                "no cloud selected: give --os-cloud NAME (a clouds.yaml entry), "
                "set OS_CLOUD, or use --os-cloud sim for the simulator",
                field="cloud",
            )
        with self._lock:
            if spec not in self._clouds:
                self._clouds[spec] = self._open(spec)
            return self._clouds[spec]

    def _open(self, spec: str) -> Cloud:
        credential_id = credential_id_of(spec)
        if credential_id is not None:
            if self.credentials is None:
                raise InvalidInput(
                    f"cloud {spec!r} is a stored credential, and this process has no Keystone "
                    "service account to use it (set STACKBACK_KEYSTONE_CLOUD)",
                    field="cloud",
                )
            return self.credentials(credential_id)
        if is_simulator(spec):
            from stackback.cloud.simulator import open_simulator

            return open_simulator(
                spec, self.clock, state_dir=self.state_dir, project=self.sim_project
            )
        from stackback.cloud.openstack import OpenStackCloud

        return OpenStackCloud.from_config(spec)
