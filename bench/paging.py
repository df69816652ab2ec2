#!/usr/bin/env python
"""Benchmark (not a test) of the run list's keyset pages with 1,000,000 runs on PostgreSQL.

A private PostgreSQL (``tests/support/pgcluster.py``, as the test suite starts it) gets
the schema by Alembic, a few hundred policies over 20 projects, and N runs (default
1,000,000) generated server-side in one ``INSERT ... SELECT`` (hourly, 4-hourly and daily
policies of 1-12 targets each, newest at ``NOW``; states mostly succeeded, some failed,
missed, cancelled). Then pages of 50 are listed through the store's API
(``SqlStore.list_runs(RunFilter(limit=50, marker=...))``), walking up to ``--pages`` pages
deep into three lists: every run, one project's runs, one policy's runs; and single pages
far into the full list (markers at depths given by ``--deep``). Each keyset page is
printed beside the same page read with ``OFFSET``, which is written here only (the store
never pages by offset): the OFFSET query as SQL alone, and the keyset query as SQL alone
too, so that the SQL columns compare like with like (the store's figure adds the marker
lookup, the step journal query and building ``Run`` objects). "SQL OR only" is the keyset
predicate as it was before revision 0014 (without its ``scheduled_for <= marker`` bound).

Run ``python bench/paging.py --help``; the method and figures are in ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "src", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from sqlalchemy import Connection, Engine, text  # noqa: E402

from stackback.policy import Run  # noqa: E402
from stackback.records import RunFilter  # noqa: E402
from stackback.store.database import create_db_engine, upgrade  # noqa: E402
from stackback.store.sql import SqlStore  # noqa: E402

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PAGE = 50
PROJECTS = 20
POLICIES_PER_PROJECT = 20
TARGET_P99_MS = 50.0
# (period in minutes, share of policies): hourly, every 4 hours, daily
PERIODS = ((60, 0.1), (240, 0.3), (1440, 0.6))


@dataclass(frozen=True)
class BenchPolicy:
    id: str
    name: str
    project: str
    period_minutes: int
    offset_minutes: int
    targets: tuple[str, ...]


def make_policies(seed: int) -> list[BenchPolicy]:
    """Seeded policies: 20 projects of 20 policies, periods and 1-12 targets each."""
    rng = random.Random(seed)
    policies = []
    for project_index in range(PROJECTS):
        project = f"project-{project_index:02d}"
        for index in range(POLICIES_PER_PROJECT):
            roll, period = rng.random(), PERIODS[-1][0]
            for minutes, share in PERIODS:
                if roll < share:
                    period = minutes
                    break
                roll -= share
            number = project_index * POLICIES_PER_PROJECT + index
            policies.append(
                BenchPolicy(
                    id=f"00000000-0000-4000-8000-{number:012d}",
                    name=f"{project}-policy-{index:02d}",
                    project=project,
                    period_minutes=period,
                    offset_minutes=rng.randrange(min(period, 60)),
                    targets=tuple(
                        f"server-{number:04d}-{t:02d}" for t in range(rng.randint(1, 12))
                    ),
                )
            )
    return policies


def populate(engine: Engine, policies: Sequence[BenchPolicy], runs: int, seed: int) -> float:
    """Policies by executemany, then ``runs`` runs by one server-side INSERT ... SELECT."""
    started = time.perf_counter()
    per_day = sum(len(p.targets) * 1440 / p.period_minutes for p in policies)
    days = runs / per_day + 1
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO policies (id, name, kind, project, targets, timezone,"
                " window_minutes, retention, enabled, created_at, updated_at)"
                " VALUES (:id, :name, 'server-image', :project, CAST(:targets AS JSON), 'UTC',"
                " 0, CAST('{\"last\": 7}' AS JSON), true, :at, :at)"
            ),
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "project": p.project,
                    "targets": "[" + ",".join(f'"{t}"' for t in p.targets) + "]",
                    "at": NOW - timedelta(days=days + 1),
                }
                for p in policies
            ],
        )
        connection.execute(
            text(
                "CREATE TEMPORARY TABLE bench_targets (policy_id text, policy_name text,"
                " project text, target text, period integer, offset_minutes integer,"
                " occurrences integer)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO bench_targets VALUES (:policy_id, :policy_name, :project, :target,"
                " :period, :offset, :occurrences)"
            ),
            [
                {
                    "policy_id": p.id,
                    "policy_name": p.name,
                    "project": p.project,
                    "target": target,
                    "period": p.period_minutes,
                    "offset": p.offset_minutes,
                    "occurrences": int(days * 1440 / p.period_minutes) + 1,
                }
                for p in policies
                for target in p.targets
            ],
        )
        connection.execute(text("SELECT setseed(:seed)"), {"seed": (seed % 1000) / 1000})
        # every target's occurrences back from NOW; all targets of a policy share their
        # times (ties in scheduled_for, which the keyset breaks by id); newest kept
        connection.execute(
            text(
                "INSERT INTO runs (id, policy_id, policy_name, target, target_name, server_id,"
                ' scheduled_for, due_at, state, attempt, "trigger", created_at, started_at,'
                " finished_at, error, project)"
                " SELECT gen_random_uuid()::text, policy_id, policy_name, target, target,"
                " 'uuid-' || target, at, at, state, 1, 'schedule', at, at,"
                " at + interval '3 minutes',"
                " CASE WHEN state = 'failed' THEN 'quota exceeded' END, project FROM ("
                "  SELECT t.*, :now - make_interval(mins => k * t.period + t.offset_minutes)"
                "   AS at,"
                "   (ARRAY['succeeded','succeeded','succeeded','succeeded','succeeded',"
                "    'succeeded','succeeded','succeeded','succeeded','succeeded','succeeded',"
                "    'succeeded','succeeded','succeeded','succeeded','succeeded','failed',"
                "    'missed','cancelled','succeeded'])[1 + floor(random() * 20)::int] AS state"
                "  FROM bench_targets t, generate_series(0, t.occurrences - 1) AS k"
                "  ORDER BY at DESC LIMIT :runs) generated"
            ),
            {"now": NOW, "runs": runs},
        )
        connection.execute(text("DROP TABLE bench_targets"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE runs"))
        connection.execute(text("VACUUM ANALYZE policies"))
    return time.perf_counter() - started


# -- the same pages by OFFSET and by keyset, as SQL alone (written here only) ---------------

_COLUMNS = "runs.*"


def _where(criteria: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
    clauses, params = [], {}
    for column, value in criteria.items():
        clauses.append(f"runs.{column} = :{column}")
        params[column] = value
    return clauses, params


def offset_sql(criteria: dict[str, str], offset: int) -> tuple[str, dict[str, Any]]:
    clauses, params = _where(criteria)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    params.update(limit=PAGE, offset=offset)
    return (
        f"SELECT {_COLUMNS} FROM runs{where}"
        " ORDER BY runs.scheduled_for DESC, runs.id LIMIT :limit OFFSET :offset",
        params,
    )


def keyset_sql(
    criteria: dict[str, str], marker: tuple[datetime, str] | None, *, bounded: bool = True
) -> tuple[str, dict[str, Any]]:
    """The store's page query as it compiles (see ``list_runs`` and ``keyset_after``),
    without the ORM around it; ``bounded=False``: the predicate before revision 0014 (the
    OR alone, which the index scan can only filter by)."""
    clauses, params = _where(criteria)
    if marker is not None:
        after = "(runs.scheduled_for < :m_at OR (runs.scheduled_for = :m_at AND runs.id > :m_id))"
        clauses.append(f"runs.scheduled_for <= :m_at AND {after}" if bounded else after)
        params.update(m_at=marker[0], m_id=marker[1])
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    params.update(limit=PAGE)
    return (
        f"SELECT {_COLUMNS} FROM runs{where}"
        " ORDER BY runs.scheduled_for DESC, runs.id LIMIT :limit",
        params,
    )


def _timed(call: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call(*args)
    return (time.perf_counter() - started) * 1000, result


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]

    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": ordered[-1],
    }


@dataclass
class Walk:
    name: str
    depth: int = 0
    store_ms: list[float] = field(default_factory=list)
    keyset_sql_ms: list[float] = field(default_factory=list)
    unbounded_sql_ms: list[float] = field(default_factory=list)
    offset_sql_ms: list[float] = field(default_factory=list)


def _rows(connection: Connection, query: tuple[str, dict[str, Any]]) -> list[Any]:
    return list(connection.execute(text(query[0]), query[1]).all())


def measure_page(
    store: SqlStore,
    connection: Connection,
    into: Walk,
    criteria: dict[str, str],
    marker: tuple[datetime, str] | None,
    offset: int,
) -> list[Run]:
    """One page after ``marker`` (at ``offset``): by the store, keyset SQL and OFFSET SQL."""
    wanted = RunFilter(
        limit=PAGE,
        marker=marker[1] if marker else None,
        project=criteria.get("project"),
        policy_id=criteria.get("policy_id"),
    )
    ms, page = _timed(store.list_runs, wanted)
    into.store_ms.append(ms)
    ids = [run.id for run in page]
    for samples, query in (
        (into.keyset_sql_ms, keyset_sql(criteria, marker)),
        (into.unbounded_sql_ms, keyset_sql(criteria, marker, bounded=False)),
        (into.offset_sql_ms, offset_sql(criteria, offset)),
    ):
        ms, rows = _timed(_rows, connection, query)
        samples.append(ms)
        if [row.id for row in rows] != ids:
            raise RuntimeError(f"{into.name}: the page at {offset} differs between queries")
    return page


def walk(store: SqlStore, engine: Engine, name: str, criteria: dict[str, str], pages: int) -> Walk:
    """Up to ``pages`` pages from the start of a list, each page after the last one's end."""
    result = Walk(name)
    marker: tuple[datetime, str] | None = None
    with engine.connect() as connection:
        for index in range(pages):
            page = measure_page(store, connection, result, criteria, marker, index * PAGE)
            if not page:  # past the list's end: not a page
                for samples in (
                    result.store_ms,
                    result.keyset_sql_ms,
                    result.unbounded_sql_ms,
                    result.offset_sql_ms,
                ):
                    samples.pop()
                break
            marker = (page[-1].scheduled_for, page[-1].id)
            result.depth = index * PAGE + len(page)
    return result


