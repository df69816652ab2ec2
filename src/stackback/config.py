"""Where stackback keeps its state, and which database and cloud it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from platformdirs import user_state_dir

from stackback.errors import InvalidInput
from stackback.store.database import normalise_url, sqlite_url

if TYPE_CHECKING:
    from stackback.cloud.openstack.identity import KeystoneService
    from stackback.ports import Clock, CredentialStore
    from stackback.services.keystone import KeystoneAuthenticator, PolicyCredentials


def state_dir() -> Path:
    """``$STACKBACK_STATE_DIR``, else the user's state directory (~/.local/state/stackback)."""
    configured = os.environ.get("STACKBACK_STATE_DIR")
    return Path(configured).expanduser() if configured else Path(user_state_dir("stackback"))


@dataclass(frozen=True)
class KeystoneSettings:
    """``keystone`` mode: stackback's service account and how tokens and secrets are kept."""

    cloud: str
    """The clouds.yaml entry of stackback's service user (``STACKBACK_KEYSTONE_CLOUD``)."""
    secret_key_file: Path
    """Fernet key(s) sealing stored secrets (``STACKBACK_SECRET_KEY_FILE``; 0600)."""
    cache_seconds: float = 60.0
    """How long a validated token is trusted without asking Keystone again."""
    cache_size: int = 10_000
    trust_roles: tuple[str, ...] = ("member",)
    """The roles a trust delegates (the creating user must hold each)."""
    timeout: float = 10.0
    """Seconds to wait for Keystone."""


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one invocation."""

    db_url: str
    state_dir: Path
    cloud: str | None
    db_given: bool = False
    """The database was named (``--db`` / ``STACKBACK_DB``), not the state directory's."""
    keystone: KeystoneSettings | None = None
    """Set when ``STACKBACK_KEYSTONE_CLOUD`` names stackback's service account."""
    max_snapshots_per_host: int | None = None
    """``STACKBACK_MAX_SNAPSHOTS_PER_HOST``: the per-host limit a run taken in this process
    (``backup now --wait``, ``policy run --wait``) obeys, as ``serve``'s workers do."""


def load_settings(*, db: str | None = None, cloud: str | None = None) -> Settings:
    """Options beat environment (``STACKBACK_DB``, ``STACKBACK_CLOUD``/``OS_CLOUD``)."""
    directory = state_dir()
    url = db or os.environ.get("STACKBACK_DB")
    given = url is not None
    if url is None:  # the database in the state directory
        if directory.exists() and not directory.is_dir():
            raise InvalidInput(
                f"state directory {directory} is not a directory (set STACKBACK_STATE_DIR to one)",
                field="STACKBACK_STATE_DIR",
            )
        url = sqlite_url(directory / "stackback.db")
    return Settings(
        db_url=normalise_url(url),
        state_dir=directory,
        cloud=cloud or os.environ.get("STACKBACK_CLOUD") or os.environ.get("OS_CLOUD"),
        db_given=given,
        keystone=load_keystone_settings(directory),
        max_snapshots_per_host=_host_limit(),
    )


def _host_limit() -> int | None:
    """``STACKBACK_MAX_SNAPSHOTS_PER_HOST`` (a whole number, at least 1), None if unset."""
    name = "STACKBACK_MAX_SNAPSHOTS_PER_HOST"
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(f"{name}={raw!r} must be a whole number, at least 1", field=name)
    return int(raw)


def _number(name: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r} is not a number", field=name) from None
    if not value >= minimum or value == float("inf"):
        raise InvalidInput(f"{name}={raw!r} must be at least {minimum:g}", field=name)
    return value


def load_keystone_settings(directory: Path) -> KeystoneSettings | None:
    """``STACKBACK_KEYSTONE_*`` from the environment; None without a service cloud."""
    cloud = os.environ.get("STACKBACK_KEYSTONE_CLOUD")
    if not cloud:
        return None
    key_file = os.environ.get("STACKBACK_SECRET_KEY_FILE")
    roles = os.environ.get("STACKBACK_KEYSTONE_TRUST_ROLES", "member")
    trust_roles = tuple(role.strip() for role in roles.split(",") if role.strip())
    if not trust_roles:
        raise InvalidInput(
            "STACKBACK_KEYSTONE_TRUST_ROLES names no role", field="STACKBACK_KEYSTONE_TRUST_ROLES"
        )
    return KeystoneSettings(
        cloud=cloud,
        secret_key_file=Path(key_file).expanduser() if key_file else directory / "secret.key",
        cache_seconds=_number("STACKBACK_KEYSTONE_CACHE_SECONDS", 60.0, minimum=0),
        cache_size=int(_number("STACKBACK_KEYSTONE_CACHE_SIZE", 10_000, minimum=0)),
        trust_roles=trust_roles,
        timeout=_number("STACKBACK_KEYSTONE_TIMEOUT", 10.0, minimum=0.1),
    )


def _require_keystone(settings: Settings) -> KeystoneSettings:
    if settings.keystone is None:
        raise InvalidInput(
            "keystone mode needs STACKBACK_KEYSTONE_CLOUD (the clouds.yaml entry of "
            "stackback's service user)",
            field="STACKBACK_KEYSTONE_CLOUD",
        )
    return settings.keystone


def keystone_service(settings: Settings) -> KeystoneService:
    """stackback's Keystone service account (reads clouds.yaml; contacts nothing yet)."""
    from stackback.cloud.openstack.identity import KeystoneService

    keystone = _require_keystone(settings)
    return KeystoneService(keystone.cloud, timeout=keystone.timeout)


def keystone_authenticator(
    settings: Settings, clock: Clock, *, keystone: KeystoneService | None = None
) -> KeystoneAuthenticator:
    """The ``keystone`` mode authenticator these settings describe (contacts nothing yet);
    ``keystone`` shares one service account with :func:`policy_credentials`."""
    from stackback.services.keystone import KeystoneAuthenticator

    config = _require_keystone(settings)
    return KeystoneAuthenticator(
        keystone or keystone_service(settings),
        clock,
        max_age=timedelta(seconds=config.cache_seconds),
        max_entries=config.cache_size,
    )


def policy_credentials(
    settings: Settings,
    store: CredentialStore,
    clock: Clock,
    *,
    keystone: KeystoneService | None = None,
) -> PolicyCredentials:
    """Trusts and application credentials for policies, sealed with the settings' key file
    (created 0600 on first use)."""
    from stackback.sealing import SecretBox
    from stackback.services.keystone import PolicyCredentials

    config = _require_keystone(settings)
    return PolicyCredentials(
        keystone or keystone_service(settings),
        store,
        SecretBox.from_file(config.secret_key_file),
        clock,
        trust_roles=config.trust_roles,
    )
