"""Per-person encryption of clinical payloads (crypto-shredding).

Each person (pseudonym) has a random 256-bit data key. Payloads are sealed with
AES-256-GCM under that key; the key id (not the pseudonym) and nonce travel with the
ciphertext.

Nonces are synthetic (deterministic), so that a retry re-seals byte-identically: a producer
that crashed between Kafka's acknowledgement and the index commit maps its record again,
and the second copy must be identical to the first for ``hub verify`` to recognise it as an
orphan copy (:mod:`hub.kernel.verify`). The construction is the SIV composition (Rogaway &
Shrimpton, RFC 5297 §1.3.1; the same idea as AES-GCM-SIV, RFC 8452) with AES-GCM as the
AEAD::

    nonce_key = HKDF-SHA256(data key, info="hub-seal-nonce-v1")
    nonce     = HMAC-SHA256(nonce_key, lp(kid) ‖ lp(context) ‖ plaintext)[:12]

``context`` names the fact and field being sealed (e.g. ``source/record/revision/note``),
so it is the same on every retry of one fact and different for every other. Properties:
identical (key, context, plaintext) give identical ciphertexts (intended: that is the
retry); a different plaintext gives an unrelated nonce, so a nonce repeats under one key
only by a 96-bit collision (birthday bound ~2^48 seals per person key), never because two
messages share a context; an observer learns only that two sealed fields with the same
context hold the same plaintext (the context includes the fact's identity, so equal notes
of different facts stay unlinkable). Opening is unchanged: the nonce travels with the
ciphertext, so payloads sealed with random nonces before still open.

Destroying the key makes every sealed payload of that person unreadable in every copy and
replay of the log, while pseudonymous non-PHI facts stay countable.

:class:`Keyring` is the synchronous port pure code seals and opens with;
:class:`KeyStore` is the asynchronous one that looks keys up first. Pure code (a
connector's mapper) never waits on a database: its caller awaits
:meth:`KeyStore.resolve` for the persons it will seal for, then hands it the
:class:`ResolvedKeys` snapshot, a :class:`Keyring` without I/O. :class:`MemoryKeyring`
serves pure tests (it is both); ``hub.kernel.keystore.TokenKeyring`` persists keys
encrypted under an epoch key on the PKCS#11 token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hub.kernel.errors import PermanentError, TransientError
from schemas.base import Sealed


class KeyDestroyedError(PermanentError, LookupError):
    """The person's key was destroyed: the payload is erased."""


class KeyNotResolved(TransientError, LookupError):
    """Pure code asked a :class:`ResolvedKeys` snapshot for a key its caller did not
    resolve first (a programming error). Transient on purpose: the record is retried,
    never dead-lettered for it."""


class Keyring(Protocol):
    """Synchronous key access for pure code. ``data_key`` is ``None`` when the person's key
    was destroyed (or, with ``create=False``, never created)."""

    def key_id(self, person: str) -> str: ...
    def data_key(self, person: str, *, create: bool) -> bytes | None: ...
    def key_by_id(self, kid: str) -> bytes | None: ...


@runtime_checkable
class KeyStore(Protocol):
    """Asynchronous key look-up before pure code runs: ``resolve`` answers the keys of
    ``persons`` (created when ``create`` and absent), ``resolve_ids`` those of sealed
    payloads' key ids, as a :class:`Keyring` that does no I/O. An unreachable or slow store
    raises :class:`hub.kernel.errors.ServiceUnavailable`."""

    async def resolve(self, persons: Iterable[str], *, create: bool = True) -> Keyring: ...

    async def resolve_ids(self, kids: Iterable[str]) -> Keyring: ...


