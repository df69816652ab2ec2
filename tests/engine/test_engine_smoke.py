from __future__ import annotations

from datetime import timedelta

from stackback.policy import BackupStatus, RunState
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicySpec
from stackback.store.sql import BackupFilter, RunFilter
from tests.engine.conftest import Rig


def test_daily_policy_keeps_last_three(rig: Rig) -> None:
    server = rig.sim.create_server("web1")
    rig.policies.create(
        PolicySpec(
            name="daily",
            targets=(server.id,),
            schedules=("0 1 * * *",),
            timezone="Europe/Amsterdam",
            retention=RetentionPolicy(last=3),
        )
    )
    rig.engine.drain(rig.clock.now() + timedelta(days=10, hours=2))
    runs = rig.store.list_runs(RunFilter())
    assert [r.state for r in runs] == [RunState.SUCCEEDED] * 10, [(r.state, r.error) for r in runs]
    alive = rig.store.list_backups(BackupFilter(target=server.id))
    assert [b.status for b in alive] == [BackupStatus.AVAILABLE] * 3
    deleted = rig.store.list_backups(BackupFilter(statuses=(BackupStatus.DELETED,)))
    assert len(deleted) == 7
    images = [i for i in rig.sim.images() if i.status != "deleted"]
    assert sorted(i.id for i in images) == sorted(b.artifacts[0].cloud_id for b in alive)
