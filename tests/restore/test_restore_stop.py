"""A stop hands the restore jobs a worker claimed but did not advance back at once."""

from __future__ import annotations

import threading

from stackback.restoreplan import RestoreState
from tests.restore.conftest import RestoreRig


def test_a_stop_gives_claimed_restores_back(rig: RestoreRig) -> None:
    backups = [rig.backup(rig.sim.create_server(name).id) for name in ("web", "db")]
    jobs = [rig.restores.start(backup.id) for backup in backups]
    stop = threading.Event()
    stop.set()
    assert rig.runner().work_once(stop=stop) == 0
    for job in jobs:
        after = rig.store.get_restore(job.id)
        assert after.state is RestoreState.PENDING
        assert (after.lease_owner, after.lease_expires_at) == (None, None)
