"""Log output: text (default) or one JSON object per line, never a secret.

Every record carries the run id of the step being taken (the runner's context) and the
error id its message names, and has its secrets masked: the values registered with
:func:`register_secret`, and ``password=...``-like pairs and tokens in a message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from stackback.engine.runner import _current_run

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"

_ERROR_ID = re.compile(r"error id ([0-9a-f]{12})")
_SECRET_PAIRS = re.compile(
    r"(?i)(password|passwd|secret|token|api[_-]?key|authorization|x-auth-token)"
    r"(['\"]?\s*[:=]\s*['\"]?)([^\s'\",}]+)"
)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this value wherever it appears in a log line from now on."""
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _SECRET_PAIRS.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)


_installed = False


def install_record_factory() -> None:
    """From now on every log record carries ``run_id`` (the run whose step is being taken)
    and ``error_id`` (when its message names one), and its message and traceback have
    every secret masked, whatever handler (or test) receives it."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.run_id = _current_run.get()
        message = record.getMessage()
        found = _ERROR_ID.search(message)
        record.error_id = found[1] if found else None
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, run_id, error_id (and the
    traceback as ``exc`` when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("run_id", "error_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_text or record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int, fmt: str, stream: Any = None) -> None:
    """Log at ``level`` in ``fmt`` (text or json) to stderr, as ``logging.basicConfig`` does:
    nothing changes where handlers are already set (a host application, a test)."""
    install_record_factory()
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
