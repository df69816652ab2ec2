"""``PolicyService.run_now`` (``openstack backup policy run``): one on-demand run per target
of the policy, carried out and rotated as the policy's own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stackback.errors import CloudUnavailable, Conflict, ServerLookupFailed
from stackback.policy import BackupStatus, RunState
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.services.servers import ServerDirectory
from stackback.store.sql import BackupFilter
from tests.engine.conftest import Rig


def service(rig: Rig) -> PolicyService:
    return PolicyService(rig.store, rig.clock, ServerDirectory(lambda _name: rig.sim))


def test_each_target_is_backed_up_now_and_the_policy_rotates_them(rig: Rig) -> None:
    web, db = rig.sim.create_server("web"), rig.sim.create_server("db")
    policies = service(rig)
    policy = policies.create(
        PolicySpec(
            name="p",
            targets=("web", db.id),
            schedules=("0 1 1 1 *",),  # not during the test: only run_now's runs
            retention=RetentionPolicy(last=1),
            label="nightly",
        ),
        offline=True,
    )
    for _ in range(2):
        runs = policies.run_now("p")
        assert [(r.target, r.policy_id, r.label, r.trigger) for r in runs] == [
            ("web", policy.id, "nightly", "manual"),
            (db.id, policy.id, "nightly", "manual"),
        ]
        rig.engine.drain(rig.clock.now() + timedelta(minutes=30))
        assert [rig.store.get_run(r.id).state for r in runs] == [RunState.SUCCEEDED] * 2
    for server in (web, db):  # keep-last 1 of the policy: the first backup was forgotten
        kept = rig.store.list_backups(BackupFilter(target=server.id))
        assert [(b.status, b.policy_id) for b in kept] == [(BackupStatus.AVAILABLE, policy.id)]


def test_a_selector_is_resolved_now(rig: Rig) -> None:
    policies = service(rig)
    policies.create(
        PolicySpec(name="sel", selector="backup=yes", schedules=("0 1 * * *",), keep_all=True)
    )
    with pytest.raises(Conflict, match="no target"):
        policies.run_now("sel")
    tagged = rig.sim.create_server("tagged", metadata={"backup": "yes"})
    rig.sim.create_server("other")
    assert [r.target for r in policies.run_now("sel")] == [tagged.id]
    rig.sim.fail_next("find_servers", CloudUnavailable)
    with pytest.raises(ServerLookupFailed, match="selector backup=yes"):
        policies.run_now("sel")
