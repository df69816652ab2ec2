"""``stackback serve | scheduler | worker``: the long-running engine processes."""

from __future__ import annotations

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
from stackback.errors import InvalidInput, NotFound
from stackback.policy import Run

WAIT_POLL_SECONDS = 2.0


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
        click.option("--time-origin", type=float, hidden=True, help="Testing: epoch seconds."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _settings(options: dict[str, Any]) -> EngineSettings:
    base = EngineSettings()
    values: dict[str, Any] = {}
    for name in ("poll_interval", "lease", "grace", "retry_window"):
        if options.get(name) is not None:
            if options[name] <= 0:
                raise InvalidInput(f"--{name.replace('_', '-')} must be positive", field=name)
            values[name] = timedelta(seconds=options[name])
    return EngineSettings(**{**base.__dict__, **values})


def _run_engine(
    app: AppContext, /, options: dict[str, Any], *, scheduler: bool, worker: bool
) -> None:
    if options.get("time_scale"):
        origin = datetime.fromtimestamp(options.get("time_origin") or 0, UTC)
        app.clock = ScaledClock(origin, options["time_scale"])
    engine = Engine(
        app.store,
        app.clouds,
        app.clock,
        _settings(options),
        run_scheduler=scheduler,
        run_worker=worker,
        worker_name=options.get("worker_name"),
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


def wait_for_run(app: AppContext, /, run_id: str, *, timeout: float = 3600.0) -> Run:
    """Drive a worker in this process until the run is finished (polling every 2 s)."""
    settings = EngineSettings(poll_interval=timedelta(seconds=WAIT_POLL_SECONDS))
    engine = Engine(app.store, app.clouds, app.clock, settings, run_scheduler=False)
    deadline = app.clock.now() + timedelta(seconds=timeout)
    while app.clock.now() < deadline:
        run = app.store.get_run(run_id)
        if run.state.is_terminal:
            return run
        if not engine.step():
            app.clock.sleep(WAIT_POLL_SECONDS / 4)
    raise NotFound(f"run {run_id} did not finish within {timeout:.0f} s")


COMMANDS = [serve, scheduler, worker]
