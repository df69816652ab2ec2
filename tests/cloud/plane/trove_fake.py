#!/usr/bin/env python3
"""Trove's own API code on 127.0.0.1 in its fake mode, for stackback's database tests.

Standard library only (like ``plane.py``):

    trove_fake.py install                          # pinned trove in a cached virtualenv
    trove_fake.py start --dir RUNDIR --db URL      # config, db_sync, datastore, API; waits
    trove_fake.py stop --dir RUNDIR                # stops exactly the process start recorded

``trove/cmd/fakemode.py`` runs the real API, its database and backup model, with an
in-process task manager and the fakes of ``trove/tests/fakes`` for Nova, the guest
agent, Swift and Keystone. Those fakes have drifted from the code since Trove's own
fake-mode suite was removed (2024): ``RUNNER`` below applies one commented patch per
drift (see ``shared/notes/trove-fake-mode.md``), all in this file so that a new
Trove release shows at once what moved. Requests authenticate with Trove's fake
auth filter: ``X-Auth-Token: admin``, URLs under ``/v1.0/admin``.

``--db`` is a SQLAlchemy URL: ``sqlite:///PATH`` (WAL and a busy timeout are set, see
RUNNER; the tests use this), or a server database Trove's driver reaches.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TROVE_VERSION = "26.0.0"
REQUIREMENTS = [f"trove=={TROVE_VERSION}"]
DATASTORE = ("mysql", "5.7")
ADMIN_TOKEN = "admin"


def log(msg: str) -> None:
    print(f"[trove-fake {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def venv_dir() -> Path:
    base = os.environ.get("STACKBACK_PLANE_CACHE") or str(Path.home() / ".cache" / "stackback")
    return Path(base) / f"trove-venv-{TROVE_VERSION}"


def python() -> Path:
    return venv_dir() / "bin" / "python"


def install() -> Path:
    """The cached virtualenv with the pinned Trove (about 30 s the first time)."""
    done = venv_dir() / ".complete"
    if done.exists():
        return python()
    log(f"installing {' '.join(REQUIREMENTS)} into {venv_dir()}")
    subprocess.run([sys.executable, "-m", "venv", str(venv_dir())], check=True)
    subprocess.run(
        [str(python()), "-m", "pip", "install", "-q", *REQUIREMENTS],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    done.write_text(TROVE_VERSION + "\n")
    return python()


# The process Trove runs in: patches first, then trove's own entry point.
RUNNER = r"""
import sys

def patch_drifted_fakes():
    # 1. The fake guest agent imports unquote_user_host from trove.tests.util; the helper
    #    moved to trove.extensions.common.common.
    import trove.tests.util
    from trove.extensions.common import common
    trove.tests.util.unquote_user_host = common.unquote_user_host

    # 2. The fake Nova's servers.create() and list() and the fake guest's prepare() reject
    #    keyword arguments newer Trove passes (tags=, limit=, ds_version=...): drop them.
    import inspect
    from trove.tests.fakes import guestagent, nova

    def tolerant(function):
        known = set(inspect.signature(function).parameters)

        def call(*args, **kwargs):
            return function(*args, **{k: v for k, v in kwargs.items() if k in known})

        return call

    nova.FakeServers.create = tolerant(nova.FakeServers.create)
    nova.FakeServers.list = tolerant(nova.FakeServers.list)
    guestagent.FakeGuest.prepare = tolerant(guestagent.FakeGuest.prepare)

    # 3. Fake servers report HEALTHY where Trove waits for Nova's ACTIVE.
    status = nova.FakeServer.status.fget
    nova.FakeServer.status = property(
        lambda self: "ACTIVE" if status(self) == "HEALTHY" else status(self)
    )

    # 4. The fake Nova client has no api_version, which Trove compares (listing instances
    #    with tags from 2.26 on; db_sync asks too): an old microversion, without tags.
    from novaclient import api_versions
    nova.FakeClient.api_version = api_versions.APIVersion("2.1")


