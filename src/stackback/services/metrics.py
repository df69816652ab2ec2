"""Prometheus metrics of a ``serve`` process (``--metrics-port``), on their own registry.

Three sources:
- counters this process updates as things happen: cloud API calls (a counting decorator
  around each Cloud), runs it finished with their durations (a decorator around the
  engine's store), lease takeovers (log records the store marks);
- gauges over the whole catalogue, refreshed by a periodic task of the engine loop (runs
  by policy and state, backups kept and protected, the queue, RPO age per target), and
  published together, so that a scrape never sees half a refresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from stackback.errors import StackbackError
from stackback.policy import ArtifactKind, Run, RunState
from stackback.ports import ArtifactRef, Cloud, CloudResolver, Store
from stackback.rpo import Verdict
from stackback.services.status import StatusService

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464
"""The port docs suggest for ``--metrics-port`` (the usual one of an OpenTelemetry exporter)."""

RUN_DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200)
TAKEOVER_LOGGER = "stackback.store.sql.runs"
TAKEOVER_RECORD = "stackback_takeover"
"""The log record attribute ``store.sql.runs`` sets on a lease taken over."""

_COMPUTE = {
    "get_server", "find_servers", "start_server_image", "validate_boot", "boot_server",
    "attach_volume", "rebuild_server", "delete_server", "console_output", "find_restored",
}  # fmt: skip
_VOLUME = {
    "create_volume", "delete_volume", "get_volume", "find_volumes", "start_volume_backup",
    "create_volume_from_backup",
}  # fmt: skip
_ARTIFACTS = {"find_artifacts", "artifact_statuses", "list_marked_artifacts"}
_BY_REF = {"set_artifact_metadata", "delete_artifact"}


def cloud_service(method: str, args: Sequence[Any]) -> str:
    """The OpenStack service a Cloud port call goes to, as a metric label."""
    if method in _COMPUTE:
        return "compute"
    if method in _VOLUME:
        return "volume"
    if method in _BY_REF and args and isinstance(args[0], ArtifactRef):
        return "image" if args[0].kind is ArtifactKind.IMAGE else "volume"
    if method == "resource_status" and args:
        return "compute" if args[0] == "server" else "volume"
    if method in _ARTIFACTS:
        return "image+volume"
    return "other"


class Metrics:
    """Every metric stackback exports, on one registry (not the process-global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.cloud_calls = Counter(
            "stackback_cloud_api_calls",
            "Calls of the Cloud port by OpenStack service, method and outcome (ok or error code).",
            ["service", "method", "status"],
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "stackback_runs_finished",
            "Runs this process finished, by policy and end state.",
            ["policy", "state"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "stackback_run_duration_seconds",
            "From a run's start to its end, for runs this process finished.",
            ["policy", "state"],
            buckets=RUN_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.lease_takeovers = Counter(
            "stackback_lease_takeovers",
            "Runs this process took over after another worker's lease expired.",
            registry=self.registry,
        )
        self.catalogue = CatalogueGauges()
        self.registry.register(self.catalogue)

    def count_cloud_call(self, service: str, method: str, status: str) -> None:
        self.cloud_calls.labels(service, method, status).inc()

    def finished(self, run: Run) -> None:
        policy = run.policy_name or "-"
        self.runs_finished.labels(policy, run.state.value).inc()
        if run.started_at is not None and run.finished_at is not None:
            seconds = max(0.0, (run.finished_at - run.started_at).total_seconds())
            self.run_duration.labels(policy, run.state.value).observe(seconds)

    def watch_takeovers(self) -> Callable[[], None]:
        """Count the takeovers the store logs (at INFO, which this makes sure is on);
        returns what undoes it."""
        logger = logging.getLogger(TAKEOVER_LOGGER)
        handler = _TakeoverCounter(self)
        level = logger.level
        if not logger.isEnabledFor(logging.INFO):
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)

        def unwatch() -> None:
            logger.removeHandler(handler)
            logger.setLevel(level)

        return unwatch


class _TakeoverCounter(logging.Handler):
    def __init__(self, metrics: Metrics) -> None:
        super().__init__(logging.DEBUG)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, TAKEOVER_RECORD, False):
            self.metrics.lease_takeovers.inc()


class CatalogueGauges(Collector):
    """Gauges refreshed periodically, swapped in as one snapshot."""

    def __init__(self) -> None:
        self._families: list[Metric] = []
        self._lock = threading.Lock()

    def publish(self, families: list[Metric]) -> None:
        with self._lock:
            self._families = families

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            families = list(self._families)
        yield from families

    def describe(self) -> Iterator[Metric]:
        return iter(())


def _public_methods(inner: object) -> dict[str, Callable[..., Any]]:
    """The public methods of ``inner``, to set on a decorator's instance: a runtime protocol
    check (``isinstance(x, RestoreCloud)``) reads attributes statically from Python 3.12
    on, and would not see through ``__getattr__``."""
    methods = {}
    for name in dir(type(inner)):
        if not name.startswith("_") and callable(getattr(type(inner), name, None)):
            methods[name] = getattr(inner, name)
    return methods


class CountingCloud:
    """A Cloud (and RestoreCloud) that counts each call by service, method and outcome.

    Every public method of the wrapped cloud is counted: whatever the port grows, no
    edit here.
    """

    def __init__(self, inner: Cloud, metrics: Metrics) -> None:
        self._inner = inner
        for name, method in _public_methods(inner).items():
            setattr(self, name, _counted(name, method, metrics))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _counted(name: str, method: Callable[..., Any], metrics: Metrics) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        service = cloud_service(name, args)
        try:
            result = method(*args, **kwargs)
        except StackbackError as error:
            metrics.count_cloud_call(service, name, error.code)
            raise
        except Exception:
            metrics.count_cloud_call(service, name, "unexpected")
            raise
        metrics.count_cloud_call(service, name, "ok")
        return result

    return counted


@dataclass
class CountingClouds:
    """A CloudResolver whose clouds count their calls (one decorator per cloud)."""

    inner: CloudResolver
    metrics: Metrics
    _wrapped: dict[int, Cloud] = field(default_factory=dict)

    def __call__(self, name: str | None) -> Cloud:
        cloud = self.inner(name)
        key = id(cloud)
        if key not in self._wrapped:
            self._wrapped[key] = cast(Cloud, CountingCloud(cloud, self.metrics))
        return self._wrapped[key]


class ObservedStore:
    """The engine's store, telling the metrics of every run that ends through it."""

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        for name, method in _public_methods(inner).items():
            if name != "update_run":
                setattr(self, name, method)
        self._inner = inner
        self._metrics = metrics

    def update_run(self, run_id: str, attempt: int, **values: Any) -> Run:
        run = self._inner.update_run(run_id, attempt, **values)
        state = values.get("state")
        if state is not None and RunState(state).is_terminal:
            self._metrics.finished(run)
        return run

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class StatsSource(Protocol):
    def run_counts(self) -> list[tuple[str | None, str, int]]: ...
    def backup_counts(self) -> list[tuple[str | None, bool, int]]: ...
    def backup_bytes(self) -> list[tuple[str | None, int]]: ...
    def queue_depth(self, now: datetime) -> tuple[int, datetime | None]: ...


class CatalogueRefresh:
    """The engine's periodic task that recomputes the catalogue gauges."""

    name = "metrics"

    def __init__(
        self,
        stats: StatsSource,
        status: StatusService,
        metrics: Metrics,
        *,
        interval: timedelta = timedelta(seconds=30),
    ) -> None:
        self.stats = stats
        self.status = status
        self.metrics = metrics
        self.interval = interval

    def run(self, now: datetime) -> None:
        self.metrics.catalogue.publish(self.families(now))

    def families(self, now: datetime) -> list[Metric]:
        runs = GaugeMetricFamily(
            "stackback_runs",
            "Runs in the catalogue by policy and state.",
            labels=["policy", "state"],
        )
        for policy, state, count in self.stats.run_counts():
            runs.add_metric([policy or "-", state], count)
        backups = GaugeMetricFamily(
            "stackback_backups",
            "Good (available) backups by policy: kept by retention, or protected.",
            labels=["policy", "kind"],
        )
        for policy, protected, count in self.stats.backup_counts():
            backups.add_metric([policy or "-", "protected" if protected else "kept"], count)
        size = GaugeMetricFamily(
            "stackback_backup_bytes",
            "Bytes of good backups by policy, where the cloud reports sizes.",
            labels=["policy"],
        )
        for policy, total in self.stats.backup_bytes():
            size.add_metric([policy or "-"], total)
        pending, oldest = self.stats.queue_depth(now)
        depth = GaugeMetricFamily(
            "stackback_queue_pending_runs", "Pending runs already due.", value=pending
        )
        lag = GaugeMetricFamily(
            "stackback_queue_lag_seconds",
            "How long the oldest due pending run has waited (0: none waiting).",
            value=(now - oldest).total_seconds() if oldest is not None else 0.0,
        )
        age = GaugeMetricFamily(
            "stackback_rpo_age_seconds",
            "Age of each target's newest good backup (targets with one).",
            labels=["policy", "target", "target_name"],
        )
        verdict = GaugeMetricFamily(
            "stackback_target_verdict",
            "1 for each target's recovery point verdict (ok, late, failing, never).",
            labels=["policy", "target", "target_name", "verdict"],
        )
        for report in self.status.report():
            names = [report.policy.name, report.target, report.target_name or ""]
            if report.age is not None:
                age.add_metric(names, report.age.total_seconds())
            verdict.add_metric([*names, Verdict(report.verdict).value], 1)
        return [runs, backups, size, depth, lag, age, verdict]


class MetricsUnavailable(StackbackError):
    """The metrics endpoint cannot listen (the port is taken, the address is not local)."""

    code = "metrics-unavailable"


@dataclass
class MetricsServer:
    """The ``/metrics`` endpoint (any path answers, as prometheus-client's server does)."""

    metrics: Metrics
    port: int
    address: str = "127.0.0.1"
    _stop: Callable[[], None] | None = None

    def start(self) -> int:
        """Listen; returns the port (useful with port 0)."""
        try:
            server, _thread = start_http_server(
                self.port, self.address, registry=self.metrics.registry
            )
        except OSError as error:
            raise MetricsUnavailable(
                f"metrics: cannot listen on {self.address}:{self.port}: {error.strerror or error}"
            ) from None

        def stop() -> None:
            server.shutdown()
            server.server_close()

        self._stop = stop
        return int(server.server_port)

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
