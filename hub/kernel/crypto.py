"""Per-person encryption of clinical payloads (crypto-shredding).

Each person (pseudonym) has a random 256-bit data key. Payloads are sealed with
AES-256-GCM under that key; the key id (not the pseudonym) and nonce travel with the
ciphertext. Destroying the key makes every sealed payload of that person unreadable in
every copy and replay of the log, while pseudonymous non-PHI facts stay countable.

:class:`Keyring` is the port; :class:`MemoryKeyring` serves pure tests;
``hub.kernel.keystore.PostgresKeyring`` persists keys wrapped by the master key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.kernel.errors import PermanentError
from schemas.base import Sealed


class KeyDestroyedError(PermanentError, LookupError):
    """The person's key was destroyed: the payload is erased."""


class Keyring(Protocol):
    def key_id(self, person: str) -> str: ...
    def data_key(self, person: str, *, create: bool) -> bytes | None: ...
    def key_by_id(self, kid: str) -> bytes | None: ...


def key_id_for(person: str, salt: bytes) -> str:
    return "k_" + hashlib.sha256(salt + person.encode()).hexdigest()[:24]


class MemoryKeyring:
    """A keyring held in memory (tests and one-shot tools)."""

    def __init__(self, salt: bytes = b"") -> None:
        self._salt = salt
        self._keys: dict[str, bytes] = {}
        self._destroyed: set[str] = set()

    def key_id(self, person: str) -> str:
        return key_id_for(person, self._salt)

    def data_key(self, person: str, *, create: bool) -> bytes | None:
        kid = self.key_id(person)
        if kid in self._destroyed:
            return None
        if kid not in self._keys and create:
            self._keys[kid] = AESGCM.generate_key(bit_length=256)
        return self._keys.get(kid)

    def key_by_id(self, kid: str) -> bytes | None:
        return None if kid in self._destroyed else self._keys.get(kid)

    def destroy(self, person: str) -> None:
        kid = self.key_id(person)
        self._keys.pop(kid, None)
        self._destroyed.add(kid)


def seal_with_key(key: bytes, kid: str, payload: dict[str, Any]) -> Sealed:
    nonce = os.urandom(12)
    plaintext = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    ct = AESGCM(key).encrypt(nonce, plaintext, kid.encode())
    return Sealed(kid=kid, nonce=base64.b64encode(nonce).decode(), ciphertext=base64.b64encode(ct).decode())


def open_with_key(key: bytes, sealed: Sealed) -> dict[str, Any]:
    try:
        pt = AESGCM(key).decrypt(
            base64.b64decode(sealed.nonce), base64.b64decode(sealed.ciphertext), sealed.kid.encode()
        )
    except InvalidTag as exc:
        raise ValueError(f"sealed payload {sealed.kid} failed authentication") from exc
    return json.loads(pt)


def seal(keyring: Keyring, person: str, payload: dict[str, Any]) -> Sealed:
    key = keyring.data_key(person, create=True)
    if key is None:
        raise KeyDestroyedError("person was erased; new clinical payloads cannot be sealed for them")
    return seal_with_key(key, keyring.key_id(person), payload)


def unseal(keyring: Keyring, sealed: Sealed) -> dict[str, Any]:
    """The clear payload, or :class:`KeyDestroyedError` when the person was erased."""
    key = keyring.key_by_id(sealed.kid)
    if key is None:
        raise KeyDestroyedError(sealed.kid)
    return open_with_key(key, sealed)
