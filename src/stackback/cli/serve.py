"""``stackback serve | scheduler | worker``: the long-running engine processes."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import click

from stackback.cli import logs
from stackback.cli.api_server import api_options
from stackback.cli.context import AppContext
from stackback.cli.policy import pass_app
from stackback.cli.systemd import Notifier
from stackback.clock import ScaledClock
from stackback.engine.loop import Engine, Periodic
from stackback.engine.settings import EngineSettings
from stackback.errors import InvalidInput
from stackback.notify.config import alerts_path, load_alerts
from stackback.ports import Clock, CloudResolver, Store
from stackback.services.alerts import AlertingStore, AlertService
from stackback.services.metrics import (
    DEFAULT_PORT,
    CatalogueRefresh,
    CountingClouds,
    Metrics,
    MetricsServer,
    ObservedStore,
    StatsSource,
)
from stackback.services.status import StatusService
from stackback.services.verify import VerifyScheduler

log = logging.getLogger(__name__)

LONGEST_DURATION = timedelta(days=365)
STATUS_EVERY_SECONDS = 5.0
"""At most this often (real seconds) an engine process tells systemd what it has done."""
FASTEST_TIME_SCALE = 10_000.0
LATEST_TIME_ORIGIN = datetime(3000, 1, 1, tzinfo=UTC)


def engine_options(func: Any) -> Any:
    options = [
        click.option(
            "--poll-interval",
            type=float,
            metavar="S",
            envvar="STACKBACK_POLL_INTERVAL",
            help="Seconds between status polls. Env: STACKBACK_POLL_INTERVAL.",
        ),
        click.option(
            "--lease",
            type=float,
            metavar="S",
            envvar="STACKBACK_LEASE",
            help="Run lease in seconds. Env: STACKBACK_LEASE.",
        ),
        click.option(
            "--grace",
            type=float,
            metavar="S",
            envvar="STACKBACK_GRACE",
            help="How late a run may start (seconds). Env: STACKBACK_GRACE.",
        ),
        click.option(
            "--retry-window",
            type=float,
            metavar="S",
            envvar="STACKBACK_RETRY_WINDOW",
            help="Retry busy/failing clouds this long (seconds). Env: STACKBACK_RETRY_WINDOW.",
        ),
        click.option(
            "--max-snapshots-per-host",
            type=click.IntRange(min=1),
            envvar="STACKBACK_MAX_SNAPSHOTS_PER_HOST",
            help="At most this many snapshots in progress per compute host (default: no "
            "limit); runs then start as their hosts have room, within their window. "
            "Env: STACKBACK_MAX_SNAPSHOTS_PER_HOST.",
        ),
        click.option("--once", is_flag=True, help="One cycle, then exit."),
        click.option("--worker-name", metavar="NAME", help="Name of this worker in leases."),
        click.option(
            "--alerts",
            "alerts_file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="STACKBACK_ALERTS",
            help="Alerts file (YAML, docs/alerts.md); default: alerts.yaml in the state "
            "directory if it exists. Env: STACKBACK_ALERTS.",
        ),
        click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            envvar="STACKBACK_METRICS_PORT",
            help=f"Serve Prometheus metrics on this port (off by default; {DEFAULT_PORT} is "
            "the usual one). Env: STACKBACK_METRICS_PORT.",
        ),
        click.option(
            "--metrics-address",
            default="127.0.0.1",
            show_default=True,
            metavar="ADDR",
            envvar="STACKBACK_METRICS_ADDRESS",
            help="Address the metrics endpoint listens on (0.0.0.0: every interface). "
            "Env: STACKBACK_METRICS_ADDRESS.",
        ),
        click.option(
            "--time-scale",
            type=float,
            hidden=True,
            help="Testing: run the clock this many times faster from --time-origin.",
        ),
        click.option(
            "--time-origin", type=float, hidden=True, help="Testing: epoch seconds (default: now)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _finite(options: dict[str, Any], name: str) -> float:
    value = float(options[name])
    if not math.isfinite(value):
        raise InvalidInput(f"{_option(name)} must be a finite number, not {value}", field=name)
    return value


def _duration(options: dict[str, Any], name: str) -> timedelta:
    seconds = _finite(options, name)
    if seconds > LONGEST_DURATION.total_seconds():
        raise InvalidInput(
            f"{_option(name)} must be at most {LONGEST_DURATION.total_seconds():.0f} seconds "
            f"(a year), not {seconds:g}",
            field=name,
        )
    duration = timedelta(seconds=seconds)
    if duration <= timedelta(0):
        raise InvalidInput(
            f"{_option(name)} must be positive (at least a microsecond), not {seconds:g}",
            field=name,
        )
    return duration


def _settings(options: dict[str, Any]) -> EngineSettings:
    base = EngineSettings()
    values = {
        name: _duration(options, name)
        for name in ("poll_interval", "lease", "grace", "retry_window")
        if options.get(name) is not None
    }
    limit = options.get("max_snapshots_per_host")
    return EngineSettings(**{**base.__dict__, **values, "max_snapshots_per_host": limit})


def _scaled_clock(options: dict[str, Any], real: Clock) -> ScaledClock:
    factor = _finite(options, "time_scale")
    if not 0 < factor <= FASTEST_TIME_SCALE:
        raise InvalidInput(
            f"--time-scale must be more than 0 and at most {FASTEST_TIME_SCALE:g}, not {factor:g}",
            field="time_scale",
        )
    if options.get("time_origin") is not None:
        epoch = _finite(options, "time_origin")
    else:  # from now: processes meant to agree on the time share an explicit origin
        epoch = float(int(real.now().timestamp()))
    if not 0 <= epoch <= LATEST_TIME_ORIGIN.timestamp():
        raise InvalidInput(
            f"--time-origin must be epoch seconds from 0 to {LATEST_TIME_ORIGIN.timestamp():.0f} "
            f"(the year {LATEST_TIME_ORIGIN.year}), not {epoch:g}",
            field="time_origin",
        )
    return ScaledClock(datetime.fromtimestamp(epoch, UTC), factor)


def _run_engine(
    app: AppContext,
    /,
    options: dict[str, Any],
    *,
    scheduler: bool,
    worker: bool,
    api: bool = False,
    engine_on: bool = True,
) -> None:
    settings = _settings(options)
    if options.get("time_scale"):
        app.clock = _scaled_clock(options, app.clock)
    monitoring = _monitoring(app, options, api_metrics=api and engine_on)
    credentials = app.credentials
    if credentials is not None:
        from stackback.services.keystone import CredentialSweep

        monitoring.periodic.append(CredentialSweep(credentials))
    engine = Engine(
        monitoring.store,
        monitoring.clouds,
        app.clock,
        settings,
        run_scheduler=scheduler,
        run_worker=worker,
        worker_name=options.get("worker_name"),
        periodic=monitoring.periodic,
        verifier=VerifyScheduler(app.store, app.clouds, app.clock),
        release_credential=credentials.release if credentials is not None else None,
    )
    # One INFO line per finished run; -v adds every step (DEBUG).
    logging.getLogger("stackback").setLevel(logging.DEBUG if app.verbose else logging.INFO)
    if options.get("once"):
        if engine_on:
            engine.step()
            engine.run_periodic()
        return
    server = None
    if api:
        from stackback.cli.api_server import api_server

        server = api_server(app, options, metrics=monitoring.metrics)
    if monitoring.server is not None:
        port = monitoring.server.start()
        click.echo(f"metrics on http://{options['metrics_address']}:{port}/metrics", err=True)
    stop = threading.Event()
    role = (
        "scheduler and worker" if scheduler and worker else "scheduler" if scheduler else "worker"
    )
    systemd = Notifier()
    progress = _Progress(systemd, f"{role} {engine.worker.name}", app.clock)

    def _stop(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            progress.stopping = True
            systemd.stopping(
                f"stopping on {signal.Signals(signum).name}: finishing the step in progress"
            )
            log.info("stopping on %s: claiming nothing more", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if engine_on:
        click.echo(f"stackback {role} {engine.worker.name} running; Ctrl-C stops", err=True)
    if server is not None:
        server.start()
        metrics_note = f"; metrics on {server.url}/metrics" if monitoring.metrics else ""
        click.echo(f"API on {server.url}/v1{metrics_note}", err=True)
    rate = float(getattr(app.clock, "factor", 1.0))
    try:
        if engine_on:
            engine.serve(
                stop,
                idle_max=min(5.0, engine.settings.poll_interval.total_seconds() / rate),
                on_started=progress.started,
                on_cycle=progress.cycle,
            )
        else:
            progress.started()
            stop.wait()
    finally:
        if server is not None:
            server.stop()
        if monitoring.server is not None:
            monitoring.server.stop()
    if engine_on:
        click.echo(f"stackback {role} {engine.worker.name} stopped", err=True)


class _Progress:
    """What ``systemctl status`` shows of an engine process: ready, then what it has done."""

    def __init__(self, notifier: Notifier, who: str, clock: Clock) -> None:
        self.notifier = notifier
        self.who = who
        self.clock = clock
        self.work = 0
        self.stopping = False
        """Once set, STATUS says so and is not overwritten by the last steps' progress."""
        self._told: float | None = None

    def started(self) -> None:
        self.notifier.ready(f"{self.who}: serving")

    def cycle(self, done: int) -> None:
        if not self.notifier.enabled or not done or self.stopping:
            return
        self.work += done
        now = time.monotonic()
        if self._told is not None and now - self._told < STATUS_EVERY_SECONDS:
            return
        self._told = now
        at = f"{self.clock.now().astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        self.notifier.status(f"{self.who}: serving; {self.work} steps since start, last at {at}")


