"""Where stackback keeps its state, and which database and cloud it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_state_dir

from stackback.errors import InvalidInput
from stackback.store.database import normalise_url, sqlite_url


def state_dir() -> Path:
    """``$STACKBACK_STATE_DIR``, else the user's state directory (~/.local/state/stackback)."""
    configured = os.environ.get("STACKBACK_STATE_DIR")
    return Path(configured).expanduser() if configured else Path(user_state_dir("stackback"))


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one invocation."""

    db_url: str
    state_dir: Path
    cloud: str | None
    db_given: bool = False
    """The database was named (``--db`` / ``STACKBACK_DB``), not the state directory's."""


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
    )