class ResolvedKeys:
    """The keys of a known set of persons / key ids, looked up in advance: a
    :class:`Keyring` without I/O. ``keys`` maps key id → key, or ``None`` when the key was
    destroyed (its id is in ``destroyed``) or does not exist (looked up without creating
    it). Asking for a person or key id outside the snapshot, or with ``create`` for a key
    that does not exist, raises :class:`KeyNotResolved`."""

    def __init__(
        self,
        kids: Mapping[str, str],
        keys: Mapping[str, bytes | None],
        destroyed: Iterable[str] = (),
    ) -> None:
        self._kids = dict(kids)  # person -> key id
        self._keys = dict(keys)  # key id -> key (None: destroyed or absent)
        self._destroyed = frozenset(destroyed)

    def key_id(self, person: str) -> str:
        kid = self._kids.get(person)
        if kid is None:
            raise KeyNotResolved("a person's key was not resolved before sealing")
        return kid

    def data_key(self, person: str, *, create: bool) -> bytes | None:
        kid = self.key_id(person)
        key = self._keys.get(kid)
        if key is None and create and kid not in self._destroyed:
            raise KeyNotResolved("a person's key was resolved without creating it")
        return key

    def key_by_id(self, kid: str) -> bytes | None:
        if kid not in self._keys:
            raise KeyNotResolved("a key id was not resolved before opening")
        return self._keys[kid]


def incident_subject(incident_id: str) -> str:
    """The key-store subject of a CAD incident's sealed free text (remarks, clearance text):
    an incident has its own data key, beside the persons' (``hub erase`` destroys the keys
    of the incidents linked to the person)."""
    return "incident:" + incident_id


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

    async def resolve(self, persons: Iterable[str], *, create: bool = True) -> MemoryKeyring:
        """Already in memory: creates the absent keys when ``create`` and answers itself."""
        for person in persons:
            self.data_key(person, create=create)
        return self

    async def resolve_ids(self, kids: Iterable[str]) -> MemoryKeyring:
        return self


NONCE_INFO = b"hub-seal-nonce-v1"


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def synthetic_nonce(key: bytes, kid: str, context: str, plaintext: bytes) -> bytes:
    """The 96-bit AES-GCM nonce of ``plaintext`` sealed under ``key`` for ``context`` (see
    the module docstring): a PRF (HMAC-SHA256 under a key derived from the data key by
    HKDF, never the data key itself) over the key id, the context and the plaintext."""
    nonce_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=NONCE_INFO).derive(key)
    message = _lp(kid.encode()) + _lp(context.encode()) + plaintext
    return hmac.new(nonce_key, message, hashlib.sha256).digest()[:12]


def seal_with_key(key: bytes, kid: str, payload: dict[str, Any], *, context: str) -> Sealed:
    """``payload`` sealed under ``key`` (AES-256-GCM, key id as associated data) with the
    synthetic nonce of ``context``: the same inputs always give the same bytes."""
    if not context:
        raise ValueError("a sealing context (the fact and field sealed) is required")
    plaintext = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    nonce = synthetic_nonce(key, kid, context, plaintext)
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


def seal(keyring: Keyring, person: str, payload: dict[str, Any], *, context: str) -> Sealed:
    """``payload`` sealed with ``person``'s key. ``context`` names the fact and the field
    (:func:`seal_context`): sealing the same payload for the same context again (a retry)
    gives the same bytes."""
    key = keyring.data_key(person, create=True)
    if key is None:
        raise KeyDestroyedError("person was erased; new clinical payloads cannot be sealed for them")
    return seal_with_key(key, keyring.key_id(person), payload, context=context)


def seal_context(source: str, record_id: str, revision: str | int, field: str) -> str:
    """The sealing context of one field of one fact: the inputs of the fact's
    deterministic id (:func:`schemas.envelope.new_event`) and the field's name."""
    return "\x1f".join((source, record_id, str(revision), field))


def unseal(keyring: Keyring, sealed: Sealed) -> dict[str, Any]:
    """The clear payload, or :class:`KeyDestroyedError` when the person was erased."""
    key = keyring.key_by_id(sealed.kid)
    if key is None:
        raise KeyDestroyedError(sealed.kid)
    return open_with_key(key, sealed)