@dataclass
class _Monitoring:
    store: Store
    clouds: CloudResolver
    periodic: list[Periodic] = field(default_factory=list)
    server: MetricsServer | None = None
    metrics: Metrics | None = None


def _monitoring(app: AppContext, options: dict[str, Any], *, api_metrics: bool) -> _Monitoring:
    """Alerts (from the alerts file) and metrics (with --metrics-port, or on the API's
    /metrics when ``api_metrics``), as periodic tasks of the engine and decorators of its
    store and clouds."""
    monitoring = _Monitoring(app.store, app.clouds)
    status = StatusService(app.store, app.clock)
    path = alerts_path(options.get("alerts_file"), app.settings.state_dir)
    if path is not None:
        alerts = load_alerts(path)
        for secret in alerts.secrets():
            logs.register_secret(secret)
        monitoring.periodic.append(
            AlertService(
                cast(AlertingStore, app.store),
                app.clock,
                alerts.channels,
                interval=alerts.interval,
                deletion_failing_after=alerts.deletion_failing_after,
                status=status,
            )
        )
        click.echo(f"alerts: {len(alerts.channels)} channel(s) from {path}", err=True)
    port = options.get("metrics_port")
    if port is not None or api_metrics:
        metrics = Metrics()
        monitoring.metrics = metrics
        monitoring.store = cast(Store, ObservedStore(app.store, metrics))
        monitoring.clouds = CountingClouds(app.clouds, metrics)
        metrics.watch_takeovers()
        stats = cast(StatsSource, app.store)
        monitoring.periodic.append(CatalogueRefresh(stats, status, metrics))
        if port is not None:
            monitoring.server = MetricsServer(metrics, port, options["metrics_address"])
    return monitoring


@click.command("serve")
@engine_options
@api_options
@click.option("--no-api", is_flag=True, help="Scheduler and workers only, no API.")
@click.option("--api-only", is_flag=True, help="Only the API (no scheduler, no workers).")
@pass_app
def serve(app: AppContext, /, no_api: bool, api_only: bool, **options: Any) -> None:
    """The REST API, the scheduler and workers in one process (/metrics on the API, or on
    --metrics-port without it). In local mode the API's token is printed once, when made."""
    if no_api and api_only:
        raise click.UsageError("--no-api and --api-only exclude each other")
    _run_engine(app, options, scheduler=True, worker=True, api=not no_api, engine_on=not api_only)


@click.command("scheduler")
@engine_options
@pass_app
def scheduler(app: AppContext, /, **options: Any) -> None:
    """Only the scheduler: turns due schedules into runs (safe to run several)."""
    _run_engine(app, options, scheduler=True, worker=False)


@click.command("worker")
@engine_options
@pass_app
def worker(app: AppContext, /, **options: Any) -> None:
    """Only a worker: claims runs and takes the backups (run as many as needed)."""
    _run_engine(app, options, scheduler=False, worker=True)


COMMANDS = [serve, scheduler, worker]
