"""``stackback serve | scheduler | worker``: the long-running engine processes."""

from __future__ import annotations

import math
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from stackback.cli.context import AppContext
from stackback.cli.policy import pass_app
from stackback.clock import ScaledClock
from stackback.engine.loop import Engine
from stackback.engine.settings import EngineSettings
from stackback.errors import InvalidInput
from stackback.ports import Clock
from stackback.services.verify import VerifyScheduler

LONGEST_DURATION = timedelta(days=365)
FASTEST_TIME_SCALE = 10_000.0
LATEST_TIME_ORIGIN = datetime(3000, 1, 1, tzinfo=UTC)


def engine_options(func: Any) -> Any:
    options = [
        click.option(
            "--poll-interval", type=float, metavar="S", help="Seconds between status polls."
        ),
        click.option("--lease", type=float, metavar="S", help="Run lease in seconds."),
        click.option(
            "--grace", type=float, metavar="S", help="How late a run may start (seconds)."
        ),
        click.option(
            "--retry-window", type=float, metavar="S", help="Retry busy/failing clouds this long."
        ),
        click.option("--once", is_flag=True, help="One cycle, then exit."),
        click.option("--worker-name", metavar="NAME", help="Name of this worker in leases."),
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
    return EngineSettings(**{**base.__dict__, **values})


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
    app: AppContext, /, options: dict[str, Any], *, scheduler: bool, worker: bool
) -> None:
    settings = _settings(options)
    if options.get("time_scale"):
        app.clock = _scaled_clock(options, app.clock)
    engine = Engine(
        app.store,
        app.clouds,
        app.clock,
        settings,
        run_scheduler=scheduler,
        run_worker=worker,
        worker_name=options.get("worker_name"),
        verifier=VerifyScheduler(app.store, app.clouds, app.clock),
    )
    if options.get("once"):
        engine.step()
        return
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    role = (
        "scheduler and worker" if scheduler and worker else "scheduler" if scheduler else "worker"
    )
    click.echo(f"stackback {role} {engine.worker.name} running; Ctrl-C stops", err=True)
    rate = float(getattr(app.clock, "factor", 1.0))
    engine.serve(stop, idle_max=min(5.0, engine.settings.poll_interval.total_seconds() / rate))


@click.command("serve")
@engine_options
@pass_app
def serve(app: AppContext, /, **options: Any) -> None:
    """Scheduler and workers in one process."""
    _run_engine(app, options, scheduler=True, worker=True)


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
