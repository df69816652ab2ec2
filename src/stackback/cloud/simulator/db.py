"""The simulated cloud's SQLite file: schema, short transactions, shared counters.

Every operation runs one short ``BEGIN IMMEDIATE`` transaction on a connection
of its own thread and process (a forked child opens its own), so any number of
threads and processes can share one file, and whatever a killed process
committed stays.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from stackback.cloud.simulator.config import SimConfig
from stackback.errors import CloudError

BUSY_TIMEOUT_S = 30.0
_CONFIG_KEY = "config"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_calls (
    project TEXT NOT NULL, operation TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (project, operation));
CREATE TABLE IF NOT EXISTS servers (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
    metadata TEXT NOT NULL, volume_backed INTEGER NOT NULL, host TEXT NOT NULL,
    disk_gb REAL NOT NULL, base_image_ref TEXT, created_at REAL NOT NULL,
    image_properties TEXT NOT NULL DEFAULT '{}', task_until REAL);
CREATE TABLE IF NOT EXISTS volumes (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, server_id TEXT NOT NULL, size INTEGER NOT NULL,
    device_name TEXT NOT NULL, boot_index INTEGER);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, server_id TEXT,
    host TEXT, properties TEXT NOT NULL, size INTEGER, created_at REAL NOT NULL,
    slot_at REAL NOT NULL, upload_at REAL NOT NULL, ready_at REAL NOT NULL,
    doomed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, volume_id TEXT NOT NULL,
    size INTEGER NOT NULL, metadata TEXT NOT NULL, created_at REAL NOT NULL,
    ready_at REAL NOT NULL, gone_at REAL);
CREATE TABLE IF NOT EXISTS volume_backups (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, volume_id TEXT NOT NULL,
    size INTEGER NOT NULL, metadata TEXT NOT NULL, parent_id TEXT, created_at REAL NOT NULL,
    ready_at REAL NOT NULL, doomed INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS pauses (
    id INTEGER PRIMARY KEY AUTOINCREMENT, server_id TEXT NOT NULL, paused_at REAL NOT NULL,
    unpaused_at REAL);
CREATE TABLE IF NOT EXISTS scripted_faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, operation TEXT NOT NULL,
    server_id TEXT, error TEXT NOT NULL, remaining INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS db_instances (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
    flavor TEXT NOT NULL, volume_size INTEGER NOT NULL, datastore TEXT NOT NULL,
    datastore_version TEXT NOT NULL, created_at REAL NOT NULL, active_at REAL NOT NULL,
    restore_point TEXT, boot_fails INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS db_backups (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, instance_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT, parent_id TEXT, size REAL NOT NULL, created_at REAL NOT NULL,
    building_at REAL NOT NULL, ready_at REAL NOT NULL, doomed INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS group_types (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, specs TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS volume_groups (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, group_type TEXT NOT NULL,
    created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS group_snapshots (
    id TEXT PRIMARY KEY, project TEXT NOT NULL, group_id TEXT NOT NULL, name TEXT NOT NULL,
    description TEXT NOT NULL, created_at REAL NOT NULL, ready_at REAL NOT NULL, gone_at REAL);
CREATE INDEX IF NOT EXISTS servers_by_project ON servers (project);
CREATE INDEX IF NOT EXISTS images_by_project ON images (project);
CREATE INDEX IF NOT EXISTS images_by_host ON images (host, ready_at);
CREATE INDEX IF NOT EXISTS snapshots_by_project ON snapshots (project);
"""


