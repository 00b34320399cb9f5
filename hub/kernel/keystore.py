"""Key storage: per-person data keys behind a PKCS#11 token, and the dead-letter sealer.

:class:`TokenKeyring` is a :class:`hub.kernel.crypto.KeyStore`: callers of pure code
(the source runner before mapping, the referral worker before rendering, the answer
pollers before sealing a note) await :meth:`TokenKeyring.resolve` /
:meth:`TokenKeyring.resolve_ids` for the keys they need — one round-trip for the whole
batch, bounded by ``timeout`` — and hand the :class:`hub.kernel.crypto.ResolvedKeys`
snapshot to the pure code, which then seals and opens without I/O. It also implements the
synchronous :class:`hub.kernel.crypto.Keyring` port for tools that seal outside an event
loop (``seal(rt.keyring, ...)`` from a thread): a cache miss is answered through the
keyring's own connection driven by a private event-loop thread, also bounded by
``timeout``; it never runs on the caller's loop.

Where keys are (:mod:`hub.kernel.token`): each key id has a non-extractable AES key on the
token; the data key is encrypted on the token under it and PostgreSQL's
``<core>.person_keys`` row holds only that ciphertext, the token object's ``CKA_ID`` and
the created/destroyed times. Destroying the token object is what erases: no copy of the
row (dead tuples, WAL, backups) opens without it, and ``master.key`` opens none of them.

Invariants:
- a person has at most one data key, ever: creation is ``INSERT … ON CONFLICT DO NOTHING``
  followed by reading the winner (a loser destroys the token key it made), so concurrent
  processes agree on the key;
- :meth:`TokenKeyring.destroy` first writes the tombstone (the key can never be read or
  re-created), then destroys the token key(s) of that id; re-running it finishes a
  destruction a crash interrupted. Other processes stop serving the key within
  ``cache_ttl`` seconds (their cached copy; the token answers no more);
- a row written before the token existed (``token_id`` NULL, wrapped by ``master.key``) is
  moved to the token on first read;
- a key store that cannot be reached, or does not answer within ``timeout`` seconds
  (server down, table locked), raises :class:`hub.kernel.errors.ServiceUnavailable`:
  callers back off and retry; nothing is sealed without the person's key.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.kernel.crypto import ResolvedKeys, key_id_for, open_with_key, seal_with_key
from hub.kernel.db import dsn
from hub.kernel.errors import ServiceUnavailable, outage_boundary, unavailable
from hub.kernel.keys import secret_bytes
from hub.kernel.settings import Settings
from hub.kernel.token import Token
from schemas.base import Sealed

KID_SALT = b"hub-kid-v1"
Conn = asyncpg.Connection | PoolConnectionProxy
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


@outage_boundary("key store")
class TokenKeyring:
    """Per-person data keys: token keys on the PKCS#11 token, their ciphertext and metadata
    in ``<core schema>.person_keys``. Lifecycle: ``await start()``, ``await stop()``.
    ``destroy`` is async (it is an operator action). Every look-up that reaches PostgreSQL
    gives up after ``timeout`` seconds with :class:`hub.kernel.errors.ServiceUnavailable`."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        token: Token | None = None,
        cache_ttl: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.schema = settings.core_schema
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self.token = token or Token.from_settings(settings)
        self._master: bytes | None = None  # legacy rows only, read lazily
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
        self.token.open()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="keyring-db", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        self._conn = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._connect(), loop))

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
        self.token.close()

    # -- the Keyring protocol (synchronous)

    def key_id(self, person: str) -> str:
        return key_id_for(person, KID_SALT)

    def data_key(self, person: str, *, create: bool) -> bytes | None:
        kid = self.key_id(person)
        cached = self._cached(kid)
        if cached is not None:
            return cached[0]  # None: destroyed, never re-created
        return self._call(self._fetch_one(kid, create))

    def key_by_id(self, kid: str) -> bytes | None:
        cached = self._cached(kid)
        if cached is not None:
            return cached[0]
        return self._call(self._fetch_one(kid, False))

    # -- the KeyStore protocol (asynchronous, bounded)

    async def resolve(self, persons: Iterable[str], *, create: bool = True) -> ResolvedKeys:
        """The keys of ``persons`` as a snapshot pure code seals with (see the module
        docstring): cached keys are served from the cache, the rest are read — and, with
        ``create``, created — in one round-trip. A destroyed key stays ``None``."""
        kids = {p: self.key_id(p) for p in persons}
        return ResolvedKeys(kids, *await self._resolve(set(kids.values()), create))

    async def resolve_ids(self, kids: Iterable[str]) -> ResolvedKeys:
        """The keys of sealed payloads' key ids (never created), to open them without I/O."""
        return ResolvedKeys({}, *await self._resolve(set(kids), False))

    async def destroy(self, person: str) -> bool:
        """Erase the person's key for good: tombstone in PostgreSQL, then ``C_DestroyObject``
        of its token key(s). True when this call changed something (a live key, no row, or a
        token key left behind by an interrupted destruction)."""
        return await self.destroy_id(self.key_id(person))

    async def destroy_id(self, kid: str) -> bool:
        """:meth:`destroy` by key id (an incident key, a person's key)."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT token_id FROM {self.schema}.person_keys WHERE kid = $1", kid)
            status = await conn.execute(
                f"""INSERT INTO {self.schema}.person_keys (kid, wrapped, destroyed_at)
                    VALUES ($1, NULL, now())
                    ON CONFLICT (kid) DO UPDATE SET wrapped = NULL, destroyed_at = now()
                    WHERE {self.schema}.person_keys.destroyed_at IS NULL""",
                kid,
            )
        self._remember(kid, None)
        token_id = None if row is None or row["token_id"] is None else bytes(row["token_id"])
        removed = self.token.destroy(kid, token_id)
        return status.endswith(" 1") or removed > 0

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

    async def _resolve(self, kids: set[str], create: bool) -> tuple[dict[str, bytes | None], set[str]]:
        """(key id → key or None, destroyed key ids) for ``kids``; the cache answers what
        it holds, one bounded round-trip on the pool the rest."""
        keys: dict[str, bytes | None] = {}
        destroyed: set[str] = set()
        missing: list[str] = []
        for kid in sorted(kids):
            hit = self._cached(kid)
            if hit is None:
                missing.append(kid)
            else:
                keys[kid] = hit[0]
                if hit[0] is None:
                    destroyed.add(kid)
        if missing:
            try:
                async with self.pool.acquire(timeout=self.timeout) as conn:
                    loaded = await self._load(conn, missing, create, bound=self.timeout)
            except TimeoutError:
                raise ServiceUnavailable(f"key store did not answer within {self.timeout:g}s") from None
            for kid, key in loaded.items():
                keys[kid] = key
                if key is None:
                    destroyed.add(kid)
            for kid in missing:
                keys.setdefault(kid, None)  # not created, not asked to create: absence is not cached
        return keys, destroyed

    async def _load(
        self, conn: Conn, kids: list[str], create: bool, bound: float | None = None
    ) -> dict[str, bytes | None]:
        """Key id → key (None: destroyed) for the rows of ``kids`` (created first when
        ``create``); absent rows are left out. Remembers what it read. Each PostgreSQL
        statement gives up after ``bound`` seconds (TimeoutError); token work is not
        bounded by it (a batch of new persons takes a few milliseconds each)."""

        async def pg(aw: Any) -> Any:
            return await (aw if bound is None else asyncio.wait_for(aw, bound))

        table = f"{self.schema}.person_keys"
        if create:
            present = {
                r["kid"]
                for r in await pg(conn.fetch(f"SELECT kid FROM {table} WHERE kid = ANY($1::text[])", kids))
            }
            fresh = [kid for kid in kids if kid not in present]
            if fresh:
                made = await self.token.create_wrapped(
                    [(kid, AESGCM.generate_key(bit_length=256)) for kid in fresh]
                )
                won = {
                    r["kid"]
                    for r in await pg(conn.fetch(
                        f"INSERT INTO {table} (kid, wrapped, token_id) "
                        "SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) "
                        "ON CONFLICT (kid) DO NOTHING RETURNING kid",
                        fresh, [blob for _, blob in made], [tid for tid, _ in made],
                    ))
                }
                for kid, (tid, _) in zip(fresh, made, strict=True):
                    if kid not in won:  # another process created it first: keep theirs
                        self.token.destroy_id(tid)
        rows = await pg(
            conn.fetch(f"SELECT kid, wrapped, token_id FROM {table} WHERE kid = ANY($1::text[])", kids)
        )
        on_token = [r for r in rows if r["wrapped"] is not None and r["token_id"] is not None]
        opened = await self.token.decrypt_many(
            [(bytes(r["token_id"]), r["kid"], bytes(r["wrapped"])) for r in on_token]
        )
        keys: dict[str, bytes | None] = {r["kid"]: k for r, k in zip(on_token, opened, strict=True)}
        out: dict[str, bytes | None] = {}
        for r in rows:
            key = keys[r["kid"]] if r["kid"] in keys else await self._open_row(conn, r["kid"], r["wrapped"])
            self._remember(r["kid"], key)
            out[r["kid"]] = key
        return out

    async def _open_row(self, conn: Conn, kid: str, wrapped: bytes | None) -> bytes | None:
        """A row not on the token: a tombstone (None), or a row from before the token
        (wrapped by ``master.key``), which is moved to the token."""
        if wrapped is None:
            return None  # tombstone
        if self._master is None:
            self._master = secret_bytes(self.settings, "master.key")
        key = unwrap_key(self._master, kid, bytes(wrapped))
        tid = self.token.create(kid)
        status = await conn.execute(
            f"UPDATE {self.schema}.person_keys SET wrapped = $2, token_id = $3 "
            "WHERE kid = $1 AND token_id IS NULL AND wrapped IS NOT NULL",
            kid, self.token.encrypt(tid, kid, key), tid,
        )
        if not status.endswith(" 1"):
            self.token.destroy_id(tid)  # another process moved (or destroyed) it first
            row = await conn.fetchrow(
                f"SELECT wrapped, token_id FROM {self.schema}.person_keys WHERE kid = $1", kid
            )
            if row is None or row["wrapped"] is None or row["token_id"] is None:
                return None
            return self.token.decrypt(bytes(row["token_id"]), kid, bytes(row["wrapped"]))
        return key

    def _call(self, coro: Any) -> Any:
        """Run ``coro`` on the private loop and wait at most ``timeout`` seconds (the
        synchronous port's only I/O)."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("TokenKeyring is not started (await keyring.start())")
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            with unavailable("key store"):
                return fut.result(timeout=self.timeout)
        except ServiceUnavailable:
            fut.cancel()
            raise

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(dsn(self.settings))

    async def _fetch_one(self, kid: str, create: bool) -> bytes | None:
        conn = self._conn
        if conn is None or conn.is_closed():  # lost (a server restart): connect again
            conn = self._conn = await self._connect()
        return (await self._load(conn, [kid], create)).get(kid)


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
