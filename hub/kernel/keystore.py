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

Where keys are (:mod:`hub.kernel.token`): every data key (a person's, a CAD incident's) is
random and encrypted on the token under the namespace's current **epoch key** (AES-GCM,
AAD = key id ‖ epoch); PostgreSQL's ``<core>.person_keys`` row holds only that ciphertext,
the epoch number and the created/destroyed times, ``<core>.key_epochs`` the epochs.
Nothing there opens with ``master.key``.

Erasure is a **rotation** (:meth:`TokenKeyring.destroy_many`): in one transaction holding
the rotation lock, write the tombstones, create epoch ``n + 1`` on the token, re-encrypt
every live row under it, retire ``n``; commit; then destroy epoch ``n`` on the token. Every
copy of an erased key (heap, indexes, WAL, base backups) is encrypted under a destroyed
epoch; everyone else has a fresh copy under ``n + 1``.

Invariants:
- a person has at most one data key, ever: creation is ``INSERT … ON CONFLICT DO NOTHING
  RETURNING`` — the keys it inserted are the creator's own (kept in clear, not read back),
  every other one is read from the winner's row — so concurrent processes agree on the key; data keys
  never change (a rotation re-encrypts them), so every process's cache stays valid;
- the rotation lock (a PostgreSQL advisory lock per core schema) is taken shared by every
  writer of a live row (key creation, moving a legacy row) for its whole transaction —
  reading the current epoch, encrypting, inserting — and exclusively by a rotation, so a
  rotation never misses a row and no row is ever written under a retired epoch;
- crash safety: an epoch key on the token that is not current and that no row refers to
  (a rotation that crashed before committing, or after committing but before destroying
  the old key) is destroyed at :meth:`TokenKeyring.start` when no rotation runs; a row
  whose epoch key vanished between reading the row and decrypting (a concurrent
  rotation) is read again;
- an erased key is a tombstone: it can never be read or re-created. Other processes stop
  serving a cached copy within ``cache_ttl`` seconds;
- a row written before the token existed (``epoch`` NULL, wrapped by ``master.key``) is
  moved to the current epoch on first read, and by every rotation;
- a key store that cannot be reached, or does not answer within ``timeout`` seconds
  (server down, a rotation holding the lock), raises
  :class:`hub.kernel.errors.ServiceUnavailable`: callers back off and retry; nothing is
  sealed without the person's key.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import threading
import time
from collections.abc import Awaitable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.kernel.crypto import ResolvedKeys, key_id_for, open_with_key, seal_with_key
from hub.kernel.db import dsn, ssl_option
from hub.kernel.errors import ServiceUnavailable, outage_boundary, unavailable
from hub.kernel.keys import secret_bytes
from hub.kernel.settings import Settings
from hub.kernel.token import Token, TokenError
from schemas.base import Sealed

KID_SALT = b"hub-kid-v1"
Conn = asyncpg.Connection | PoolConnectionProxy
DEADLETTER_KID = "deadletter-v1"
#: live rows re-encrypted per round-trip during a rotation
ROTATION_BATCH = 5000
#: how often a row whose epoch key vanished mid-read is read again (one concurrent rotation
#: needs one more read; each further one needs another)
REREADS = 5

#: the rotation lock (an advisory lock per core schema, see rotation_lock_name), per transaction
LOCK_EXCLUSIVE = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))"
TRY_LOCK_EXCLUSIVE = "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))"

log = logging.getLogger(__name__)
T = TypeVar("T")


def wrap_key(master: bytes, kid: str, data_key: bytes) -> bytes:
    """nonce (12 bytes) ‖ AES-256-GCM(master, data_key, aad=kid): the layout before the
    token (legacy rows only)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(master).encrypt(nonce, data_key, kid.encode())


def unwrap_key(master: bytes, kid: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], kid.encode())
    except InvalidTag as exc:
        raise ValueError(f"person key {kid} does not open under the master key") from exc


def epoch_aad(kid: str, epoch: int) -> bytes:
    """The AAD of a data key encrypted under epoch ``epoch``: a ciphertext moved to another
    key id or relabelled with another epoch does not open."""
    return f"{kid}|{epoch}".encode()


def rotation_lock_name(schema: str) -> str:
    """The advisory lock (``hashtextextended(name, 0)``) that serialises rotations of
    ``schema``'s keys against every writer of a live row."""
    return f"hub-key-rotation:{schema}"