def deep_pages(store: SqlStore, engine: Engine, depths: Sequence[int], repeat: int) -> list[Walk]:
    """The page after row ``depth`` of the full list, ``repeat`` times each."""
    walks = []
    with engine.connect() as connection:
        for depth in depths:
            sql, params = offset_sql({}, depth - 1)
            params["limit"] = 1
            row = connection.execute(text(sql), params).one()
            entry = Walk(f"all runs, the page after row {depth:,}", depth)
            for _ in range(repeat):
                measure_page(store, connection, entry, {}, (row.scheduled_for, row.id), depth)
            walks.append(entry)
    return walks


def explain(engine: Engine, criteria: dict[str, str], marker: tuple[datetime, str]) -> str:
    sql, params = keyset_sql(criteria, marker)
    with engine.connect() as connection:
        lines = connection.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql), params).scalars()
        return "\n".join(lines)


def _row(label: str, samples: Sequence[float]) -> str:
    stats = percentiles(samples)
    return (
        f"    {label:<16}{stats['p50']:9.2f}{stats['p95']:9.2f}{stats['p99']:9.2f}"
        f"{stats['max']:9.2f}"
    )


def report(walks: Sequence[Walk]) -> bool:
    met = True
    for entry in walks:
        print(f"  {entry.name}: {len(entry.store_ms)} pages of {PAGE} (to row {entry.depth:,})")
        print(f"    {'ms per page':<16}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
        print(_row("store keyset", entry.store_ms))
        print(_row("SQL keyset", entry.keyset_sql_ms))
        print(_row("SQL OR only", entry.unbounded_sql_ms))
        print(_row("SQL OFFSET", entry.offset_sql_ms))
        met = met and percentiles(entry.store_ms)["p99"] < TARGET_P99_MS
    return met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=200, help="pages walked per list")
    parser.add_argument(
        "--deep", default="100000,250000,500000,900000", help="depths of single deep pages"
    )
    parser.add_argument("--repeat", type=int, default=20, help="samples per deep page")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE plans")
    options = parser.parse_args(argv)

    from tests.support.pgcluster import PgCluster

    print(f"$ {' '.join(['python', 'bench/paging.py', *sys.argv[1:]])}")
    with PgCluster() as cluster:
        url = cluster.create_database("bench_paging")
        engine = create_db_engine(url)
        upgrade(engine)
        policies = make_policies(options.seed)
        seconds = populate(engine, policies, options.runs, options.seed)
        with engine.connect() as connection:
            count = connection.execute(text("SELECT count(*) FROM runs")).scalar_one()
            version = connection.execute(text("SHOW server_version")).scalar_one()
        print(
            f"PostgreSQL {version}: {count:,} runs of {len(policies)} policies in"
            f" {PROJECTS} projects, loaded in {seconds:.1f} s"
        )
        store = SqlStore(engine)
        project = policies[0].project
        with engine.connect() as connection:
            biggest = connection.execute(
                text("SELECT policy_id FROM runs GROUP BY policy_id ORDER BY count(*) DESC LIMIT 1")
            ).scalar_one()
        lists = (
            ("all runs", {}),
            (f"project {project}", {"project": project}),
            ("largest policy", {"policy_id": biggest}),
        )
        walk(store, engine, "warm-up", {}, 5)
        walks = [walk(store, engine, name, crit, options.pages) for name, crit in lists]
        depths = [int(d) for d in options.deep.split(",") if d and int(d) < count]
        walks += deep_pages(store, engine, depths, options.repeat)
        print(f"keyset pages (marker) vs OFFSET, page size {PAGE}, milliseconds:")
        met = report(walks)
        if options.explain:
            with engine.connect() as connection:
                for (name, crit), done in zip(lists, walks, strict=False):
                    sql, params = offset_sql(crit, done.depth - 1)
                    params["limit"] = 1
                    row = connection.execute(text(sql), params).one()
                    print(f"-- EXPLAIN ANALYZE, {name}, keyset page at depth {done.depth:,}:")
                    print(explain(engine, crit, (row.scheduled_for, row.id)))
        verdict = "met" if met else "MISSED"
        print(f"target: store keyset page p99 < {TARGET_P99_MS:.0f} ms in every list: {verdict}")
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
