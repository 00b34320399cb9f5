"""Key material. Every secret is a file under ``settings.keys_dir`` (mode 0600) that is
generated on first use in development and supplied by the operator in production
(mounted secret). Nothing here is ever committed or logged.

- ``pseudonym.key``: HMAC-SHA256 key for person pseudonyms;
- ``master.key``: AES-256 key-encryption key that wraps each person's data key;
- ``deadletter.key``: AES-256 key sealing raw dead-letter payloads;
- ``webhook.key``: HMAC key shared with case systems that push webhooks;
- ``jwt-dev.pem``: the development token issuer's private key (RSA);
- ``record-mac.<key id>.key``: HMAC-SHA256 keys of the record MACs
  (:mod:`hub.kernel.recordmac`); the current one is generated in development, older
  accepted ones must be present, and any of them shorter than 32 bytes is refused;
- ``postgres.password``: the local database owner role's password (migrations).
- ``postgres_runtime.password``: the local runtime role's password (what processes serve with).

Outside development every key and secret file is checked when it is read
(:func:`check_secret_file`): it must be a regular file that neither group nor others may
read or write (mode 0600 or 0400), and not empty; a key must be hex and hold at least
:data:`MIN_KEY_BYTES` bytes. A file that fails is refused with :class:`KeyFileError` (a
ConfigError naming the file and the rule) — a weak or exposed key is never used.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from hub.kernel.errors import ConfigError, InfraError
from hub.kernel.recordmac import MIN_KEY_BYTES, MacKeys
from hub.kernel.settings import Settings

#: the runtime PostgreSQL role's password file under ``keys/``
RUNTIME_PASSWORD = "postgres_runtime.password"
KEY_NAMES = ("pseudonym.key", "master.key", "deadletter.key", "webhook.key")


class MissingKeyError(InfraError):
    """A key or secret file is absent where it is never generated (production)."""


class KeyFileError(ConfigError):
    """A key or secret file production refuses: empty, too short, not hex, or readable
    or writable by group or others (the message names the file and the rule)."""


def check_secret_file(path: Path) -> None:
    """Refuse (:class:`KeyFileError`) a secret file that is not a regular file or that
    group or others may read or write (``stat`` follows symlinks, as mounted secrets use)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MissingKeyError(f"key file {path} is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"key file {path} is accessible to group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            "it must be 0600 or 0400 (chmod 600, or defaultMode: 0400 for a mounted secret)"
        )


def read_key(path: Path, *, production: bool) -> bytes:
    """The key bytes of a hex key file: empty or not hex is refused everywhere; outside
    development also a key shorter than :data:`MIN_KEY_BYTES` or an exposed file."""
    if production:
        check_secret_file(path)
    text = path.read_text().strip()
    if not text:
        raise KeyFileError(f"key file {path} is empty")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"key file {path} is not hex") from None
    if production and len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
    return key


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
    return read_key(path, production=not settings.is_development)


def secret_text(settings: Settings, name: str) -> str:
    """A textual secret such as a password, generated in development when absent."""
    path = settings.keys_dir / name
    if not path.exists():
        if not settings.is_development:
            raise MissingKeyError(f"secret file {path} is missing")
        with contextlib.suppress(FileExistsError):
            _write_secret(path, secrets.token_urlsafe(24).encode())
    if not settings.is_development:
        check_secret_file(path)
    text = path.read_text().strip()
    if not text:
        raise KeyFileError(f"secret file {path} is empty")
    return text


def record_mac_key_name(kid: str) -> str:
    return f"record-mac.{kid}.key"


def _strict_key(settings: Settings, name: str) -> bytes:
    """A key file that must exist and hold at least :data:`MIN_KEY_BYTES` bytes (hex),
    in development too (outside it also checked as :func:`read_key` does)."""
    path = settings.keys_dir / name
    if not path.exists():
        raise MissingKeyError(f"key file {path} is missing")
    key = read_key(path, production=not settings.is_development)
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
    return key


def record_mac_keys(settings: Settings) -> MacKeys:
    """The record-MAC keys of ``settings.record_mac``: the current key (generated in
    development when absent) and every accepted older key (never generated)."""
    cfg = settings.record_mac
    current = record_mac_key_name(cfg.key_id)
    if settings.is_development:
        secret_bytes(settings, current)
    keys = {cfg.key_id: _strict_key(settings, current)}
    for kid in cfg.accepted_key_ids:
        keys.setdefault(kid, _strict_key(settings, record_mac_key_name(kid)))
    return MacKeys(cfg.key_id, keys)


def ensure_dev_keys(settings: Settings) -> None:
    for name in KEY_NAMES:
        secret_bytes(settings, name)
    record_mac_keys(settings)
    secret_text(settings, "postgres.password")
    secret_text(settings, RUNTIME_PASSWORD)
