"""Policies as files: after a database loss, `policy apply` brings the policies back with
their ids, and `reconcile` links the backups in the cloud to them again."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from stackback.services.policies import PolicyService
from stackback.services.policy_files import PolicyFiles
from stackback.services.reconcile import Reconciler
from stackback.store.database import create_db_engine, upgrade
from stackback.store.sql import BackupFilter, SqlStore
from tests.engine.conftest import Rig
from tests.engine.test_runs import DAY, daily


def test_a_reapplied_policy_gets_its_backups_back(rig: Rig, tmp_path: Path) -> None:
    web = rig.sim.create_server("web")
    policy = daily(rig, web.id, last=5)
    rig.engine.drain(rig.clock.now() + DAY + timedelta(hours=2))
    made = {b.id for b in rig.store.list_backups(BackupFilter())}
    assert len(made) == 2
    document = PolicyFiles(rig.policies).export()

    engine = create_db_engine(f"sqlite:///{tmp_path / 'new.db'}")
    upgrade(engine)
    fresh = SqlStore(engine)
    try:
        applied = PolicyFiles(PolicyService(fresh, rig.clock)).apply(document)
        assert [(c.action, c.policy_id) for c in applied] == [("create", policy.id)]
        restored = fresh.get_policy(policy.name)
        assert (restored.id, restored.targets, restored.retention) == (
            policy.id,
            policy.targets,
            policy.retention,
        )
        Reconciler(fresh, rig.sim, rig.clock, cloud_name=None).run(apply=True)
        relinked = fresh.list_backups(BackupFilter())
        assert {b.id for b in relinked} == made
        assert {(b.policy_id, b.policy_name) for b in relinked} == {(policy.id, policy.name)}
    finally:
        fresh.dispose()
