"""gunicorn application factory for OpenStack WSGI modules (runs in the plane venv).

OpenStack services parse ``sys.argv`` with oslo.config when their WSGI module is imported;
under gunicorn that is gunicorn's own command line, so replace it first: with nothing for
services that read ``OS_<SERVICE>_CONFIG_DIR`` (set by plane.py), with ``--config-file``
for cinder, which has no such variable.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def make(module: str, *argv: str) -> Callable[..., Any]:
    """Import MODULE with ``sys.argv[1:]`` set to ARGV and return its ``application``."""
    sys.argv[1:] = argv
    app: Callable[..., Any] = importlib.import_module(module).application
    return app