class _Images:
    # 5. There is no fake Glance client; instance create asks Glance for the datastore
    #    version's image. This one knows every image id and finds one for any tag.
    def get(self, image_id):
        return {"id": image_id, "status": "active"}

    def list(self, filters=None, sort=None, limit=None):
        return [{"id": "fake-image", "status": "active"}]


class _Glance:
    images = _Images()


def fake_glance_client(context, region_name=None):
    return _Glance()


def serve_on_loopback():
    # 6. The WSGI launcher ignores bind_host and listens on 0.0.0.0: force 127.0.0.1.
    from trove.common import wsgi
    launch = wsgi.launch

    def on_loopback(app_name, port, paste_config_file, data={}, host="0.0.0.0", **kwargs):
        return launch(app_name, port, paste_config_file, data, host="127.0.0.1", **kwargs)

    wsgi.launch = on_loopback


def taskmanager_with_the_api_key():
    # 7. Fake mode starts its task manager with an empty RPC encryption key while the API
    #    encrypts with taskmanager_rpc_encr_key: start it with the configured key.
    from trove.cmd import fakemode

    def start_fake_taskmanager(conf):
        from trove.common.rpc import service as rpc_service
        from trove.common.rpc import version as rpc_version
        rpc_service.RpcService(
            key=conf.taskmanager_rpc_encr_key,
            topic=conf.taskmanager_queue,
            rpc_api_version=rpc_version.RPC_API_VERSION,
            manager="trove.taskmanager.manager.Manager",
        ).start()

    fakemode.start_fake_taskmanager = start_fake_taskmanager


def sqlite_that_waits():
    # 8. API and task manager share one process and, on SQLite, one file: a writer that
    #    finds it locked waits (busy timeout) and readers do not block writers (WAL).
    #    Without this, DELETE /backups answers 500 ("database is locked"); with it the
    #    deletion and its cascade to the children work (checked by removing it).
    import sqlalchemy
    from sqlalchemy import event
    create_engine = sqlalchemy.create_engine

    def waiting_engine(url, *args, **kwargs):
        engine = create_engine(url, *args, **kwargs)
        if str(url).startswith("sqlite"):
            @event.listens_for(engine, "connect")
            def pragmas(connection, record):
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA busy_timeout=30000")
        return engine

    sqlalchemy.create_engine = waiting_engine


sys.modules["stackback_trove_fakes"] = sys.modules[__name__]
what = sys.argv.pop(1)
sqlite_that_waits()
if what == "manage":
    from trove.cmd.manage import main
else:
    patch_drifted_fakes()
    serve_on_loopback()
    taskmanager_with_the_api_key()
    from trove.cmd.fakemode import main
sys.exit(main())
"""

PASTE = """
[composite:trove]
use = call:trove.common.wsgi:versioned_urlmap
/: versions
/v1.0: troveapi

[app:versions]
paste.app_factory = trove.versions:app_factory

[pipeline:troveapi]
pipeline = faultwrapper authtoken authorization contextwrapper extensions ratelimit troveapp

[filter:extensions]
paste.filter_factory = trove.common.extensions:factory

[filter:authtoken]
paste.filter_factory = trove.tests.fakes.keystone:filter_factory

[filter:authorization]
paste.filter_factory = trove.common.auth:AuthorizationMiddleware.factory

[filter:contextwrapper]
paste.filter_factory = trove.common.wsgi:ContextMiddleware.factory

[filter:faultwrapper]
paste.filter_factory = trove.common.wsgi:FaultWrapper.factory

[filter:ratelimit]
paste.filter_factory = trove.common.limits:RateLimitingMiddleware.factory

[app:troveapp]
paste.app_factory = trove.common.api:app_factory
"""


def config(rundir: Path, port: int, db_url: str) -> str:
    return f"""
