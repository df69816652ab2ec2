"""Verifications: a throwaway restore, checked, recorded on the backup, always removed —
after a pass, a failed check, a timeout and a crash of the worker; refusals create nothing;
a policy's verify cron fires them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from stackback.errors import InvalidInput, NotFound
from stackback.policy import BackupStatus
from stackback.restoreplan import RestoreMode, RestoreState
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.services.verify import VerifyScheduler, VerifyService
from stackback.verification import VerifyChecks, VerifyResult, VerifySettings
from tests.restore.conftest import RestoreRig
from tests.restore.test_restore_jobs import Crash, CrashAfter


def _service(rig: RestoreRig) -> VerifyService:
    return VerifyService(rig.store, lambda _name: rig.sim, rig.clock)


def _crash_then_take_over(rig: RestoreRig, job_id: str, operation: str) -> None:
    crashing = rig.runner(CrashAfter(rig.sim, operation), owner="doomed")
    with pytest.raises(Crash):
        for _ in range(50):
            claimed = rig.store.claim_restores(
                rig.clock.now(), "doomed", lease_seconds=300, job_id=job_id
            )
            if claimed:
                crashing.advance(claimed[0])
            rig.clock.advance(5)
    rig.clock.advance(301)  # the dead worker's lease runs out


def test_a_passed_verification_is_recorded_and_leaves_nothing_behind(rig: RestoreRig) -> None:
    source = rig.sim.create_server(
        "db", volume_backed=True, volumes=1, metadata={"backup": "nightly"}
    )
    backup = rig.backup(source.id)
    before = rig.inventory()

    job = _service(rig).start(
        backup.id, flavor="m1.tiny", checks=VerifyChecks(console_contains="LAST LINE")
    )
    assert job.mode is RestoreMode.VERIFY
    assert job.plan.name.startswith(f"verify-{backup.id[:8]}-")
    assert job.plan.networks == ()
    assert job.plan.metadata == {}  # a selector (backup=nightly) must not pick it up
    job = rig.runner().drive(job.id)

    assert job.state is RestoreState.SUCCEEDED, job.error
    assert job.verify_result == "passed"
    assert rig.inventory() == before
    assert rig.marked(job.id) == []
    verification = rig.store.get_backup(backup.id).verification
    assert verification is not None
    assert verification.result is VerifyResult.PASSED
    assert verification.restore_id == job.id
    assert verification.active_seconds is not None and verification.active_seconds >= 20
    assert "LAST LINE" in (verification.reason or "")
    assert [s.name for s in job.steps][-2:] == ["check", "cleanup"]


def test_a_failed_console_check_is_recorded_with_its_reason_and_cleaned_up(
    rig: RestoreRig,
) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    before = rig.inventory()
    rig.sim.configure(replace(rig.sim.config(), console_output="Kernel panic - not syncing"))

    job = _service(rig).start(
        backup.id, checks=VerifyChecks(console_contains="login:"), timeout=timedelta(minutes=5)
    )
    job = rig.runner().drive(job.id)

    assert job.state is RestoreState.FAILED
    assert rig.inventory() == before
    verification = rig.store.get_backup(backup.id).verification
    assert verification is not None and verification.result is VerifyResult.FAILED
    assert "does not contain 'login:'" in (verification.reason or "")
    assert verification.active_seconds is not None  # it did boot: the restore time is known
    assert rig.store.get_backup(backup.id).status is BackupStatus.AVAILABLE


def test_a_port_check_needs_the_port_to_answer(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    service = _service(rig)

    passed = rig.runner().drive(
        service.start(backup.id, network="isolated", checks=VerifyChecks(port=22)).id
    )
    failed = rig.runner().drive(
        service.start(
            backup.id,
            network="isolated",
            checks=VerifyChecks(port=5432),
            timeout=timedelta(minutes=2),
        ).id
    )

    assert passed.verify_result == "passed", passed.verify_reason
    assert failed.verify_result == "failed"
    assert "port 5432 does not answer" in (failed.verify_reason or "")
    assert rig.marked(passed.id) == [] and rig.marked(failed.id) == []


def test_a_server_that_never_boots_fails_the_verification_and_is_removed(
    rig: RestoreRig,
) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    before = rig.inventory()
    rig.sim.configure(replace(rig.sim.config(), server_boot_seconds=3600.0))

    job = rig.runner().drive(_service(rig).start(backup.id, timeout=timedelta(minutes=5)).id)

    assert job.state is RestoreState.FAILED
    verification = rig.store.get_backup(backup.id).verification
    assert verification is not None and verification.result is VerifyResult.FAILED
    assert "timed out" in (verification.reason or "")
    assert verification.active_seconds is None
    assert rig.inventory() == before


@pytest.mark.parametrize("operation", ["boot_server", "console_output", "delete_server"])
def test_a_crashed_worker_s_verification_is_finished_and_cleaned_up_by_a_takeover(
    rig: RestoreRig, operation: str
) -> None:
    source = rig.sim.create_server("db", volume_backed=True, volumes=1)
    backup = rig.backup(source.id)
    before = rig.inventory()
    job = _service(rig).start(backup.id, checks=VerifyChecks(console_contains="FAKE"))

    _crash_then_take_over(rig, job.id, operation)
    job = rig.runner(owner="survivor").drive(job.id)

    assert job.state is RestoreState.SUCCEEDED, job.error
    assert rig.inventory() == before
    assert rig.marked(job.id) == []
    verification = rig.store.get_backup(backup.id).verification
    assert verification is not None and verification.result is VerifyResult.PASSED


def test_a_cancelled_verification_records_no_verdict_and_cleans_up(rig: RestoreRig) -> None:
    source = rig.sim.create_server("web")
    backup = rig.backup(source.id)
    before = rig.inventory()
    job = _service(rig).start(backup.id)
    runner = rig.runner()
    (claimed,) = rig.store.claim_restores(rig.clock.now(), "w", lease_seconds=60, job_id=job.id)
    runner.advance(claimed)  # booting now
    rig.restores.cancel(job.id)

    job = runner.drive(job.id)

    assert job.state is RestoreState.CANCELLED
    assert rig.store.get_backup(backup.id).verification is None
    assert rig.inventory() == before


# -- refusals: one reason, nothing created ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "options", "message"),
    [
        ("deleting", {}, "being deleted"),
        ("failed", {}, "failed"),
        (None, {"flavor": "m1.huge"}, "m1.huge"),
        (None, {"network": "nowhere"}, "nowhere"),
        (None, {"checks": VerifyChecks(port=22)}, "needs a --network"),
    ],
)
def test_bad_input_is_refused_before_anything_is_created(
    rig: RestoreRig, change: str | None, options: dict[str, object], message: str
) -> None:
    source = rig.sim.create_server("web")
    rig.backup(source.id)
    backup = rig.backup(source.id)
    if change is not None:
        rig.store.update_backup(backup.id, status=change)
    before = rig.inventory()
    with pytest.raises(InvalidInput, match=message):
        _service(rig).start(backup.id, **options)  # type: ignore[arg-type]
    assert rig.store.list_restores() == []
    assert rig.inventory() == before


def test_an_unknown_backup_is_not_found(rig: RestoreRig) -> None:
    with pytest.raises(NotFound):
        _service(rig).start("no-such-backup")


# -- the verify schedule ---------------------------------------------------------------------


def _policy(rig: RestoreRig, servers: list[str], pick: str = "newest") -> str:
    policies = PolicyService(rig.store, rig.clock)
    policy = policies.create(
        PolicySpec(
            name="nightly",
            targets=tuple(servers),
            schedules=("0 1 * * *",),
            retention=RetentionPolicy(last=5),
        ),
        offline=True,
    )
    updated = rig.store.update_policy(
        replace(policy, verify=VerifySettings("0 3 * * *", flavor="m1.tiny", pick=pick)),
        None,
        now=rig.clock.now(),
    )
    return updated.id


def test_the_verify_cron_fires_one_verification_per_target_of_its_newest_backup(
    rig: RestoreRig,
) -> None:
    web = rig.sim.create_server("web")
    db = rig.sim.create_server("db")
    policy_id = _policy(rig, [web.id, db.id])
    rig.clock.advance_to(datetime(2030, 1, 1, 0, 0, tzinfo=UTC))
    rig.engine.verifier = VerifyScheduler(rig.store, lambda _name: rig.sim, rig.clock)
    before = rig.inventory()

    rig.engine.drain(datetime(2030, 1, 1, 2, 0, tzinfo=UTC))  # the nightly backups
    assert rig.store.list_restores() == []
    newest = {
        b.target: b.id for b in reversed(rig.store.list_backups()) if b.policy_id == policy_id
    }
    assert len(newest) == 2
    rig.engine.drain(datetime(2030, 1, 1, 3, 30, tzinfo=UTC))

    jobs = rig.store.list_restores()
    assert sorted(j.backup_id for j in jobs) == sorted(newest.values())
    assert {j.mode for j in jobs} == {RestoreMode.VERIFY}
    assert {j.state for j in jobs} == {RestoreState.SUCCEEDED}
    assert all(j.created_at == datetime(2030, 1, 1, 3, 0, tzinfo=UTC) for j in jobs)
    assert {j.plan.flavor for j in jobs} == {"m1.tiny"}
    assert rig.inventory()[0] == before[0]
    last = rig.store.last_policy_verification(policy_id)
    assert last is not None and last[1].result is VerifyResult.PASSED
    assert rig.store.verify_next_at(policy_id) == datetime(2030, 1, 2, 3, 0, tzinfo=UTC)


def test_random_of_n_picks_the_same_backup_for_the_same_occurrence(rig: RestoreRig) -> None:
    web = rig.sim.create_server("web")
    policy_id = _policy(rig, [web.id], pick="random-of-3")
    for _ in range(4):
        run = rig.backups.backup_now(web.id, label=None, keep_last=None, cloud=None)
        rig.engine.drain(rig.clock.now() + timedelta(hours=1))
        rig.store.update_backup(rig.store.get_run(run.id).backup_id or "", policy_id=policy_id)
    scheduler = VerifyScheduler(rig.store, lambda _name: rig.sim, rig.clock)
    policy = rig.store.get_policy(policy_id)
    newest3 = {b.id for b in rig.store.list_backups()[:3]}

    picks = [
        scheduler.choose(policy, datetime(2030, 1, day, 3, tzinfo=UTC))[0].id
        for day in range(1, 29)
    ]

    assert set(picks) <= newest3
    assert len(set(picks)) > 1  # not always the newest
    again = [
        scheduler.choose(policy, datetime(2030, 1, day, 3, tzinfo=UTC))[0].id
        for day in range(1, 29)
    ]
    assert again == picks


def test_an_unplannable_scheduled_verification_is_recorded_failed(rig: RestoreRig) -> None:
    web = rig.sim.create_server("web")
    policy_id = _policy(rig, [web.id])
    policy = rig.store.get_policy(policy_id)
    assert policy.verify is not None
    rig.store.update_policy(
        replace(policy, verify=replace(policy.verify, network="gone")), None, now=rig.clock.now()
    )
    run = rig.backups.backup_now(web.id, label=None, keep_last=None, cloud=None)
    rig.engine.drain(rig.clock.now() + timedelta(hours=1))
    backup_id = rig.store.get_run(run.id).backup_id or ""
    rig.store.update_backup(backup_id, policy_id=policy_id)
    scheduler = VerifyScheduler(rig.store, lambda _name: rig.sim, rig.clock)
    rig.clock.advance(24 * 3600)

    assert scheduler.tick(rig.clock.now()) == 0

    verification = rig.store.get_backup(backup_id).verification
    assert verification is not None and verification.result is VerifyResult.FAILED
    assert "gone" in (verification.reason or "")
    assert rig.store.list_restores() == []


def test_a_disabled_policy_does_not_verify_until_enabled_again(rig: RestoreRig) -> None:
    web = rig.sim.create_server("web")
    policy_id = _policy(rig, [web.id])
    policies = PolicyService(rig.store, rig.clock)
    assert rig.store.verify_next_at(policy_id) is not None

    policies.set_enabled(policy_id, False)
    assert rig.store.verify_next_at(policy_id) is None
    assert rig.store.next_verify_time() is None

    policies.set_enabled(policy_id, True)
    assert rig.store.verify_next_at(policy_id) is not None
