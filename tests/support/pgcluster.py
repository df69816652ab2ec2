"""A private, throw-away PostgreSQL server for the test suite.

``PgCluster`` either starts its own server (``initdb`` into a temporary directory,
unix socket only, no TCP listener, ``fsync=off``) or, when ``STACKBACK_TEST_PG_URL``
is set, uses that existing server.  In both cases tests get a fresh database from
:meth:`PgCluster.create_database`, as a SQLAlchemy URL.

PostgreSQL refuses to run as root, so when we are root the server runs as an
unprivileged system user (``postgres`` if it exists, else ``nobody``) via
``runuser``/``setpriv``, and the temporary directory is owned by that user.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

ENV_URL = "STACKBACK_TEST_PG_URL"
"""Use this (admin) URL instead of starting a private server."""

SUPERUSER = "postgres"
"""Name of the superuser created by ``initdb`` in the private cluster."""

MAX_CONNECTIONS = 200
_UNIX_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.5432"
_DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RUN_AS_CANDIDATES = ("postgres", "nobody")


class PgClusterError(RuntimeError):
    """PostgreSQL could not be found, initialised, started or used."""


def find_bindir() -> Path:
    """Locate the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Order: ``pg_config --bindir``, the newest ``/usr/lib/postgresql/*/bin`` (Debian),
    then ``PATH`` (following symlinks, e.g. ``/usr/local/bin/initdb`` here is a symlink
    into ``/usr/lib/postgresql/15/bin``).  A directory only counts when all three
    executables are in it, so a stray wrapper on PATH cannot mix versions.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
            if out:
                candidates.append(Path(out))

    def _major(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return -1.0

    debian_dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_major, reverse=True)
    candidates.extend(Path(d) for d in debian_dirs)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)

    for bindir in candidates:
        if all(os.access(bindir / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return bindir
    tried = ", ".join(str(c) for c in candidates) or "none"
    raise PgClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found "
        f"(looked in: {tried}). Install them with `./dev setup` (Debian package "
        f"'postgresql'), or point {ENV_URL} at a server, or set STACKBACK_SKIP_POSTGRES=1."
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _clean_env() -> dict[str, str]:
    """Our environment without libpq/PG* variables that could redirect the tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class PgCluster:
    """A throw-away PostgreSQL server (or an external one from ``STACKBACK_TEST_PG_URL``).

    Usage::

        cluster = PgCluster()
        cluster.start()
        url = cluster.create_database("t_example")   # SQLAlchemy URL
        ...
        cluster.drop_database("t_example")
        cluster.stop()
    """

    def __init__(self, external_url: str | None = None) -> None:
        if external_url is None:
            external_url = os.environ.get(ENV_URL) or None
        self._external: URL | None = None
        if external_url is not None:
            url = make_url(external_url)
            if url.get_backend_name() != "postgresql":
                raise PgClusterError(f"{ENV_URL} must be a postgresql URL, got {url!r}")
            self._external = url.set(drivername="postgresql+psycopg")
        self.base_dir: Path | None = None
        self.data_dir: Path | None = None
        self.socket_dir: Path | None = None
        self.log_file: Path | None = None
        self.bindir: Path | None = None
        self._run_as: str | None = None
        self._running = False

    # ------------------------------------------------------------------ properties

    @property
    def external(self) -> bool:
        """True when we use a server from ``STACKBACK_TEST_PG_URL``."""
        return self._external is not None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def user(self) -> str:
        if self._external is not None:
            return self._external.username or ""
        return SUPERUSER

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PgCluster:
        """Start the private server (or check the external one answers). Idempotent."""
        if self._running:
            return self
        if self._external is not None:
            self._check_connect()
            self._running = True
            return self
        self.bindir = find_bindir()
        self._run_as = self._pick_run_as()
        self.base_dir = self._make_base_dir()
        atexit.register(self.stop)
        try:
            self._initdb()
            self._pg_ctl_start()
            self._running = True
            self._check_connect()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the private server at once (``-m immediate``) and delete its directory.

        Idempotent; a no-op for an external server.
        """
        if self._external is not None:
            self._running = False
            return
        if self.base_dir is None:
            return
        if self.data_dir is not None and (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run(
                    [
                        self._bin("pg_ctl"),
                        "stop",
                        "-D",
                        str(self.data_dir),
                        "-m",
                        "immediate",
                        "-w",
                        "-t",
                        "60",
                    ],
                    check=False,
                )
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = self.data_dir = self.socket_dir = self.log_file = None
        self._running = False

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ databases

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (``postgresql+psycopg``) for ``database`` on this server."""
        if self._external is not None:
            return self._external.set(database=database).render_as_string(hide_password=False)
        if self.socket_dir is None:
            raise PgClusterError("cluster is not started")
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its SQLAlchemy URL.

        ``name`` must be a plain lower-case identifier; by default a unique one is made.
        """
        if name is None:
            name = f"t_{uuid.uuid4().hex[:16]}"
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r} (want [a-z_][a-z0-9_]{{0,62}})")
        self._admin_execute(f"CREATE DATABASE {_quote_ident(name)} TEMPLATE template0")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting any sessions still using it."""
        if not _DB_NAME_RE.match(name):
            raise ValueError(f"invalid database name {name!r}")
        self._admin_execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    # ------------------------------------------------------------------ internals

    def _admin_url(self) -> str:
        if self._external is not None:
            return self._external.render_as_string(hide_password=False)
        return self.url("postgres")

    def _admin_execute(self, sql: str) -> None:
        if not self._running:
            raise PgClusterError("cluster is not started")
        engine = sa.create_engine(
            self._admin_url(), isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql(sql)
        finally:
            engine.dispose()

    def _check_connect(self) -> None:
        engine = sa.create_engine(self._admin_url(), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except sa.exc.SQLAlchemyError as exc:
            raise PgClusterError(
                f"cannot connect to PostgreSQL at {make_url(self._admin_url())!r}: {exc}"
                + self._log_tail()
            ) from exc
        finally:
            engine.dispose()

    def _bin(self, name: str) -> str:
        assert self.bindir is not None
        return str(self.bindir / name)

    @staticmethod
    def _pick_run_as() -> str | None:
        """The OS user to run the server as: None (ourselves) unless we are root."""
        if os.geteuid() != 0:
            return None
        for candidate in _RUN_AS_CANDIDATES:
            try:
                pwd.getpwnam(candidate)
            except KeyError:
                continue
            return candidate
        raise PgClusterError(
            "running as root and no unprivileged user to run PostgreSQL as "
            f"(tried: {', '.join(_RUN_AS_CANDIDATES)})"
        )

    def _make_base_dir(self) -> Path:
        base = Path(tempfile.mkdtemp(prefix="stackback-pg-"))
        sock = base / "sock"
        if len(str(sock)) > _UNIX_SOCKET_PATH_MAX:
            # A long $TMPDIR would overflow sun_path; /tmp always fits.
            shutil.rmtree(base, ignore_errors=True)
            base = Path(tempfile.mkdtemp(prefix="stackback-pg-", dir="/tmp"))
            sock = base / "sock"
        sock.mkdir()
        self.socket_dir = sock
        self.data_dir = base / "data"
        self.log_file = base / "postgres.log"
        self.log_file.touch()
        if self._run_as is not None:
            pw = pwd.getpwnam(self._run_as)
            for path in (base, sock, self.log_file):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            # The server user must be able to reach base through its parents.
            probe = self._run(["test", "-w", str(base)], check=False)
            if probe.returncode != 0:
                shutil.rmtree(base, ignore_errors=True)
                raise PgClusterError(
                    f"user {self._run_as!r} cannot write {base}; set TMPDIR to a directory "
                    "every user can traverse (e.g. /tmp)"
                )
        os.chmod(base, 0o755)  # so any local user (not just the server) reaches the socket
        return base

    def _wrap(self, argv: Sequence[str]) -> list[str]:
        if self._run_as is None:
            return list(argv)
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", self._run_as, "--", *argv]
        setpriv = shutil.which("setpriv")
        if setpriv:
            return [
                setpriv,
                f"--reuid={self._run_as}",
                f"--regid={self._run_as}",
                "--init-groups",
                "--",
                *argv,
            ]
        raise PgClusterError("running as root but neither runuser nor setpriv is available")

    def _run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = self._wrap(argv)
        proc = subprocess.run(
            cmd,
            cwd=self.base_dir or "/",
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise PgClusterError(
                f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n"
                f"{proc.stdout}{proc.stderr}" + self._log_tail()
            )
        return proc

    def _initdb(self) -> None:
        assert self.data_dir is not None and self.socket_dir is not None
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "port": "5432",
            "max_connections": str(MAX_CONNECTIONS),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as fh:
            fh.write("\n# stackback test cluster\n")
            for key, value in settings.items():
                fh.write(f"{key} = {value}\n")

    def _pg_ctl_start(self) -> None:
        assert self.data_dir is not None and self.log_file is not None
        self._run(
            [
                self._bin("pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
            ]
        )

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        try:
            tail = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        if not tail:
            return ""
        return "\n--- postgres log (tail) ---\n" + "\n".join(tail[-lines:])
