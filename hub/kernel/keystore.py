"""Key storage: per-person data keys in PostgreSQL (wrapped by the master key) and the
dead-letter sealer.

:class:`PostgresKeyring` implements the :class:`hub.kernel.crypto.Keyring` port. Its methods are
synchronous (pure mapping code calls ``hub.kernel.crypto.seal`` without awaiting), so the keyring
keeps a cache and answers misses through its own asyncpg connection driven by a private
event-loop thread; a miss costs one round-trip and never touches the caller's loop.

Invariants:
- a person has at most one data key, ever: creation is ``INSERT … ON CONFLICT DO NOTHING``
  followed by reading the winner, so concurrent processes agree on the key;
- keys are stored only wrapped (AES-256-GCM under ``master.key``, AAD = key id);
- :meth:`PostgresKeyring.destroy` replaces the wrapped key by a tombstone: the key can
  never be read or re-created, which erases every payload sealed for that person
  (crypto-shredding). Other processes stop serving the key within ``cache_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.kernel.crypto import key_id_for, open_with_key, seal_with_key
from hub.kernel.db import dsn
from hub.kernel.keys import secret_bytes
from hub.kernel.settings import Settings
from schemas.base import Sealed

KID_SALT = b"hub-kid-v1"
DEADLETTER_KID = "deadletter-v1"


def wrap_key(master: bytes, kid: str, data_key: bytes) -> bytes:
    """nonce (12 bytes) ‖ AES-256-GCM(master, data_key, aad=kid)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(master).encrypt(nonce, data_key, kid.encode())


def unwrap_key(master: bytes, kid: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], kid.encode())
    except InvalidTag as exc:
        raise ValueError(f"person key {kid} does not open under the master key") from exc


class PostgresKeyring:
    """Per-person data keys in ``<core schema>.person_keys``. Lifecycle: ``await start()``,
    ``await stop()``. ``destroy`` is async (it is an operator action)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, *, cache_ttl: float = 30.0) -> None:
        self.settings = settings
        self.pool = pool
        self.schema = settings.core_schema
        self.cache_ttl = cache_ttl
        self._master = secret_bytes(settings, "master.key")
        # kid -> (key or None when destroyed, fetched at monotonic time)
        self._cache: dict[str, tuple[bytes | None, float]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncpg.Connection | None = None

    # -- lifecycle

    async def start(self) -> None:
        if self._thread is not None:
            return

        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="keyring-db", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        self._conn = await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(asyncpg.connect(dsn(self.settings)), loop)
        )

    async def stop(self) -> None:
        loop, thread, conn = self._loop, self._thread, self._conn
        self._loop = self._thread = self._conn = None
        if loop is None or thread is None:
            return
        if conn is not None:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(conn.close(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 5)
        loop.close()

    # -- the Keyring protocol (synchronous)

    def key_id(self, person: str) -> str:
        return key_id_for(person, KID_SALT)

    def data_key(self, person: str, *, create: bool) -> bytes | None:
        kid = self.key_id(person)
        cached = self._cached(kid)
        if cached is not None:
            key, _ = cached
            if key is not None or not create:
                return key
            # destroyed: never re-created
            return None
        key = self._call(self._fetch_or_create(kid, create))
        return key

    def key_by_id(self, kid: str) -> bytes | None:
        cached = self._cached(kid)
        if cached is not None:
            return cached[0]
        return self._call(self._fetch_or_create(kid, False))

    # -- async API

    async def prefetch(self, persons: list[str]) -> None:
        """Warm the cache for ``persons`` with one query (keys that exist only)."""
        kids = [self.key_id(p) for p in persons]
        rows = await self.pool.fetch(
            f"SELECT kid, wrapped FROM {self.schema}.person_keys WHERE kid = ANY($1::text[])", kids
        )
        for r in rows:
            self._remember(r["kid"], self._unwrap_row(r["kid"], r["wrapped"]))

    async def destroy(self, person: str) -> bool:
        """Erase the person's key for good (tombstone). True when a key or no row existed
        before (i.e. this call changed something)."""
        kid = self.key_id(person)
        status = await self.pool.execute(
            f"""INSERT INTO {self.schema}.person_keys (kid, wrapped, destroyed_at) VALUES ($1, NULL, now())
                ON CONFLICT (kid) DO UPDATE SET wrapped = NULL, destroyed_at = now()
                WHERE {self.schema}.person_keys.destroyed_at IS NULL""",
            kid,
        )
        self._remember(kid, None)
        return status.endswith(" 1")

    async def is_destroyed(self, person: str) -> bool:
        row = await self.pool.fetchrow(
            f"SELECT destroyed_at FROM {self.schema}.person_keys WHERE kid = $1", self.key_id(person)
        )
        return row is not None and row["destroyed_at"] is not None

    def invalidate(self) -> None:
        with self._lock:
            self._cache.clear()

    # -- internals

    def _cached(self, kid: str) -> tuple[bytes | None, float] | None:
        with self._lock:
            hit = self._cache.get(kid)
        if hit is None or time.monotonic() - hit[1] > self.cache_ttl:
            return None
        return hit

    def _remember(self, kid: str, key: bytes | None) -> None:
        with self._lock:
            self._cache[kid] = (key, time.monotonic())

    def _unwrap_row(self, kid: str, wrapped: bytes | None) -> bytes | None:
        return None if wrapped is None else unwrap_key(self._master, kid, bytes(wrapped))

    def _call(self, coro: Any) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("PostgresKeyring is not started (await keyring.start())")
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout=30)

    async def _fetch_or_create(self, kid: str, create: bool) -> bytes | None:
        conn = self._conn
        assert conn is not None
        if create:
            fresh = AESGCM.generate_key(bit_length=256)
            await conn.execute(
                f"INSERT INTO {self.schema}.person_keys (kid, wrapped) VALUES ($1, $2) "
                "ON CONFLICT (kid) DO NOTHING",
                kid,
                wrap_key(self._master, kid, fresh),
            )
        row = await conn.fetchrow(f"SELECT wrapped FROM {self.schema}.person_keys WHERE kid = $1", kid)
        if row is None:
            return None  # not created, not asked to create: do not cache absence
        key = self._unwrap_row(kid, row["wrapped"])
        self._remember(kid, key)
        return key


class DeadLetterSealer:
    """Seals raw dead-letter payloads with the hub's dead-letter key (``deadletter.key``).
    Raw inputs from CAD, case systems and EHRs may carry PHI, so they are stored sealed and
    opened only by an operator (``hub deadletters show --reveal``, audited)."""

    def __init__(self, key: bytes, kid: str = DEADLETTER_KID) -> None:
        self._key = key
        self.kid = kid

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadLetterSealer:
        return cls(secret_bytes(settings, "deadletter.key"))

    def seal(self, raw: bytes) -> Sealed:
        return seal_with_key(self._key, self.kid, {"raw": base64.b64encode(raw).decode()})

    def open(self, sealed: Sealed) -> bytes:
        if sealed.kid != self.kid:
            raise ValueError(f"not sealed with the dead-letter key ({sealed.kid})")
        return base64.b64decode(open_with_key(self._key, sealed)["raw"])
