#!/usr/bin/env python
"""Benchmark (not a test) of a retention decision over one target's backups.

One target with n backups, one every ``--every`` minutes back from ``now``, all
available and of one policy; the newest one is the rotating run's own. Timed
(best of ``--repeat``, wall, garbage collector on), for n = 10^4, 10^5, 10^6:

* ``apply_policy`` (``stackback.retention``), the backups in the order the store
  reads them (newest first) and shuffled;
* ``plan_rotation`` (``stackback.safety``) as a run's rotation calls it: the
  safety rules, and a deletion budget of ``EngineSettings.deletion_budget``.

Each time is printed beside restic's algorithmic complexity for the same
decision (``ApplyPolicy``: a sort, then one pass: O(n log n)): the ratio
t / (n log2 n), normalised to the smallest n, stays near 1 for an O(n log n)
cost. Run ``python bench/retention.py --help``; the method is in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from stackback.engine.settings import EngineSettings  # noqa: E402
from stackback.policy import Backup, BackupKind, BackupStatus  # noqa: E402
from stackback.records import TargetBackups  # noqa: E402
from stackback.retention import RetentionPolicy, apply_policy  # noqa: E402
from stackback.safety import RotationRequest, RotationScope, plan_rotation  # noqa: E402

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
ZONE = ZoneInfo("Europe/Amsterdam")
RULES = RetentionPolicy(last=7, hourly=24, daily=14, weekly=8, monthly=12, yearly=5, within="2d")
TARGET_SECONDS = 2.0
SIZES = (10_000, 100_000, 1_000_000)


def backups(n: int, every: timedelta) -> list[Backup]:
    """n available backups of one target and policy, newest first (as the store reads them)."""
    policy_id = str(uuid.uuid4())
    ids = uuid.UUID(int=random.Random(n).getrandbits(128))
    return [
        Backup(
            id=f"{ids.hex[:20]}{i:012d}",
            target="server-1",
            kind=BackupKind.SERVER_IMAGE,
            status=BackupStatus.AVAILABLE,
            created_at=NOW - every * i,
            policy_id=policy_id,
            run_id=f"run-{i}",
        )
        for i in range(n)
    ]


def best_of(repeat: int, action: Callable[[], object]) -> tuple[float, float, object]:
    """The best wall and the best CPU (process) time of ``repeat`` calls, and the result."""
    wall = cpu = math.inf
    result = None
    for _ in range(repeat):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        result = action()
        cpu = min(cpu, time.process_time() - started_cpu)
        wall = min(wall, time.perf_counter() - started)
    return wall, cpu, result


def measure(n: int, options: argparse.Namespace) -> dict[str, float | int]:
    items = backups(n, timedelta(minutes=options.every))
    shuffled = items[:]
    random.Random(options.seed).shuffle(shuffled)
    target = TargetBackups(target="server-1", backups=tuple(items), run_id=items[0].run_id)
    request = RotationRequest(
        rules=RULES,
        scope=RotationScope(policy_id=items[0].policy_id),
        now=NOW,
        tz=ZONE,
        run_id=items[0].run_id,
        budget=EngineSettings().deletion_budget,
    )
    sorted_s, sorted_cpu, decision = best_of(
        options.repeat, lambda: apply_policy(items, RULES, now=NOW, tz=ZONE)
    )
    shuffled_s, shuffled_cpu, again = best_of(
        options.repeat, lambda: apply_policy(shuffled, RULES, now=NOW, tz=ZONE)
    )
    rotation_s, rotation_cpu, plan = best_of(options.repeat, lambda: plan_rotation(request, target))
    kept = len(decision.keep)  # type: ignore[attr-defined]
    assert kept == len(again.keep)  # type: ignore[attr-defined]
    return {
        "n": n,
        "apply_sorted_s": sorted_s,
        "apply_shuffled_s": shuffled_s,
        "plan_rotation_s": rotation_s,
        "apply_sorted_cpu": sorted_cpu,
        "apply_shuffled_cpu": shuffled_cpu,
        "plan_rotation_cpu": rotation_cpu,
        "kept": kept,
        "forgotten_now": len(plan.forget),  # type: ignore[attr-defined]
    }


def _cell(cpu: float, wall: float) -> str:
    return f"{cpu:.3f} ({wall:.3f})"


def report(options: argparse.Namespace, results: Sequence[dict[str, float | int]]) -> None:
    print(f"command: {shlex.join([sys.executable, *sys.argv])}")
    print(
        f"one target, a backup every {options.every:g} min back from {NOW:%Y-%m-%d %H:%M} UTC, "
        f"rules: {RULES.describe()} (zone {ZONE.key}); best of {options.repeat}; "
        "seconds as CPU (wall)"
    )
    base = results[0]
    print(
        f"{'n':>10} {'apply (newest first)':>21} {'apply (shuffled)':>17} {'plan_rotation':>17} "
        f"{'kept':>5}  CPU t/(n log n) vs n={int(base['n']):,}: apply / shuffled / plan"
    )
    parts = ("apply_sorted", "apply_shuffled", "plan_rotation")
    for row in results:
        n = int(row["n"])
        scale = (n * math.log2(n)) / (base["n"] * math.log2(base["n"]))
        ratios = " / ".join(
            f"{float(row[f'{k}_cpu']) / float(base[f'{k}_cpu']) / scale:.2f}" for k in parts
        )
        cells = " ".join(
            _cell(float(row[k + "_cpu"]), float(row[k + "_s"])).rjust(width)
            for k, width in zip(parts, (21, 17, 17), strict=True)
        )
        print(f"{n:>10,} {cells} {row['kept']:>5}  {ratios}")
    print(
        "restic ApplyPolicy: O(n log n) (sort.Sort of the snapshots, then one pass): "
        "its t/(n log n) stays near 1.00"
    )
    largest = results[-1]
    worst = max(float(largest[f"{k}_cpu"]) for k in parts)
    met = worst < TARGET_SECONDS
    print(
        f"VERDICT: {int(largest['n']):,} backups: slowest decision {worst:.3f} s CPU "
        f"(plan_rotation {largest['plan_rotation_cpu']:.3f} s CPU, "
        f"{largest['plan_rotation_s']:.3f} s wall) {'<' if met else '>='} "
        f"{TARGET_SECONDS:g} s: {'MET' if met else 'NOT MET'}"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3, help="timings per measure, best kept (3)")
    parser.add_argument("--every", type=float, default=5.0, help="minutes between backups (5)")
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SIZES),
        help="backup counts (10000,100000,1000000)",
    )
    parser.add_argument("--seed", type=int, default=20260302, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    try:
        options.sizes = [int(part) for part in options.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes: not a list of counts: {options.sizes!r}")
    if options.repeat < 1 or min(options.sizes) < 2:
        parser.error("--repeat must be at least 1 and every size at least 2")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    report(options, [measure(n, options) for n in sorted(options.sizes)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