_ADDED_COLUMNS = (
    ("servers", "image_properties", "TEXT NOT NULL DEFAULT '{}'"),
    ("servers", "task_until", "REAL"),
    ("servers", "flavor", "TEXT NOT NULL DEFAULT 'm1.small'"),
    ("servers", "networks", "TEXT NOT NULL DEFAULT '[]'"),
    ("servers", "security_groups", "TEXT NOT NULL DEFAULT '[\"default\"]'"),
    ("servers", "key_name", "TEXT"),
    ("servers", "availability_zone", "TEXT NOT NULL DEFAULT 'nova'"),
    ("servers", "active_at", "REAL"),
    ("servers", "boot_fails", "INTEGER NOT NULL DEFAULT 0"),
    ("volumes", "name", "TEXT NOT NULL DEFAULT ''"),
    ("volumes", "volume_type", "TEXT"),
    ("volumes", "delete_on_termination", "INTEGER NOT NULL DEFAULT 1"),
    ("volumes", "metadata", "TEXT NOT NULL DEFAULT '{}'"),
    ("volumes", "snapshot_id", "TEXT"),
    ("volumes", "availability_zone", "TEXT NOT NULL DEFAULT 'nova'"),
    ("volumes", "created_at", "REAL NOT NULL DEFAULT 0"),
    ("volumes", "ready_at", "REAL NOT NULL DEFAULT 0"),
    ("volumes", "group_id", "TEXT"),
    ("snapshots", "group_snapshot_id", "TEXT"),
    ("volume_backups", "doomed", "INTEGER NOT NULL DEFAULT 0"),
)
"""Columns added after the first release of the file format (older files get them)."""


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, declaration in _ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


class SimDatabase:
    """One simulated cloud's state file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            _add_missing_columns(conn)
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)",
                (_CONFIG_KEY, SimConfig().to_json()),
            )

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _connection(self) -> sqlite3.Connection:
        if getattr(self._local, "pid", None) != os.getpid():
            self._local.conn = self._connect()
            self._local.pid = os.getpid()
        conn: sqlite3.Connection = self._local.conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (the next operation opens a new one)."""
        if getattr(self._local, "pid", None) == os.getpid():
            self._local.conn.close()
        self._local.pid = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction.

        Committed on success and on a :class:`CloudError` (the cloud answered:
        counters and fault scripts it consumed stay consumed), rolled back otherwise.
        """
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except CloudError:
            conn.execute("COMMIT")
            raise
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def read_config(conn: sqlite3.Connection) -> SimConfig:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (_CONFIG_KEY,)).fetchone()
    return SimConfig.from_json(row["value"]) if row else SimConfig()


def write_config(conn: sqlite3.Connection, config: SimConfig) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (_CONFIG_KEY, config.to_json()),
    )


def next_counter(conn: sqlite3.Connection, name: str) -> int:
    conn.execute(
        "INSERT INTO counters (name, value) VALUES (?, 1) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1",
        (name,),
    )
    row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row["value"])


def count_api_call(conn: sqlite3.Connection, project: str, operation: str) -> None:
    conn.execute(
        "INSERT INTO api_calls (project, operation, count) VALUES (?, ?, 1) "
        "ON CONFLICT (project, operation) DO UPDATE SET count = count + 1",
        (project, operation),
    )


def draw(seed: int, sequence: int, purpose: str) -> float:
    """A number in [0, 1) fixed by (seed, sequence, purpose): the same in every process."""
    digest = hashlib.sha256(f"{seed}:{sequence}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class SimCall:
    """One cloud call in progress: its transaction, instant, sequence number and settings."""

    conn: sqlite3.Connection
    project: str
    seed: int
    now: float
    sequence: int
    config: SimConfig

    def draw(self, purpose: str) -> float:
        return draw(self.seed, self.sequence, purpose)


def script_fault(
    conn: sqlite3.Connection,
    project: str,
    operation: str,
    error: str,
    count: int,
    server_id: str | None,
) -> None:
    conn.execute(
        "INSERT INTO scripted_faults (project, operation, server_id, error, remaining)"
        " VALUES (?, ?, ?, ?, ?)",
        (project, operation, server_id, error, count),
    )


def consume_fault(
    conn: sqlite3.Connection, project: str, operation: str, server_id: str | None
) -> str | None:
    """Take one scripted fault for this operation (and server), oldest first."""
    row = conn.execute(
        "SELECT id, error FROM scripted_faults WHERE project = ? AND operation = ?"
        " AND remaining > 0 AND (server_id IS NULL OR server_id = ?) ORDER BY id LIMIT 1",
        (project, operation, server_id),
    ).fetchone()
    if row is None:
        return None
    conn.execute("UPDATE scripted_faults SET remaining = remaining - 1 WHERE id = ?", (row["id"],))
    conn.execute("DELETE FROM scripted_faults WHERE remaining <= 0")
    return str(row["error"])