[DEFAULT]
bind_host = 127.0.0.1
bind_port = {port}
trove_api_workers = 1
api_paste_config = {rundir / "api-paste.ini"}
transport_url = fake:/
control_exchange = trove
trove_dns_support = False
taskmanager_rpc_encr_key = bzH6y0SGmjuoY0FN
inst_rpc_key_encr_key = emYjgHFqfXNB1NGehAFIUeoyw4V4XwWHEaKP9jB
swift_url = http://127.0.0.1:1/v1/AUTH_
nova_compute_url = http://127.0.0.1:1/v2
cinder_url = http://127.0.0.1:1/v3
neutron_url = http://127.0.0.1:1
glance_url = http://127.0.0.1:1
remote_nova_client = trove.tests.fakes.nova.fake_create_nova_client
remote_guest_client = trove.tests.fakes.guestagent.fake_create_guest_client
remote_swift_client = trove.tests.fakes.swift.fake_create_swift_client
remote_cinder_client = trove.tests.fakes.nova.fake_create_cinder_client
remote_neutron_client = trove.tests.fakes.neutron.fake_create_neutron_client
remote_glance_client = stackback_trove_fakes.fake_glance_client
add_addresses = True
network_label_regex = .*
use_nova_server_volume = True
verbose = True
debug = False
log_file = {rundir / "trove.log"}
max_backups_per_tenant = 1000
max_instances_per_tenant = 100

[database]
connection = {db_url}

[oslo_messaging_notifications]
driver = noop

[oslo_concurrency]
lock_path = {rundir / "locks"}
"""


def manage(rundir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [
        str(python()),
        str(rundir / "run_trove.py"),
        "manage",
        "--config-file",
        str(rundir / "trove.conf"),
        *args,
    ]
    return subprocess.run(command, check=check, capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(rundir: Path, db_url: str, port: int | None = None) -> dict[str, str]:
    """Write the config, create the schema and a datastore, start the API; its endpoint."""
    install()
    rundir.mkdir(parents=True, exist_ok=True)
    (rundir / "locks").mkdir(exist_ok=True)
    port = port or free_port()
    (rundir / "run_trove.py").write_text(RUNNER)
    (rundir / "api-paste.ini").write_text(PASTE)
    (rundir / "trove.conf").write_text(config(rundir, port, db_url))
    # db_sync creates the tables, then exits non-zero asking the fake Nova for its version
    manage(rundir, "db_sync", check=False)
    kind, version = DATASTORE
    manage(rundir, "datastore_update", kind, "")
    manage(
        rundir,
        "datastore_version_update",
        kind,
        version,
        kind,
        "fake-image",
        "",
        "1",
    )
    manage(rundir, "datastore_update", kind, version)
    log_file = open(rundir / "trove-api.out", "ab")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen(
        [
            str(python()),
            str(rundir / "run_trove.py"),
            "api",
            "--config-file",
            str(rundir / "trove.conf"),
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (rundir / "trove.pid").write_text(str(process.pid))
    endpoint = f"http://127.0.0.1:{port}/v1.0/{ADMIN_TOKEN}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"trove fake mode exited {process.returncode}: see {rundir}")
        try:
            request = urllib.request.Request(
                endpoint + "/instances", headers={"X-Auth-Token": ADMIN_TOKEN}
            )
            with urllib.request.urlopen(request, timeout=2):
                break
        except urllib.error.HTTPError as error:  # it answers: up (the log says why not 2xx)
            log(f"trove answered {error.code} to the first request")
            break
        except OSError:
            time.sleep(0.5)
    else:
        stop(rundir)
        raise RuntimeError(f"trove fake mode did not answer within 60 s: see {rundir}")
    info = {"endpoint": endpoint, "token": ADMIN_TOKEN, "pid": str(process.pid)}
    (rundir / "trove.json").write_text(json.dumps(info))
    log(f"trove {TROVE_VERSION} fake mode at {endpoint}")
    return info


def stop(rundir: Path) -> None:
    """Stop the process group ``start`` recorded (nothing else)."""
    pid_file = rundir / "trove.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    pid_file.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install")
    started = sub.add_parser("start")
    started.add_argument("--dir", type=Path, required=True)
    started.add_argument("--db", required=True)
    started.add_argument("--port", type=int)
    stopped = sub.add_parser("stop")
    stopped.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "install":
        print(install())
    elif args.command == "start":
        print(json.dumps(start(args.dir, args.db, args.port)))
    else:
        stop(args.dir)


if __name__ == "__main__":
    main()
