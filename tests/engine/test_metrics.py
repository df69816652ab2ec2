"""Prometheus metrics over real runs: counted cloud calls, finished runs and their durations,
catalogue gauges, lease takeovers, and the /metrics endpoint."""

from __future__ import annotations

import inspect
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest

from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.policy import RunState
from stackback.ports import RestoreCloud, RestoreJobStore
from stackback.records import RunFilter
from stackback.services.metrics import (
    CatalogueRefresh,
    CountingClouds,
    Metrics,
    MetricsServer,
    MetricsUnavailable,
    ObservedStore,
)
from stackback.services.status import StatusService
from tests.engine.conftest import Rig
from tests.engine.test_runs import DAY, daily


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    metrics = Metrics()
    unwatch = metrics.watch_takeovers()
    yield metrics
    unwatch()


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def observed_engine(rig: Rig, metrics: Metrics) -> Engine:
    return Engine(
        ObservedStore(rig.store, metrics),  # type: ignore[arg-type]
        CountingClouds(lambda _name: rig.sim, metrics),
        rig.clock,
        EngineSettings(),
        worker_name="w-metrics",
        periodic=[CatalogueRefresh(rig.store, StatusService(rig.store, rig.clock), metrics)],
    )


def test_runs_calls_and_the_catalogue_are_measured(rig: Rig, metrics: Metrics) -> None:
    web = rig.sim.create_server("web")
    db = rig.sim.create_server("db")
    daily(rig, web.id, db.id, last=5)
    daily(rig, "ghost", last=5)
    engine = observed_engine(rig, metrics)
    engine.drain(rig.clock.now() + DAY + timedelta(hours=3))
    runs = rig.store.list_runs(RunFilter(limit=1000))
    good = sum(1 for r in runs if r.policy_name == "p0" and r.state is RunState.SUCCEEDED)
    failed = sum(1 for r in runs if r.policy_name == "p1" and r.state is RunState.FAILED)
    assert good >= 2 and failed >= 1 and good + failed == len(runs)

    assert value(metrics, "stackback_runs_finished_total", policy="p0", state="succeeded") == good
    assert value(metrics, "stackback_runs_finished_total", policy="p1", state="failed") == failed
    count = value(metrics, "stackback_run_duration_seconds_count", policy="p0", state="succeeded")
    assert count == good
    total = value(metrics, "stackback_run_duration_seconds_sum", policy="p0", state="succeeded")
    assert total is not None and total > 0
    calls = "stackback_cloud_api_calls_total"
    started = value(metrics, calls, service="compute", method="start_server_image", status="ok")
    assert started == good
    assert value(metrics, calls, service="compute", method="get_server", status="cloud-not-found")

    assert value(metrics, "stackback_runs", policy="p0", state="succeeded") == good
    assert value(metrics, "stackback_runs", policy="p1", state="failed") == failed
    assert value(metrics, "stackback_backups", policy="p0", kind="kept") == good
    assert value(metrics, "stackback_queue_pending_runs") == 0
    sizes = [a.size for b in rig.store.list_backups() for a in b.artifacts if a.size]
    assert sizes and value(metrics, "stackback_backup_bytes", policy="p0") == sum(sizes)
    assert value(metrics, "stackback_queue_lag_seconds") == 0
    age = value(metrics, "stackback_rpo_age_seconds", policy="p0", target=web.id, target_name="web")
    assert age is not None and 0 < age < DAY.total_seconds()
    verdict = "stackback_target_verdict"
    assert value(metrics, verdict, policy="p1", target="ghost", target_name="", verdict="never")

    rig.store.set_protected(rig.store.list_backups()[0].id, True)
    engine.run_periodic(rig.clock.now() + timedelta(hours=1))
    assert value(metrics, "stackback_backups", policy="p0", kind="protected") == 1
    assert value(metrics, "stackback_backups", policy="p0", kind="kept") == good - 1


def test_the_queue_shows_due_runs_waiting(rig: Rig, metrics: Metrics) -> None:
    rig.sim.create_server("web")
    daily(rig, "web", last=5)
    engine = observed_engine(rig, metrics)
    engine.run_worker = False  # a scheduler alone: due runs wait
    engine.drain(rig.clock.now() + DAY + timedelta(minutes=30))
    assert value(metrics, "stackback_queue_pending_runs") == 1
    lag = value(metrics, "stackback_queue_lag_seconds")
    assert lag is not None and lag > 0


def test_a_lease_taken_over_is_counted(rig: Rig, metrics: Metrics) -> None:
    run = rig.store.create_manual_run(target="web", now=rig.clock.now(), label=None, retention=None)
    rig.store.claim_runs(rig.clock.now(), "worker-a", lease_seconds=30, run_id=run.id)
    rig.clock.advance(60)  # worker-a died
    rig.store.claim_runs(rig.clock.now(), "worker-b", lease_seconds=30, run_id=run.id)
    assert value(metrics, "stackback_lease_takeovers_total") == 1
    rig.clock.advance(60)  # its own expired lease, claimed again, is no takeover
    rig.store.claim_runs(rig.clock.now(), "worker-b", lease_seconds=30, run_id=run.id)
    assert value(metrics, "stackback_lease_takeovers_total") == 1


def test_the_endpoint_serves_the_registry(metrics: Metrics) -> None:
    metrics.count_cloud_call("compute", "get_server", "ok")
    server = MetricsServer(metrics, 0)
    port = server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    finally:
        server.stop()
    assert (
        'stackback_cloud_api_calls_total{method="get_server",service="compute",status="ok"} 1.0'
        in text
    )
    assert "stackback_lease_takeovers_total 0.0" in text


def test_the_decorators_keep_the_ports_they_wrap(rig: Rig, metrics: Metrics) -> None:
    """Restores need ``isinstance(cloud, RestoreCloud)`` and the engine
    ``isinstance(store, RestoreJobStore)``; from Python 3.12 those checks read attributes
    statically, past any ``__getattr__``."""
    cloud = CountingClouds(lambda _name: rig.sim, metrics)(None)
    store = ObservedStore(rig.store, metrics)
    assert isinstance(cloud, RestoreCloud) and isinstance(store, RestoreJobStore)
    for name in ("boot_server", "start_server_image", "find_restored"):
        assert callable(inspect.getattr_static(cloud, name))
    for name in ("claim_restores", "update_restore", "claim_runs", "update_run"):
        assert callable(inspect.getattr_static(store, name))
    engine = observed_engine(rig, metrics)
    assert engine.restores is not None


def test_a_taken_port_is_one_clear_error(metrics: Metrics) -> None:
    first = MetricsServer(metrics, 0)
    port = first.start()
    try:
        with pytest.raises(MetricsUnavailable, match=f"127.0.0.1:{port}"):
            MetricsServer(metrics, port).start()
    finally:
        first.stop()
