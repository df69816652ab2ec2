"""The alerts file (YAML): how often to evaluate, and the channels with their routes.

Secrets are best given by the name of an environment variable (``secret_env``,
``password_env``); ``secret`` / ``password`` in the file work too. See docs/alerts.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from stackback.alerts import Event, Route
from stackback.errors import InvalidInput
from stackback.notify import Channel
from stackback.notify.email import EmailChannel
from stackback.notify.retry import Backoff
from stackback.notify.webhook import WebhookChannel

DEFAULT_INTERVAL = timedelta(seconds=60)
DEFAULT_DELETION_ATTEMPTS = 3


def alerts_path(given: Path | None, state_dir: Path) -> Path | None:
    """The alerts file: the one given (option or ``STACKBACK_ALERTS``), else ``alerts.yaml``
    in the state directory if it exists, else none (no alerts)."""
    if given is not None:
        return given
    default = state_dir / "alerts.yaml"
    return default if default.is_file() else None


@dataclass(frozen=True)
class AlertSettings:
    channels: tuple[Channel, ...]
    interval: timedelta = DEFAULT_INTERVAL
    deletion_failing_after: int = DEFAULT_DELETION_ATTEMPTS
    """A deletion counts as failing repeatedly once an artifact has failed this many times."""

    def secrets(self) -> list[str]:
        return [s for channel in self.channels for s in channel.secrets() if s]


def load_alerts(path: Path, env: Mapping[str, str] | None = None) -> AlertSettings:
    """Read and check the alerts file; every mistake is an ``InvalidInput`` naming it."""
    environ = os.environ if env is None else env
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise InvalidInput(
            f"alerts file {path}: {error.strerror or error}", field="alerts"
        ) from None
    except yaml.YAMLError as error:
        raise InvalidInput(f"alerts file {path}: not YAML ({error})", field="alerts") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"alerts file {path}: expected a mapping", field="alerts")
    where = f"alerts file {path}"
    unknown = set(data) - {"interval", "deletion_failing_after", "channels"}
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {sorted(unknown)}", field="alerts")
    channels = data.get("channels") or []
    if not isinstance(channels, list):
        raise InvalidInput(f"{where}: channels must be a list", field="alerts")
    built = [_channel(c, f"{where}, channel {i + 1}", environ) for i, c in enumerate(channels)]
    names = [c.route.channel for c in built]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{where}: channel names must be unique", field="alerts")
    return AlertSettings(
        channels=tuple(built),
        interval=timedelta(seconds=_number(data, "interval", 60, where, low=1)),
        deletion_failing_after=int(
            _number(data, "deletion_failing_after", DEFAULT_DELETION_ATTEMPTS, where, low=1)
        ),
    )


_COMMON = {"name", "type", "policies", "events", "timeout", "attempts", "backoff"}
_WEBHOOK = _COMMON | {"url", "secret", "secret_env"}
_EMAIL = _COMMON | {
    "host",
    "port",
    "starttls",
    "username",
    "password",
    "password_env",
    "from",
    "to",
    "ca_file",
}


def _channel(raw: Any, where: str, env: Mapping[str, str]) -> Channel:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected a mapping", field="alerts")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where}: needs a name", field="alerts")
    where = f"{where} ({name})"
    kind = raw.get("type")
    allowed = {"webhook": _WEBHOOK, "email": _EMAIL}.get(str(kind))
    if allowed is None:
        raise InvalidInput(f"{where}: type must be webhook or email, not {kind!r}", field="alerts")
    unknown = set(raw) - allowed
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {sorted(unknown)}", field="alerts")
    route = Route(name, _strings(raw, "policies", where), _events(raw, where))
    backoff = Backoff(
        attempts=int(_number(raw, "attempts", 4, where, low=1)),
        base=_number(raw, "backoff", 1.0, where, low=0),
    )
    timeout = _number(raw, "timeout", 10.0, where, low=0.001)
    if kind == "webhook":
        url = raw.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInput(f"{where}: url must be http:// or https://", field="alerts")
        secret = _secret(raw, "secret", where, env)
        if not secret:
            raise InvalidInput(f"{where}: needs secret_env (or secret)", field="alerts")
        return WebhookChannel(route, url, secret, timeout=timeout, backoff=backoff)
    host = raw.get("host")
    sender = raw.get("from")
    recipients = _strings(raw, "to", where)
    if not isinstance(host, str) or not host or not isinstance(sender, str) or not recipients:
        raise InvalidInput(f"{where}: needs host, from and to", field="alerts")
    username = raw.get("username")
    return EmailChannel(
        route,
        host,
        int(_number(raw, "port", 587, where, low=1)),
        sender,
        recipients,
        starttls=bool(raw.get("starttls", True)),
        username=str(username) if username else None,
        password=_secret(raw, "password", where, env),
        ca_file=str(raw["ca_file"]) if raw.get("ca_file") else None,
        timeout=timeout,
        backoff=backoff,
    )


def _secret(raw: Mapping[str, Any], key: str, where: str, env: Mapping[str, str]) -> str | None:
    variable = raw.get(f"{key}_env")
    if variable is not None:
        value = env.get(str(variable))
        if not value:
            raise InvalidInput(
                f"{where}: environment variable {variable} is not set", field="alerts"
            )
        return value
    value = raw.get(key)
    return str(value) if value is not None else None


def _strings(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{where}: {key} must be a list of names", field="alerts")
    return tuple(value)


def _events(raw: Mapping[str, Any], where: str) -> tuple[Event, ...]:
    names = _strings(raw, "events", where)
    known = {e.value for e in Event}
    wrong = [n for n in names if n not in known]
    if wrong:
        raise InvalidInput(
            f"{where}: unknown event(s) {wrong}; known: {sorted(known)}", field="alerts"
        )
    return tuple(Event(n) for n in names)


def _number(raw: Mapping[str, Any], key: str, default: float, where: str, *, low: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
        raise InvalidInput(f"{where}: {key} must be a number of at least {low:g}", field="alerts")
    return float(value)
