"""``stackback api``, and the API that ``stackback serve`` runs beside its engine (uvicorn)."""

from __future__ import annotations

import signal
import socket
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from stackback.cli.context import AppContext
from stackback.cli.policy import pass_app
from stackback.errors import InvalidInput
from stackback.ports import CloudResolver, Store
from stackback.services.access import Authenticator, Principal
from stackback.services.container import Services
from stackback.services.local_auth import (
    TOKEN_FILE,
    WEB_SECRET_FILE,
    WEB_SESSION_LIFETIME,
    LocalAuthenticator,
    ensure_local_token,
    ensure_secret_file,
)
from stackback.services.metrics import Metrics

if TYPE_CHECKING:  # FastAPI and uvicorn are imported only by the commands that serve
    import uvicorn

DEFAULT_API_PORT = 8779
POLICY_FILE = "policy.yaml"


def api_options(func: Any) -> Any:
    """The options of every command that serves the API."""
    options = [
        click.option(
            "--listen",
            default="127.0.0.1",
            show_default=True,
            metavar="ADDR",
            help="Address the API listens on (0.0.0.0: every interface).",
        ),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=DEFAULT_API_PORT,
            show_default=True,
            envvar="STACKBACK_API_PORT",
            help="Port of the API (0: any free one). Env: STACKBACK_API_PORT.",
        ),
        click.option(
            "--auth",
            type=click.Choice(["local", "keystone"]),
            default="local",
            show_default=True,
            envvar="STACKBACK_AUTH",
            help="local: one token, made in the state directory and printed once; keystone: "
            "Keystone tokens (STACKBACK_KEYSTONE_CLOUD names stackback's service user). "
            "Env: STACKBACK_AUTH.",
        ),
        click.option(
            "--web-secret-file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="STACKBACK_WEB_SECRET_FILE",
            help="The secret sealing the dashboard's session cookies and signing its forms "
            "(CSRF), shared by replicas; made (0600) if missing; one per line, the first used, "
            f"every one opening cookies. Default: {WEB_SECRET_FILE} in the state directory. "
            "Env: STACKBACK_WEB_SECRET_FILE.",
        ),
        click.option(
            "--web-session-lifetime",
            type=click.IntRange(60),
            default=int(WEB_SESSION_LIFETIME.total_seconds()),
            show_default=True,
            envvar="STACKBACK_WEB_SESSION_LIFETIME",
            help="Seconds a dashboard login lasts at most (never past its token's expiry). "
            "Env: STACKBACK_WEB_SESSION_LIFETIME.",
        ),
        click.option(
            "--policy-file",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="STACKBACK_POLICY_FILE",
            help="Authorization rules (oslo.policy YAML) over the defaults; default: "
            f"{POLICY_FILE} in the state directory if it exists. Env: STACKBACK_POLICY_FILE.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _authenticator(app: AppContext, mode: str) -> Authenticator:
    if mode == "keystone":
        from stackback.config import keystone_authenticator

        credentials = app.credentials
        if credentials is None:
            raise InvalidInput(
                "--auth keystone needs STACKBACK_KEYSTONE_CLOUD (the clouds.yaml entry of "
                "stackback's service user)",
                field="STACKBACK_KEYSTONE_CLOUD",
            )
        return keystone_authenticator(app.settings, app.clock, keystone=credentials.keystone)
    if mode != "local":  # pragma: no cover - click refuses any other
        raise InvalidInput(f"unknown --auth {mode!r}", field="auth")
    token, created = ensure_local_token(app.settings.state_dir)
    if created:
        path = app.settings.state_dir / TOKEN_FILE
        click.echo(f"API token (local mode; shown once, kept in {path}): {token}", err=True)
    return LocalAuthenticator(token)


def _services(
    app: AppContext, mode: str, store: Store | None, clouds: CloudResolver | None
) -> Services:
    """The API's services; in keystone mode a new policy gets its trust (or application
    credential) and a deleted one gives it up."""
    services = Services(store or app.store, clouds or app.clouds, app.clock)
    credentials = app.credentials if mode == "keystone" else None
    if credentials is None:
        return services
    from stackback.services.keystone import credentials_for_new_policy

    def new_credential(principal: Principal, app_id: str | None, app_secret: str | None) -> str:
        return credentials_for_new_policy(
            principal,
            credentials,
            application_credential_id=app_id,
            application_credential_secret=app_secret,
        )

    services.new_credential = new_credential
    services.release_credential = credentials.release
    return services


def web_secret(app: AppContext, given: Path | None) -> list[bytes]:
    """The dashboard's secrets: the file's lines (made, 0600, with one on first use)."""
    text, _ = ensure_secret_file(given or app.settings.state_dir / WEB_SECRET_FILE)
    return [line.strip().encode() for line in text.splitlines() if line.strip()]


def _policy_file(app: AppContext, given: Path | None) -> Path | None:
    if given is not None:
        return given
    default = app.settings.state_dir / POLICY_FILE
    return default if default.is_file() else None


@dataclass
class ApiServer:
    """The API on a socket bound before it starts (a taken port fails at once, in one line)."""

    server: uvicorn.Server
    sock: socket.socket
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="api", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.sock.close()


def api_server(
    app: AppContext,
    options: dict[str, Any],
    *,
    store: Store | None = None,
    clouds: CloudResolver | None = None,
    metrics: Metrics | None = None,
) -> ApiServer:
    """The API over the command's store and clouds, bound to ``--listen``/``--port``."""
    import uvicorn

    from stackback.api.app import create_app
    from stackback.services.authz import PolicyAuthorizer

    address, port = options["listen"], options["port"]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as error:
        sock.close()
        raise InvalidInput(
            f"API: cannot listen on {address}:{port}: {error.strerror or error}", field="port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    try:
        authorizer = PolicyAuthorizer(_policy_file(app, options.get("policy_file")))
        mode = options["auth"]
        authenticator = _authenticator(app, mode)
        application = create_app(
            _services(app, mode, store, clouds),
            authenticator,
            authorizer,
            default_cloud=app.settings.cloud,
            metrics_registry=metrics.registry if metrics is not None else None,
            web_secret=web_secret(app, options.get("web_secret_file")),
            web_session_lifetime=timedelta(
                seconds=options.get("web_session_lifetime") or WEB_SESSION_LIFETIME.total_seconds()
            ),
        )
    except BaseException:
        sock.close()
        raise
    config = uvicorn.Config(application, log_level="warning", access_log=False, lifespan="off")
    return ApiServer(uvicorn.Server(config), sock)


@click.command("api")
@api_options
@pass_app
def api(app: AppContext, /, **options: Any) -> None:
    """Only the REST API (under /v1; the scheduler and workers run elsewhere). Ctrl-C stops."""
    server = api_server(app, options)
    stop = threading.Event()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.start()
    click.echo(
        f"API on {server.url}/v1 (OpenAPI: {server.url}/openapi.json; dashboard: {server.url}/)",
        err=True,
    )
    try:
        stop.wait()
    finally:
        server.stop()


COMMANDS = [api]
