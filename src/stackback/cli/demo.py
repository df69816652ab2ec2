"""``stackback demo``: the main job — months of backups on the simulator, in seconds."""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stackback.cli.output import console, emit_json
from stackback.demo import Demo, DemoResult
from stackback.policy import Backup


def _render(result: DemoResult, seconds: float) -> None:
    out = console()
    out.print(
        f"\n{result.simulated_days} simulated days in {seconds:.1f} s (database: {result.db_path})"
    )
    events = Table(title="What happened")
    events.add_column("Day", justify="right")
    events.add_column("Event")
    for event in result.events:
        events.add_row(str(event.day), event.text)
    out.print(events)
    states = Table(title="Runs by state")
    states.add_column("State")
    states.add_column("Runs", justify="right")
    for state, count in sorted(result.runs_by_state.items()):
        states.add_row(state, str(count))
    out.print(states)
    if result.failures:
        failures = Table(title="Failed runs (nothing was deleted by them)")
        failures.add_column("When")
        failures.add_column("Target")
        failures.add_column("Why", overflow="fold")
        for run in result.failures[:10]:
            failures.add_row(
                f"{run.scheduled_for:%Y-%m-%d}", run.target_name or run.target, run.error or ""
            )
        out.print(failures)
    for name, backups in result.kept.items():
        chains = result.chains.get(name)
        if chains is not None:
            _render_chains(name, chains, result.forgotten_chains.get(name, []))
            continue
        table = Table(
            title=f"{name}: {len(backups)} backups kept, {result.rotated.get(name, 0)} rotated away"
        )
        table.add_column("Backup taken (UTC)")
        table.add_column("Why it is kept")
        for backup in backups:
            table.add_row(f"{backup.created_at:%Y-%m-%d %H:%M}", ", ".join(backup.reasons))
        out.print(table)
    _render_finale(result)


def _render_chains(name: str, chains: list[list[Backup]], forgotten: list[list[Backup]]) -> None:
    """A database's kept backups, chain by chain: the full, then its incrementals; and what
    retention forgot (whole chains, newest first)."""
    kept = sum(len(chain) for chain in chains)
    gone = sum(len(chain) for chain in forgotten)
    table = Table(
        title=f"{name} (Trove): {kept} backups kept in {len(chains)} chains; "
        f"{gone} backups in {len(forgotten)} chains forgotten"
    )
    table.add_column("Chain")
    table.add_column("Full (UTC)")
    table.add_column("Incrementals")
    table.add_column("Newest (UTC)")
    table.add_column("Why it is kept")
    for number, chain in enumerate(chains, 1):
        head, newest = chain[0], chain[-1]
        reasons = dict.fromkeys(r for b in reversed(chain) for r in b.reasons)
        table.add_row(
            str(number),
            f"{head.created_at:%Y-%m-%d %H:%M}" + ("" if head.parent_id is None else " (incr.)"),
            str(sum(1 for b in chain if b.parent_id is not None)),
            f"{newest.created_at:%Y-%m-%d %H:%M}",
            ", ".join(reasons),
        )
    console().print(table)


def _render_finale(result: DemoResult) -> None:
    out = console()
    scheduled = ", ".join(f"{n} {k}" for k, n in sorted(result.scheduled_verifications.items()))
    checks = Table(
        title="Verified: the newest backup of each server, booted, checked and removed"
        + (f" (monthly verifications: {scheduled})" if scheduled else "")
    )
    checks.add_column("Server")
    checks.add_column("Backup")
    checks.add_column("Result")
    checks.add_column("To ACTIVE", justify="right")
    checks.add_column("Checks", overflow="fold")
    for v in result.verifications:
        seconds = f"{v.active_seconds:.0f} s" if v.active_seconds is not None else ""
        checks.add_row(v.server, v.backup_id[:8], v.result, seconds, v.reason or "")
    out.print(checks)
    restored = result.restored
    if restored is not None:
        took = f" in {restored.seconds:.0f} s" if restored.seconds is not None else ""
        out.print(
            f"Restored {restored.server} (deleted) from backup "
            f"{restored.backup_id[:8]}: {restored.state}{took}"
            + (f", new server {restored.server_id}" if restored.server_id else "")
            + (f" ({restored.error})" if restored.error else "")
        )


@click.command("demo")
@click.option("--days", type=click.IntRange(1, 3650), default=180, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's database and simulated cloud here (default: a new temp dir).",
)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table")
def demo(days: int, seed: int, directory: Path | None, fmt: str) -> None:
    """Live through months of a GFS policy (daily 7, weekly 4, monthly 12, yearly 2)
    on the built-in cloud simulator, with injected faults, and summarise."""
    directory = directory or Path(tempfile.mkdtemp(prefix="stackback-demo-"))
    logging.getLogger("stackback").setLevel(logging.ERROR)  # the summary reports failures
    runner = Demo(directory, days=days, seed=seed)
    started = time.monotonic()
    try:
        if fmt == "json":
            result = runner.run()
        else:
            with Progress(
                TextColumn("simulating {task.fields[date]}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} days"),
                TextColumn("{task.fields[states]}"),
                TimeElapsedColumn(),
                console=console(),
            ) as progress:
                task = progress.add_task("demo", total=days, date="", states="")

                def report(day: int, states: Counter[str]) -> None:
                    progress.update(
                        task,
                        completed=day,
                        date=f"{runner.clock.now():%Y-%m-%d}",
                        states=" ".join(f"{k} {v}" for k, v in sorted(states.items())),
                    )

                result = runner.run(report)
        elapsed = time.monotonic() - started
        if fmt == "json":
            emit_json(
                {
                    "simulated_days": result.simulated_days,
                    "seconds": round(elapsed, 2),
                    "database": str(result.db_path),
                    "runs_by_state": dict(result.runs_by_state),
                    "kept": {
                        name: [
                            {"created_at": b.created_at, "reasons": list(b.reasons)}
                            for b in backups
                        ]
                        for name, backups in result.kept.items()
                    },
                    "rotated": result.rotated,
                    "chains": {
                        name: [
                            [
                                {"created_at": b.created_at, "full": b.parent_id is None}
                                for b in chain
                            ]
                            for chain in chains
                        ]
                        for name, chains in result.chains.items()
                    },
                    "forgotten_chains": {
                        name: [
                            [
                                {"created_at": b.created_at, "full": b.parent_id is None}
                                for b in chain
                            ]
                            for chain in chains
                        ]
                        for name, chains in result.forgotten_chains.items()
                    },
                    "events": [{"day": e.day, "text": e.text} for e in result.events],
                    "verifications": [asdict(v) for v in result.verifications],
                    "scheduled_verifications": result.scheduled_verifications,
                    "restored": asdict(result.restored) if result.restored else None,
                }
            )
        else:
            _render(result, elapsed)
    finally:
        runner.close()


COMMANDS = [demo]
