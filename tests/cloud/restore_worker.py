"""A restore worker that dies like ``kill -9`` the moment Nova has accepted its boot.

``python restore_worker.py DB_URL CLOUD JOB_ID LEASE_SECONDS``: drives the job with the
openstacksdk adapter for CLOUD (clouds.yaml from ``OS_CLIENT_CONFIG_FILE``) and SIGKILLs
itself right after ``boot_server`` returns, before the job records the server: the
window a takeover must survive without booting a second server.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import timedelta

import openstack

from stackback.clock import SystemClock
from stackback.cloud.openstack import OpenStackCloud
from stackback.engine.restore import RestoreRunner
from stackback.ports import BootRequest
from stackback.store.sql import SqlStore


class DiesAfterBoot(OpenStackCloud):
    """The openstacksdk adapter, except that the process dies once a boot was accepted."""

    def boot_server(self, request: BootRequest) -> str:
        super().boot_server(request)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("not reached")


def main(db_url: str, cloud_name: str, job_id: str, lease_seconds: str) -> None:
    cloud = DiesAfterBoot(lambda: openstack.connect(cloud=cloud_name), cloud_name=cloud_name)
    runner = RestoreRunner(
        SqlStore.from_url(db_url),
        lambda _: cloud,
        SystemClock(),
        owner="doomed",
        lease=timedelta(seconds=float(lease_seconds)),
        poll=timedelta(seconds=1),
    )
    runner.drive(job_id)
    sys.exit("the restore ended without a boot")


if __name__ == "__main__":
    main(*sys.argv[1:])
