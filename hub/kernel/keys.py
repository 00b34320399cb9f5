"""Key material. Every secret is a file under ``settings.keys_dir`` (mode 0600) that is
generated on first use in development and supplied by the operator in production
(mounted secret). Nothing here is ever committed or logged.

- ``pseudonym.key``: HMAC-SHA256 key for person pseudonyms;
- ``master.key``: AES-256 key-encryption key that wraps each person's data key;
- ``deadletter.key``: AES-256 key sealing raw dead-letter payloads;
- ``webhook.key``: HMAC key shared with case systems that push webhooks;
- ``jwt-dev.pem``: the development token issuer's private key (RSA);
- ``postgres.password``: the local database owner role's password (migrations).
- ``postgres_runtime.password``: the local runtime role's password (what processes serve with).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from hub.kernel.errors import InfraError
from hub.kernel.settings import Settings

#: the runtime PostgreSQL role's password file under ``keys/``
RUNTIME_PASSWORD = "postgres_runtime.password"
KEY_NAMES = ("pseudonym.key", "master.key", "deadletter.key", "webhook.key")


class MissingKeyError(InfraError):
    """A key or secret file is absent where it is never generated (production)."""


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def secret_bytes(settings: Settings, name: str, size: int = 32) -> bytes:
    """Read a key; in development create it (random, ``size`` bytes) when absent."""
    path = settings.keys_dir / name
    if not path.exists():
        if not settings.is_development:
            raise MissingKeyError(f"key file {path} is missing (production keys are never generated)")
        with contextlib.suppress(FileExistsError):  # another process generated it first
            _write_secret(path, secrets.token_bytes(size).hex().encode())
    return bytes.fromhex(path.read_text().strip())


def secret_text(settings: Settings, name: str) -> str:
    """A textual secret such as a password, generated in development when absent."""
    path = settings.keys_dir / name
    if not path.exists():
        if not settings.is_development:
            raise MissingKeyError(f"secret file {path} is missing")
        with contextlib.suppress(FileExistsError):
            _write_secret(path, secrets.token_urlsafe(24).encode())
    return path.read_text().strip()


def ensure_dev_keys(settings: Settings) -> None:
    for name in KEY_NAMES:
        secret_bytes(settings, name)
    secret_text(settings, "postgres.password")
    secret_text(settings, RUNTIME_PASSWORD)