@outage_boundary("key store")
class TokenKeyring:
    """Per-person (and per-incident) data keys encrypted under the namespace's epoch key on
    the PKCS#11 token, their ciphertext and metadata in ``<core schema>.person_keys``.
    Lifecycle: ``await start()``, ``await stop()``. Erasure (``destroy*``) is async (an
    operator action, not bounded). Every look-up that reaches PostgreSQL gives up after
    ``timeout`` seconds with :class:`hub.kernel.errors.ServiceUnavailable`."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        token: Token | None = None,
        cache_ttl: float = 30.0,
        timeout: float = 5.0,
        batch: int = ROTATION_BATCH,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.schema = settings.core_schema
        self.cache_ttl = cache_ttl
        self.timeout = timeout
        self.batch = batch
        self.token = token or Token.from_settings(settings)
        self._table = f"{self.schema}.person_keys"
        self._epochs = f"{self.schema}.key_epochs"
        self._lock_name = rotation_lock_name(self.schema)
        self._master: bytes | None = None  # legacy rows only, read lazily
        # kid -> (key or None when destroyed, fetched at monotonic time)
        self._cache: dict[str, tuple[bytes | None, float]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncpg.Connection | None = None

    # -- lifecycle

    async def start(self) -> None:
        """Open the token, make sure the namespace has a current epoch key (the first is
        created here) and destroy epoch keys nothing refers to (see the module docstring)."""
        if self._thread is not None:
            return
        self.token.open()
        try:
            await self.settle()
        except BaseException:
            self.token.close()
            raise
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

    # -- erasure (rotation)

    async def destroy(self, person: str) -> bool:
        """Erase the person's key for good (:meth:`destroy_ids`). True when this call
        changed something (a live key, or no row yet)."""
        return bool(await self.destroy_ids([self.key_id(person)]))

    async def destroy_many(self, subjects: Iterable[str]) -> dict[str, bool]:
        """Erase the keys of ``subjects`` (pseudonyms, incident subjects) in one rotation;
        subject → whether this call changed something."""
        kids = {s: self.key_id(s) for s in subjects}
        changed = await self.destroy_ids(kids.values())
        return {s: kid in changed for s, kid in kids.items()}

    async def destroy_ids(self, kids: Iterable[str]) -> set[str]:
        """Erase the keys ``kids`` for good in one rotation (see the module docstring):
        tombstones (never read or re-created again), a new epoch holding every other live
        key, then ``C_DestroyObject`` of the old epoch key — when this returns, no copy of
        an erased key anywhere opens. Returns the key ids this call changed (a live key, or
        no row yet: a tombstone is written ahead). Re-running it changes nothing; a crash
        leaves either nothing done or an unreferenced old epoch key, which the next
        :meth:`start` destroys."""
        wanted = sorted(set(kids))
        if not wanted:
            return set()
        retired: int | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(LOCK_EXCLUSIVE, self._lock_name)
            live = {
                r["kid"] for r in await conn.fetch(
                    f"SELECT kid FROM {self._table} WHERE kid = ANY($1::text[]) AND wrapped IS NOT NULL",
                    wanted,
                )
            }
            changed = {
                r["kid"] for r in await conn.fetch(
                    f"""INSERT INTO {self._table} (kid, wrapped, epoch, destroyed_at)
                        SELECT k, NULL, NULL, now() FROM unnest($1::text[]) AS k
                        ON CONFLICT (kid) DO UPDATE SET wrapped = NULL, epoch = NULL, destroyed_at = now()
                        WHERE {self._table}.destroyed_at IS NULL
                        RETURNING kid""",
                    wanted,
                )
            }
            if live:
                retired = await self._rotate(conn)
        for kid in wanted:
            self._remember(kid, None)
        if retired is not None:
            # committed: every live row is under retired + 1 and every writer reads the
            # current epoch under the lock, so nothing refers to the old key any more
            self.token.destroy_epoch(retired)
            log.info("key store: rotated epoch %d -> %d (%d key(s) erased)", retired, retired + 1, len(live))
        return changed

    async def is_destroyed(self, person: str) -> bool:
        row = await self.pool.fetchrow(
            f"SELECT destroyed_at FROM {self._table} WHERE kid = $1", self.key_id(person)
        )
        return row is not None and row["destroyed_at"] is not None

    async def settle(self) -> int:
        """Make sure a current epoch key exists (creating the first one) and destroy every
        other epoch key of the namespace that no row refers to; returns the current epoch.
        While a rotation runs this only checks that a current epoch exists (the rotation
        destroys its old key itself; a crashed one is settled by the next start)."""
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchval(TRY_LOCK_EXCLUSIVE, self._lock_name)
            current = await self._current(conn)
            if not locked:
                if current is not None:
                    return current
                await conn.execute(LOCK_EXCLUSIVE, self._lock_name)
                current = await self._current(conn)
            if current is None:
                current = int(await conn.fetchval(f"SELECT coalesce(max(epoch), 0) + 1 FROM {self._epochs}"))
                self.token.create_epoch(current)
                await conn.execute(f"INSERT INTO {self._epochs} (epoch) VALUES ($1)", current)
            elif not self.token.has_epoch(current):
                raise TokenError(
                    f"the token holds no key of epoch {current} of namespace {self.token.namespace!r}, "
                    "which the live data keys are encrypted under: the token was reset or replaced, or "
                    "the database was restored without the token backup of the same time"
                )
            for epoch in self.token.epochs():
                if epoch == current:
                    continue
                used = f"SELECT EXISTS (SELECT 1 FROM {self._table} WHERE epoch = $1)"
                if await conn.fetchval(used, epoch):
                    log.error("key store: rows still refer to retired epoch %d; its key is kept", epoch)
                    continue
                self.token.destroy_epoch(epoch)
                log.info("key store: destroyed unused epoch key %d", epoch)
        return current

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

    async def _current(self, conn: Conn) -> int | None:
        return await conn.fetchval(f"SELECT epoch FROM {self._epochs} WHERE retired_at IS NULL")

    async def _rotate(self, conn: Conn) -> int:
        """Inside the rotation's transaction (lock held): epoch n+1 on the token, every live
        row re-encrypted under it in batches, n retired. Returns n. Any failure (a row
        that does not open) raises and the transaction rolls back: the new key is then
        unreferenced and destroyed by the next :meth:`settle`."""
        old = await self._current(conn)
        if old is None:
            raise TokenError("the key store has no current epoch (TokenKeyring.start() settles one)")
        new = old + 1
        self.token.create_epoch(new)
        await conn.execute(f"UPDATE {self._epochs} SET retired_at = now() WHERE epoch = $1", old)
        await conn.execute(f"INSERT INTO {self._epochs} (epoch) VALUES ($1)", new)
        last = ""
        while True:
            rows = await conn.fetch(
                f"SELECT kid, wrapped, epoch FROM {self._table} WHERE wrapped IS NOT NULL AND kid > $1 "
                "ORDER BY kid LIMIT $2",
                last, self.batch,
            )
            if not rows:
                return old
            keys = await self._open_live(rows)
            if len(keys) != len(rows):  # cannot happen under the lock; never lose a key
                raise TokenError("a live data key did not open during the rotation; nothing was changed")
            kids = [r["kid"] for r in rows]
            blobs = await self.token.encrypt_async(new, [(epoch_aad(k, new), keys[k]) for k in kids])
            await conn.execute(
                f"UPDATE {self._table} AS p SET wrapped = u.w, epoch = $3 "
                "FROM unnest($1::text[], $2::bytea[]) AS u(k, w) WHERE p.kid = u.k",
                kids, blobs, new,
            )
            last = kids[-1]

    async def _open_live(self, rows: Sequence[Any]) -> dict[str, bytes]:
        """Key id → data key for the live ``rows`` (kid, wrapped, epoch) that open: one
        token job per epoch; legacy rows (epoch NULL) open with ``master.key``. Rows whose
        epoch key is not on the token are left out."""
        out: dict[str, bytes] = {}
        by_epoch: dict[int, list[Any]] = {}
        for r in rows:
            if r["epoch"] is None:
                out[r["kid"]] = unwrap_key(self._master_key(), r["kid"], bytes(r["wrapped"]))
            else:
                by_epoch.setdefault(r["epoch"], []).append(r)
        for epoch, group in by_epoch.items():
            opened = await self.token.decrypt_async(
                epoch, [(epoch_aad(r["kid"], epoch), bytes(r["wrapped"])) for r in group]
            )
            if opened is not None:
                out.update(zip((r["kid"] for r in group), opened, strict=True))
        return out

    def _master_key(self) -> bytes:
        if self._master is None:
            self._master = secret_bytes(self.settings, "master.key")
        return self._master

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
        statement (the wait for the rotation lock included) gives up after ``bound``
        seconds (TimeoutError); token work is not bounded by it."""

        def pg(aw: Awaitable[T]) -> Awaitable[T]:
            return aw if bound is None else asyncio.wait_for(aw, bound)

        out: dict[str, bytes | None] = {}
        if create:
            known = f"SELECT kid FROM {self._table} WHERE kid = ANY($1::text[])"
            present = {r["kid"] for r in await pg(conn.fetch(known, kids))}
            fresh = [kid for kid in kids if kid not in present]
            if fresh:
                # the keys this call inserted are known in clear: not read back nor decrypted
                out.update(await self._create(conn, fresh, pg))
                kids = [kid for kid in kids if kid not in out]
        rows = await pg(
            conn.fetch(f"SELECT kid, wrapped, epoch FROM {self._table} WHERE kid = ANY($1::text[])", kids)
        ) if kids else []
        for attempt in range(REREADS + 1):
            live = [r for r in rows if r["wrapped"] is not None and r["epoch"] is not None]
            opened = await self._open_live(live)
            stale = [r for r in live if r["kid"] not in opened]
            for r in rows:
                if r["wrapped"] is None:
                    out[r["kid"]] = None  # tombstone
                elif r["epoch"] is None:
                    out[r["kid"]] = await self._move_legacy(conn, r["kid"], bytes(r["wrapped"]), pg)
                elif r["kid"] in opened:
                    out[r["kid"]] = opened[r["kid"]]
            if not stale:
                break
            # their epoch key went away since the read: a rotation re-encrypted them meanwhile
            before = {r["kid"]: r["epoch"] for r in stale}
            rows = await pg(conn.fetch(
                f"SELECT kid, wrapped, epoch FROM {self._table} WHERE kid = ANY($1::text[])", list(before)
            ))
            unmoved = [r for r in rows if r["wrapped"] is not None and r["epoch"] == before[r["kid"]]]
            if unmoved or attempt == REREADS:
                raise TokenError(
                    f"{len(stale)} data key(s) are encrypted under epoch {min(before.values())}, whose key "
                    "is not on the token: the token was reset or replaced, or the database was restored "
                    "without the token backup of the same time"
                )
        for kid, key in out.items():
            self._remember(kid, key)
        return out

    async def _writer_epoch(self, conn: Conn, pg: Any) -> int:
        """Inside a writer's transaction: take the rotation lock shared (until commit) and
        answer the current epoch, which no rotation can retire before the commit."""
        await pg(conn.execute(LOCK_SHARED, self._lock_name))
        epoch = await pg(self._current(conn))
        if epoch is None:
            raise TokenError("the key store has no current epoch (TokenKeyring.start() settles one)")
        return int(epoch)

    async def _create(self, conn: Conn, fresh: list[str], pg: Any) -> dict[str, bytes]:
        """New data keys for ``fresh``, encrypted under the current epoch (one token job for
        all of them), in one transaction holding the rotation lock shared (see the module
        docstring); a key another process inserted first wins (``ON CONFLICT DO
        NOTHING``). Returns the keys this call inserted (committed), in clear: their
        callers need not read back and decrypt what they just made; the others (lost to a
        concurrent creator) are for the caller to read."""
        async with conn.transaction():
            epoch = await self._writer_epoch(conn, pg)
            keys = {kid: AESGCM.generate_key(bit_length=256) for kid in fresh}
            blobs = await self.token.encrypt_async(
                epoch, [(epoch_aad(kid, epoch), keys[kid]) for kid in fresh]
            )
            inserted = await pg(conn.fetch(
                f"INSERT INTO {self._table} (kid, wrapped, epoch) "
                "SELECT k, w, $3 FROM unnest($1::text[], $2::bytea[]) AS u(k, w) "
                "ON CONFLICT (kid) DO NOTHING RETURNING kid",
                fresh, blobs, epoch,
            ))
        return {r["kid"]: keys[r["kid"]] for r in inserted}

    async def _move_legacy(self, conn: Conn, kid: str, wrapped: bytes, pg: Any) -> bytes | None:
        """A row from before the token (wrapped by ``master.key``) moved to the current
        epoch, under the rotation lock (shared). Returns the data key, or None when the row
        was erased meanwhile (the data key of a live row never changes)."""
        key = unwrap_key(self._master_key(), kid, wrapped)
        async with conn.transaction():
            epoch = await self._writer_epoch(conn, pg)
            [blob] = await self.token.encrypt_async(epoch, [(epoch_aad(kid, epoch), key)])
            moved = await pg(conn.fetchval(
                f"UPDATE {self._table} SET wrapped = $2, epoch = $3 "
                "WHERE kid = $1 AND epoch IS NULL AND wrapped IS NOT NULL RETURNING kid",
                kid, blob, epoch,
            ))
            live = moved is not None or await pg(conn.fetchval(
                f"SELECT wrapped IS NOT NULL FROM {self._table} WHERE kid = $1", kid
            ))
        return key if live else None  # moved by another process first, or erased meanwhile

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
        return await asyncpg.connect(dsn(self.settings), ssl=ssl_option(self.settings))

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
        # a dead letter's id is over (source, record ref, raw): the context needs no more
        return seal_with_key(self._key, self.kid,
                             {"raw": base64.b64encode(raw).decode()}, context="deadletter")

    def open(self, sealed: Sealed) -> bytes:
        if sealed.kid != self.kid:
            raise ValueError(f"not sealed with the dead-letter key ({sealed.kid})")
        return base64.b64decode(open_with_key(self._key, sealed)["raw"])
