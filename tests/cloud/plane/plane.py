#!/usr/bin/env python3
"""Loopback OpenStack control plane for stackback's integration tests.

Standard library only: run it with any Python >= 3.11 (system or project venv).

    plane.py install                 # apt packages + cached service virtualenv
    plane.py start --dir RUNDIR      # start everything, write RUNDIR/clouds.yaml
    plane.py status --dir RUNDIR     # which recorded processes are alive
    plane.py env --dir RUNDIR        # shell exports for OS_CLIENT_CONFIG_FILE
    plane.py stop --dir RUNDIR       # stop exactly the processes start recorded
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = [
    "keystone==30.0.0",
    "glance==33.0.0",
    "openstack-placement==16.0.0",
    "nova==34.0.0",
    "cinder==29.0.0",
    "openstacksdk==4.22.0",
    "gunicorn",
    "psycopg2-binary",
    "python-memcached",
]
APT_PACKAGES = {
    "rabbitmq-server": "/usr/lib/rabbitmq/bin/rabbitmq-server",
    "postgresql": "/usr/lib/postgresql",
}


def log(msg: str) -> None:
    print(f"[plane {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    base = os.environ.get("STACKBACK_PLANE_CACHE") or str(Path.home() / ".cache" / "stackback")
    return Path(base)


def venv_key(python: str) -> str:
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], check=True, capture_output=True, text=True
    ).stdout
    return hashlib.sha256(("\n".join(REQUIREMENTS) + "\n" + version).encode()).hexdigest()[:12]


def venv_dir() -> Path:
    """The plane virtualenv; ``build_venv`` marks a complete one with its key file."""
    return cache_dir() / "plane-venv"


# --------------------------------------------------------------------------- install


def apt_install() -> None:
    missing = [pkg for pkg, probe in APT_PACKAGES.items() if not Path(probe).exists()]
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"apt-get install {' '.join(missing)}")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env
    )


def base_python() -> str:
    for cand in ("/usr/bin/python3.11", "/usr/bin/python3", sys.executable):
        if Path(cand).exists():
            return cand
    raise SystemExit("no python3 found for the plane virtualenv")


def build_venv() -> Path:
    python = base_python()
    venv = venv_dir()
    key = venv_key(python)
    stamp = venv / ".stackback-plane-key"
    if stamp.exists() and stamp.read_text().strip() == key:
        log(f"cached plane venv {venv} is current ({key})")
        return venv
    if venv.exists():
        log(f"rebuilding plane venv {venv} (requirements changed)")
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    # Scripts in a venv hard-code its path, so build in place; the key file written last
    # marks a complete build, and anything without it is rebuilt.
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    # The machine-wide pip constraints only cap unrelated packages; keep them out of this
    # venv anyway so the pins above are the only ones that apply.
    env = dict(os.environ, PIP_CONSTRAINT="")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    pip_log = venv.parent / "plane-venv-pip.log"
    with pip_log.open("w") as out:
        for args in (["--upgrade", "pip", "setuptools", "wheel"], REQUIREMENTS):
            done = subprocess.run([*pip, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode:
                raise SystemExit(f"pip install failed; see {pip_log}")
    stamp.write_text(key + "\n")
    return venv


def cmd_install(_: argparse.Namespace) -> None:
    t0 = time.monotonic()
    cache_dir().mkdir(parents=True, exist_ok=True)
    # Several test sessions may install at once: one builds, the others wait and reuse.
    with (cache_dir() / "plane-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        apt_install()
        venv = build_venv()
    log(f"install done in {time.monotonic() - t0:.1f}s; venv {venv}")


# --------------------------------------------------------------------------- processes

PG_USER = "postgres"
REGION = "RegionOne"
ADMIN_PASSWORD = "stackback-admin"
SERVICE_PASSWORD = "stackback-service"
SERVICES = ("keystone", "glance", "placement", "nova", "cinder", "neutron")
SNAPSHOT_DELAY_FILE = "fake-snapshot-seconds"  # read by nova_compute.py at each snapshot
DATABASES = ("keystone", "glance", "placement", "nova_api", "nova", "nova_cell0", "cinder")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def as_user(user: str | None, argv: list[str]) -> list[str]:
    """ARGV run as USER (PostgreSQL refuses to run as root); unchanged when USER is None."""
    if user is None:
        return argv
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name, or None if no such live process.

    A zombie counts as gone: it has exited and waits only to be reaped by its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields


def proc_start_time(pid: int) -> str | None:
    """Start time of a live process in clock ticks (field 22 of /proc/PID/stat), or None."""
    fields = proc_stat(pid)
    return fields[19] if fields else None


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = proc_stat(int(entry.name))
            if fields and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


@dataclasses.dataclass
class Recorded:
    name: str
    pid: int
    start: str

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start

    def group(self) -> list[int]:
        """Live members of the process group this process leads (or led).

        If the leader has exited its group may live on; the kernel does not reuse a PID
        while a group of that id exists, so the members are still ours. If the PID now
        belongs to another process, the group is gone and so is anything of ours."""
        if self.alive() or proc_start_time(self.pid) is None:
            return group_members(self.pid)
        return []


def read_pids(run_dir: Path) -> list[Recorded]:
    path = run_dir / "pids"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        name, pid, start = line.split()
        out.append(Recorded(name, int(pid), start))
    return out


class Plane:
    def __init__(self, run_dir: Path) -> None:
        self.run = run_dir.resolve()
        self.logs = self.run / "logs"
        self.etc = self.run / "etc"
        self.venv = venv_dir()
        self.bin = self.venv / "bin"
        self.state_file = self.run / "state.json"
        self.state: dict[str, Any] = {}
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())

    # -- helpers ------------------------------------------------------------------------

    @property
    def ports(self) -> dict[str, int]:
        ports: dict[str, int] = self.state["ports"]
        return ports

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own process group and record it in RUNDIR/pids at once."""
        full_env = dict(os.environ, **(env or {}))
        with (self.logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                as_user(user, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=self.run,
                start_new_session=True,
            )
        start = proc_start_time(proc.pid) or "0"
        with (self.run / "pids").open("a") as pids:
            pids.write(f"{name} {proc.pid} {start}\n")
        return proc

    def run_step(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, user: str | None = None
    ) -> None:
        """Run a one-off command to completion, logging to logs/NAME.log."""
        with (self.logs / f"{name}.log").open("ab") as out:
            done = subprocess.run(
                as_user(user, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, **(env or {})),
                cwd=self.run,
            )
        if done.returncode:
            tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
            raise PlaneError(f"{name} failed ({done.returncode}):\n{tail}")

    def run_parallel(self, steps: dict[str, list[list[str] | Callable[[], None]]]) -> None:
        """Run several chains of steps concurrently, each chain in order.

        A step is a command line (run to completion) or a callable (e.g. one that spawns
        the service whose database the chain has just prepared).
        """
        errors: list[str] = []

        def chain(name: str, commands: list[list[str] | Callable[[], None]]) -> None:
            try:
                for step in commands:
                    if callable(step):
                        step()
                    else:
                        self.run_step(name, step)
            except Exception as exc:  # reported together once every chain has ended
                errors.append(f"{name}: {exc}")

        threads = [threading.Thread(target=chain, args=item) for item in steps.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise PlaneError("\n".join(errors))

    def venv_python(self, script: str, *args: str) -> list[str]:
        return [str(self.bin / "python"), str(HERE / script), *args]

    # -- postgres -----------------------------------------------------------------------

    def pg_bin(self, name: str) -> str:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/" + name))
        if not versions:
            raise PlaneError("PostgreSQL is not installed: run `plane.py install`")
        return str(versions[-1])

    def db_url(self, database: str) -> str:
        sock = self.run / "pg" / "sock"
        return f"postgresql+psycopg2://{PG_USER}@/{database}?host={sock}"

    def start_postgres(self) -> None:
        pg = self.run / "pg"
        data, sock = pg / "data", pg / "sock"
        sock.mkdir(parents=True)
        shutil.chown(pg, PG_USER, PG_USER)
        shutil.chown(sock, PG_USER, PG_USER)
        self.run_step(
            "initdb",
            [
                self.pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            user=PG_USER,
        )
        self.spawn(
            "postgres",
            [
                self.pg_bin("postgres"),
                "-D",
                str(data),
                "-c",
                "listen_addresses=",
                "-c",
                f"unix_socket_directories={sock}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=400",
                "-c",
                "dynamic_shared_memory_type=mmap",
                "-c",
                "shared_buffers=64MB",
            ],
            user=PG_USER,
        )
        wait_for(
            "postgres",
            lambda: (
                subprocess.run(
                    [self.pg_bin("pg_isready"), "-q", "-h", str(sock), "-U", PG_USER]
                ).returncode
                == 0
            ),
            timeout=60,
        )
        # psql runs each -c in its own transaction, as CREATE DATABASE requires.
        creates = [arg for db in DATABASES for arg in ("-c", f"CREATE DATABASE {db}")]
        self.run_step(
            "createdb",
            [self.pg_bin("psql"), "-q", "-h", str(sock), "-U", PG_USER, *creates],
        )

    # -- rabbitmq -----------------------------------------------------------------------

    def start_rabbitmq(self) -> None:
        base = self.run / "rabbitmq"
        for sub in ("home", "mnesia", "log"):
            (base / sub).mkdir(parents=True)
        conf = base / "rabbitmq.conf"
        conf.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.ports['amqp']}\n"
            "loopback_users.guest = true\n"
            "log.console = true\nlog.file = false\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        epmd_env = {"ERL_EPMD_ADDRESS": "127.0.0.1"}
        self.spawn("epmd", ["epmd", "-port", str(self.ports["epmd"])], env=epmd_env)
        env = {
            "HOME": str(base / "home"),
            "ERL_EPMD_PORT": str(self.ports["epmd"]),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": f"stackback{self.ports['amqp']}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.ports["amqp"]),
            "RABBITMQ_DIST_PORT": str(self.ports["rabbit_dist"]),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.spawn("rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], env=env)

    # -- configuration ------------------------------------------------------------------

    def authtoken(self, user: str) -> dict[str, str]:
        return {
            "www_authenticate_uri": self.url("keystone"),
            "auth_url": self.url("keystone"),
            "auth_type": "password",
            "project_domain_name": "Default",
            "user_domain_name": "Default",
            "project_name": "service",
            "username": user,
            "password": SERVICE_PASSWORD,
            "service_token_roles_required": "true",
        }

    def client_auth(self, user: str) -> dict[str, str]:
        auth = self.authtoken(user)
        del auth["www_authenticate_uri"], auth["service_token_roles_required"]
        return {**auth, "region_name": REGION}

    def write_conf(self, service: str, filename: str, sections: dict[str, dict[str, str]]) -> Path:
        path = self.etc / service / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for section, options in sections.items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {value}" for key, value in options.items())
            lines.append("")
        path.write_text("\n".join(lines))
        return path

    def write_configs(self) -> None:
        run, venv_etc = self.run, self.venv / "etc"
        transport = f"rabbit://guest:guest@127.0.0.1:{self.ports['amqp']}/"
        for name in ("keystone", "glance", "nova", "cinder"):
            (run / name).mkdir(exist_ok=True)
        self.write_conf(
            "keystone",
            "keystone.conf",
            {
                "DEFAULT": {"debug": "false"},
                "database": {"connection": self.db_url("keystone")},
                # bcrypt's default cost makes every user creation and token issue slow.
                "identity": {"password_hash_rounds": "4"},
                "token": {"provider": "fernet"},
                "fernet_tokens": {"key_repository": f"{run}/keystone/fernet-keys"},
                "fernet_receipts": {"key_repository": f"{run}/keystone/fernet-keys"},
                "credential": {"key_repository": f"{run}/keystone/credential-keys"},
            },
        )
        glance_etc = self.etc / "glance"
        glance_etc.mkdir(parents=True)
        shutil.copy(venv_etc / "glance" / "glance-api-paste.ini", glance_etc)
        self.write_conf(
            "glance",
            "glance-api.conf",
            {
                "DEFAULT": {"enabled_backends": "fs:file", "show_image_direct_url": "false"},
                "database": {"connection": self.db_url("glance")},
                "glance_store": {"default_backend": "fs"},
                "fs": {"filesystem_store_datadir": f"{run}/glance/images"},
                "os_glance_staging_store": {"filesystem_store_datadir": f"{run}/glance/staging"},
                "os_glance_tasks_store": {"filesystem_store_datadir": f"{run}/glance/tasks"},
                "paste_deploy": {
                    "flavor": "keystone",
                    "config_file": str(glance_etc / "glance-api-paste.ini"),
                },
                "keystone_authtoken": self.authtoken("glance"),
                "oslo_concurrency": {"lock_path": f"{run}/glance/lock"},
            },
        )
        self.write_conf(
            "placement",
            "placement.conf",
            {
                "placement_database": {"connection": self.db_url("placement")},
                "api": {"auth_strategy": "keystone"},
                "keystone_authtoken": self.authtoken("placement"),
            },
        )
        nova_etc = self.etc / "nova"
        nova_etc.mkdir(parents=True)
        shutil.copy(venv_etc / "nova" / "api-paste.ini", nova_etc)
        self.write_conf(
            "nova",
            "nova.conf",
            {
                "DEFAULT": {
                    "transport_url": transport,
                    "compute_driver": "fake.FakeDriver",
                    "state_path": f"{run}/nova",
                    "instances_path": f"{run}/nova/instances",
                    "host": "stackback-compute",
                    "my_ip": "127.0.0.1",
                    "enabled_apis": "osapi_compute",
                },
                "api": {"auth_strategy": "keystone"},
                "wsgi": {"api_paste_config": str(nova_etc / "api-paste.ini")},
                "api_database": {"connection": self.db_url("nova_api")},
                "database": {"connection": self.db_url("nova")},
                "keystone_authtoken": self.authtoken("nova"),
                "service_user": {**self.client_auth("nova"), "send_service_user_token": "true"},
                "placement": self.client_auth("nova"),
                "glance": {"region_name": REGION, "endpoint_override": self.url("glance")},
                "neutron": {**self.client_auth("nova"), "endpoint_override": self.url("neutron")},
                "cinder": {
                    **self.client_auth("nova"),
                    "os_region_name": REGION,
                    "catalog_info": "volumev3::publicURL",
                },
                "scheduler": {"discover_hosts_in_cells_interval": "10", "workers": "1"},
                "conductor": {"workers": "1"},
                "oslo_concurrency": {"lock_path": f"{run}/nova/lock"},
                "vnc": {"enabled": "false"},
            },
        )
        cinder_etc = self.etc / "cinder"
        cinder_etc.mkdir(parents=True)
        shutil.copy(venv_etc / "cinder" / "api-paste.ini", cinder_etc)
        shutil.copy(venv_etc / "cinder" / "resource_filters.json", cinder_etc)
        self.write_conf(
            "cinder",
            "cinder.conf",
            {
                "DEFAULT": {
                    "transport_url": transport,
                    "auth_strategy": "keystone",
                    "state_path": f"{run}/cinder",
                    "volumes_dir": f"{run}/cinder/volumes",
                    "api_paste_config": str(cinder_etc / "api-paste.ini"),
                    "resource_query_filters_file": str(cinder_etc / "resource_filters.json"),
                    "enabled_backends": "fake",
                    "host": "stackback-cinder",
                    "my_ip": "127.0.0.1",
                    "glance_api_servers": self.url("glance"),
                    # cinder-backup: the posix driver into a directory, in chunks of 64 MiB
                    # (the default, 1.9 GB, reads a whole 1 GB volume into memory at once).
                    "backup_driver": "cinder.backup.drivers.posix.PosixBackupDriver",
                    "backup_posix_path": f"{run}/cinder/backups",
                    "backup_file_size": str(64 * 1024**2),
                    # Headroom over Cinder's default of 10: a test that fails midway leaves
                    # its backups, which would otherwise fail the next ones on quota.
                    "quota_backups": "100",
                },
                "fake": {
                    # file_volume.py (on the cinder-volume launcher's path): the fake driver
                    # with a sparse file per volume, attached through os-brick's LocalConnector.
                    "volume_driver": "file_volume.FileVolumeDriver",
                    "volume_backend_name": "fake",
                },
                # os-brick's privileged helper without sudo (the plane runs as root).
                "privsep_osbrick": {
                    "helper_command": f"{self.bin / 'privsep-helper'} --config-file "
                    f"{self.etc / 'cinder' / 'cinder.conf'}"
                },
                "database": {"connection": self.db_url("cinder")},
                "keystone_authtoken": self.authtoken("cinder"),
                "nova": self.client_auth("cinder"),
                "oslo_concurrency": {"lock_path": f"{run}/cinder/lock"},
            },
        )

    def write_keystone_keys(self) -> None:
        """What ``keystone-manage fernet_setup``/``credential_setup`` write, minus two slow
        processes: key 0 (staged) and key 1 (primary), urlsafe base64 of 32 random bytes."""
        for repo in ("fernet-keys", "credential-keys"):
            path = self.run / "keystone" / repo
            path.mkdir(mode=0o700, parents=True)
            for index in ("0", "1"):
                (path / index).write_bytes(base64.urlsafe_b64encode(os.urandom(32)))
                (path / index).chmod(0o600)

    def db_sync(self) -> None:
        """Migrate every database, one chain per service, in parallel. Each chain then starts
        its service; Keystone's also creates the users, projects and catalog."""
        nova_conf = ["--config-file", str(self.etc / "nova" / "nova.conf")]
        cinder_conf = ["--config-file", str(self.etc / "cinder" / "cinder.conf")]
        keystone_conf = ["--config-file", str(self.etc / "keystone" / "keystone.conf")]
        km = [str(self.bin / "keystone-manage"), *keystone_conf]
        nm = [str(self.bin / "nova-manage"), *nova_conf]
        self.run_parallel(
            {
                "keystone-manage": [
                    [*km, "db_sync"],
                    [
                        *km,
                        "bootstrap",
                        "--bootstrap-password",
                        ADMIN_PASSWORD,
                        "--bootstrap-region-id",
                        REGION,
                        "--bootstrap-admin-url",
                        f"{self.url('keystone')}/v3",
                        "--bootstrap-internal-url",
                        f"{self.url('keystone')}/v3",
                        "--bootstrap-public-url",
                        f"{self.url('keystone')}/v3",
                    ],
                    self.start_keystone,
                    lambda: self.bootstrap("identity"),  # overlaps nova's slower migrations
                ],
                "glance-manage": [
                    [
                        str(self.bin / "glance-manage"),
                        "--config-file",
                        str(self.etc / "glance" / "glance-api.conf"),
                        "db_sync",
                    ],
                    self.start_glance,
                ],
                "placement-manage": [
                    [
                        str(self.bin / "placement-manage"),
                        "--config-file",
                        str(self.etc / "placement" / "placement.conf"),
                        "db",
                        "sync",
                    ],
                    self.start_placement,
                ],
                "nova-manage": [
                    [*nm, "api_db", "sync"],
                    [*nm, "cell_v2", "map_cell0"],
                    [*nm, "cell_v2", "create_cell", "--name", "cell1"],
                    [*nm, "db", "sync"],
                    self.start_nova_api,
                ],
                "cinder-manage": [
                    [str(self.bin / "cinder-manage"), *cinder_conf, "db", "sync"],
                    self.start_cinder,
                ],
            }
        )

    # -- services -----------------------------------------------------------------------

    def gunicorn(self, name: str, module: str, *argv: str, env: dict[str, str]) -> None:
        factory_args = ", ".join(repr(a) for a in (module, *argv))
        self.spawn(
            name,
            [
                str(self.bin / "gunicorn"),
                "--bind",
                f"127.0.0.1:{self.ports[name]}",
                "--worker-class",
                "gthread",
                "--workers",
                "1",
                "--threads",
                "8",
                "--keep-alive",
                "75",
                "--timeout",
                "120",
                "--graceful-timeout",
                "5",
                "--pythonpath",
                str(HERE),
                "--no-control-socket",
                "--name",
                f"stackback-{name}",
                f"wsgi_factory:make({factory_args})",
            ],
            env=env,
        )

    # Each starts once its database is ready. nova's conductor, scheduler and compute exit
    # or stall without their Keystone service user, so they start after the identity step.

    def start_keystone(self) -> None:
        self.gunicorn(
            "keystone",
            "keystone.wsgi.api",
            env={"OS_KEYSTONE_CONFIG_DIR": str(self.etc / "keystone")},
        )

    def start_glance(self) -> None:
        self.gunicorn(
            "glance", "glance.wsgi.api", env={"OS_GLANCE_CONFIG_DIR": str(self.etc / "glance")}
        )

    def start_placement(self) -> None:
        self.gunicorn(
            "placement",
            "placement.wsgi.api",
            env={"OS_PLACEMENT_CONFIG_DIR": str(self.etc / "placement")},
        )

    def start_nova_api(self) -> None:
        self.gunicorn(
            "nova", "nova.wsgi.osapi_compute", env={"OS_NOVA_CONFIG_DIR": str(self.etc / "nova")}
        )
        self.spawn(
            "neutron-stub",
            self.venv_python("neutron_stub.py", "--port", str(self.ports["neutron"])),
        )

    def start_nova_services(self) -> None:
        nova_conf = ["--config-file", str(self.etc / "nova" / "nova.conf")]
        self.spawn("nova-conductor", [str(self.bin / "nova-conductor"), *nova_conf])
        self.spawn("nova-scheduler", [str(self.bin / "nova-scheduler"), *nova_conf])
        self.spawn(
            "nova-compute",
            self.venv_python("nova_compute.py", *nova_conf),
            env={
                "STACKBACK_FAKE_SNAPSHOT_SECONDS": os.environ.get(
                    "STACKBACK_FAKE_SNAPSHOT_SECONDS", "0"
                ),
                "STACKBACK_FAKE_SNAPSHOT_FILE": str(self.run / SNAPSHOT_DELAY_FILE),
            },
        )

    def start_cinder(self) -> None:
        cinder_conf = ["--config-file", str(self.etc / "cinder" / "cinder.conf")]
        # cinder's WSGI module reads its config files from sys.argv (no *_CONFIG_DIR).
        self.gunicorn("cinder", "cinder.wsgi.api", *cinder_conf, env={})
        self.spawn("cinder-scheduler", [str(self.bin / "cinder-scheduler"), *cinder_conf])
        self.spawn("cinder-volume", self.venv_python("cinder_volume.py", *cinder_conf))
        self.spawn("cinder-backup", [str(self.bin / "cinder-backup"), *cinder_conf])

    def bootstrap(self, step: str) -> None:
        self.run_step(
            f"bootstrap-{step}",
            self.venv_python("bootstrap.py", step, "--state", str(self.state_file)),
        )

    def discover_hosts(self) -> None:
        self.run_step(
            "nova-manage",
            [
                str(self.bin / "nova-manage"),
                "--config-file",
                str(self.etc / "nova" / "nova.conf"),
                "cell_v2",
                "discover_hosts",
                "--verbose",
            ],
        )

    def write_clouds_yaml(self) -> Path:
        users = self.state["users"]
        lines = ["clouds:"]
        for cloud, (user, project) in users.items():
            lines += [
                f"  {cloud}:",
                f"    region_name: {REGION}",
                "    identity_api_version: 3",
                "    interface: public",
                "    auth:",
                f"      auth_url: {self.url('keystone')}/v3",
                f"      username: {user}",
                f"      password: {self.state['passwords'][user]}",
                f"      project_name: {project}",
                "      user_domain_name: Default",
                "      project_domain_name: Default",
            ]
        path = self.run / "clouds.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- commands -----------------------------------------------------------------------

    def check_can_start(self) -> None:
        """Refuse (before starting anything) what start could not do cleanly."""
        if any(r.alive() for r in read_pids(self.run)):
            raise PlaneError(f"a plane is already running in {self.run}")
        if self.run.exists() and any(self.run.iterdir()):
            raise PlaneError(f"{self.run} is not empty: give each plane a new run directory")
        if not (self.venv / ".stackback-plane-key").exists():
            raise PlaneError(f"no plane venv at {self.venv}: run `plane.py install` first")

    def start(self) -> Path:
        t0 = time.monotonic()
        self.run.mkdir(parents=True, exist_ok=True)
        os.chmod(self.run, 0o755)
        self.logs.mkdir(exist_ok=True)
        # PostgreSQL runs as its own user and keeps its cluster inside the run directory.
        if subprocess.run(as_user(PG_USER, ["test", "-x", str(self.run)])).returncode:
            raise PlaneError(
                f"user {PG_USER} cannot reach {self.run}: every parent of the run "
                "directory must be searchable by others (chmod o+x)"
            )
        ports = {name: free_port() for name in (*SERVICES, "amqp", "epmd", "rabbit_dist")}
        passwords = {"admin": ADMIN_PASSWORD}
        users = {"admin": ("admin", "admin")}
        for project in ("alpha", "beta"):
            for kind, suffix in (("member", ""), ("reader", "-reader")):
                user = f"{project}-{kind}"
                passwords[user] = f"{user}-password"
                users[project + suffix] = (user, project)
        self.state = {
            "ports": ports,
            "passwords": passwords,
            "users": users,
            "venv": str(self.venv),
            "region": REGION,
            "service_password": SERVICE_PASSWORD,
            "urls": {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICES},
        }
        self.state_file.write_text(json.dumps(self.state, indent=2))
        self.start_rabbitmq()
        self.start_postgres()
        self.write_configs()
        self.write_keystone_keys()
        self.db_sync()
        log(f"databases and keystone ready after {time.monotonic() - t0:.1f}s")
        wait_for("rabbitmq", lambda: port_open(ports["amqp"]), timeout=60)
        self.start_nova_services()
        self.bootstrap("resources")
        self.bootstrap("wait-compute")
        self.discover_hosts()
        self.bootstrap("wait-healthy")
        clouds = self.write_clouds_yaml()
        log(f"plane healthy after {time.monotonic() - t0:.1f}s; clouds.yaml: {clouds}")
        return clouds

    def stop(self) -> None:
        recorded = [r for r in read_pids(self.run) if r.group()]
        # Services first, then the broker, then the database (fast shutdown on SIGINT).
        order = {"postgres": 2, "rabbitmq": 1, "epmd": 1}
        for rank in (0, 1, 2):
            batch = [r for r in recorded if order.get(r.name, 0) == rank]
            for rec in batch:
                sig = signal.SIGINT if rec.name == "postgres" else signal.SIGTERM
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(rec.pid, sig)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(r.group() for r in batch):
                time.sleep(0.2)
            for rec in batch:
                if rec.group():
                    log(f"{rec.name} (pgid {rec.pid}) did not stop: SIGKILL")
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(rec.pid, signal.SIGKILL)
        log(f"stopped {len(recorded)} process groups in {self.run}")

    def status(self) -> dict[str, Any]:
        report: dict[str, Any] = {"processes": {}, "rss_mib": 0.0, "pss_mib": 0.0}
        for rec in read_pids(self.run):
            members = rec.group()
            report["processes"][rec.name] = {
                "pid": rec.pid,
                "alive": rec.alive(),
                "members": len(members),
            }
            for pid in members:
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                        key, _, value = line.partition(":")
                        if key in ("Rss", "Pss"):
                            report[f"{key.lower()}_mib"] += int(value.split()[0]) / 1024
        report["rss_mib"] = round(report["rss_mib"])
        report["pss_mib"] = round(report["pss_mib"])
        return report


class PlaneError(RuntimeError):
    pass


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise PlaneError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.3)


def cmd_start(args: argparse.Namespace) -> None:
    plane = Plane(Path(args.dir))
    plane.check_can_start()
    try:
        plane.start()
    except BaseException:
        log(f"start failed; stopping what was started (logs in {plane.logs})")
        plane.stop()
        raise


def cmd_stop(args: argparse.Namespace) -> None:
    Plane(Path(args.dir)).stop()


def cmd_status(args: argparse.Namespace) -> None:
    report = Plane(Path(args.dir)).status()
    print(json.dumps(report, indent=2))
    if not all(p["alive"] for p in report["processes"].values()):
        sys.exit(1)


def cmd_env(args: argparse.Namespace) -> None:
    clouds = Path(args.dir).resolve() / "clouds.yaml"
    if not clouds.exists():
        raise SystemExit(f"{clouds} does not exist: start the plane first")
    print(f"export OS_CLIENT_CONFIG_FILE={clouds}")
    print(f"export STACKBACK_PLANE_CLOUDS={clouds}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="apt packages and the cached plane venv")
    for name, helptext in (
        ("start", "start a plane"),
        ("stop", "stop a plane"),
        ("status", "show a plane's processes and memory"),
        ("env", "print shell exports for a running plane"),
    ):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--dir", required=True, help="the plane's run directory")
    args = parser.parse_args(argv)
    handlers = {
        "install": cmd_install,
        "start": cmd_start,
        "stop": cmd_stop,
        "status": cmd_status,
        "env": cmd_env,
    }
    try:
        handlers[args.command](args)
    except PlaneError as exc:
        raise SystemExit(f"plane: {exc}") from None


if __name__ == "__main__":
    main()
