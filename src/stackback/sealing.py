"""Secrets at rest: Fernet encryption (AES-128-CBC + HMAC-SHA256) with a key kept in a file.

The key file holds one Fernet key per line: the first seals, every one opens (a new key
put first rotates without losing what older keys sealed). A missing file is created with
a fresh key, mode 0600; a file that group or others can read is refused.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from stackback.errors import InvalidInput, StackbackError


class SecretUnreadable(StackbackError):
    """A sealed secret cannot be opened with the keys at hand (key file replaced or lost)."""

    code = "secret-unreadable"


class SecretBox:
    """Seals and opens short secrets (application credential secrets) for the store."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise InvalidInput("a secret key file needs at least one key", field="secret-key")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError:
            raise InvalidInput(
                "the secret key file holds a line that is not a Fernet key", field="secret-key"
            ) from None

    @classmethod
    def from_file(cls, path: Path) -> SecretBox:
        """The keys in ``path``; a missing file is created (0600) with a new key."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it first: use its key
                pass
            else:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(Fernet.generate_key() + b"\n")
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidInput(
                f"secret key file {path} is readable by others (mode {mode & 0o777:o}): "
                "chmod 600 it",
                field="secret-key",
            )
        keys = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
        return cls(keys)

    def seal(self, secret: str, *, at: int | None = None) -> str:
        """``secret`` sealed (stamped with ``at``, seconds since the epoch; default now)."""
        data = secret.encode()
        if at is None:
            return self._fernet.encrypt(data).decode("ascii")
        return self._fernet.encrypt_at_time(data, at).decode("ascii")

    def open(self, sealed: str, *, ttl: int | None = None, at: int | None = None) -> str:
        """The secret in ``sealed``; ``SecretUnreadable`` if no key opens it, or (``ttl``)
        if it was sealed more than ``ttl`` seconds before ``at`` (default now)."""
        try:
            if ttl is not None and at is not None:
                return self._fernet.decrypt_at_time(sealed.encode("ascii"), ttl, at).decode()
            return self._fernet.decrypt(sealed.encode("ascii"), ttl).decode()
        except (InvalidToken, ValueError):
            raise SecretUnreadable(
                "a stored secret cannot be decrypted with the secret key file's keys "
                "(was the key file replaced?)"
            ) from None
