"""The key store on epoch keys, on the real SoftHSM2 token of the development setup and
the real PostgreSQL: a namespace holds one token object whatever the number of persons, the
epoch key cannot be read out, another process opens the same keys, an erasure rotates the
epoch (the old key's object file is gone, every other key still opens, an old copy of a row
does not), a rotation under concurrent key creation loses no key, a crashed rotation
leaves nothing behind, a row read just before a rotation is read again, a legacy
``master.key`` row moves to the epoch, and a namespace teardown removes its epoch keys."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from pkcs11 import Attribute

from hub.kernel.crypto import KeyDestroyedError, seal, unseal
from hub.kernel.db import dsn
from hub.kernel.keys import secret_bytes
from hub.kernel.keystore import TokenKeyring, epoch_aad, wrap_key
from hub.kernel.namespace import Namespace
from hub.kernel.runtime import Runtime
from hub.kernel.settings import PROJECT_ROOT, Settings
from hub.kernel.token import Token, TokenError, _on_token_thread, softhsm_dir

pytestmark = pytest.mark.integration


def object_files(settings: Settings) -> set[str]:
    tokens = softhsm_dir(settings) / "tokens"
    return {p.name for p in tokens.glob("*/*.object") if p.name != "token.object"}


def persons(n: int) -> list[str]:
    return ["psn_" + uuid.uuid4().hex for _ in range(n)]


@asynccontextmanager
async def keyring(rt: Runtime, **kw: Any) -> AsyncIterator[TokenKeyring]:
    """A second keyring on ``rt``'s namespace with its own pool and an empty cache (as in
    another process; the token session is the process's)."""
    pool = await asyncpg.create_pool(dsn(rt.settings), min_size=1, max_size=4)
    ring = TokenKeyring(rt.settings, pool, **kw)
    await ring.start()
    try:
        yield ring
    finally:
        await ring.stop()
        await pool.close()


async def rows(rt: Runtime, kids: list[str]) -> dict[str, asyncpg.Record]:
    table = f"{rt.settings.core_schema}.person_keys"
    found = await rt.pool.fetch(f"SELECT kid, wrapped, epoch FROM {table} WHERE kid = ANY($1::text[])", kids)
    return {r["kid"]: r for r in found}


async def current_epoch(rt: Runtime) -> int:
    return int(await rt.pool.fetchval(
        f"SELECT epoch FROM {rt.settings.core_schema}.key_epochs WHERE retired_at IS NULL"
    ))


async def test_one_epoch_key_per_namespace_not_extractable_shared_across_processes(log_rt: Runtime) -> None:
    token = log_rt.keyring.token
    epoch = await current_epoch(log_rt)
    assert token.epochs() == [epoch]
    before = object_files(log_rt.settings)
    people = persons(200)
    await log_rt.keyring.resolve(people)
    sealed = await asyncio.to_thread(lambda: seal(log_rt.keyring, people[0], {"note": "Jane"}, context="t/1"))
    assert object_files(log_rt.settings) == before  # 200 new persons, no new token object
    made = await rows(log_rt, [log_rt.keyring.key_id(p) for p in people])
    assert len(made) == 200 and {r["epoch"] for r in made.values()} == {epoch}

    def read_value() -> object:
        return token._find(epoch)[Attribute.VALUE]

    with pytest.raises(TokenError):  # sensitive and non-extractable: the token never hands it out
        _on_token_thread(read_value)

    # another process (its own PKCS#11 session) opens the same payload
    code = (
        "import asyncio, json, sys\n"
        "from hub.bootstrap import open_runtime\n"
        "from hub.kernel.crypto import unseal\n"
        "from schemas.base import Sealed\n"
        "async def main():\n"
        "    async with open_runtime(ensure_topics=False) as rt:\n"
        "        keys = await rt.keyring.resolve_ids([sys.argv[1]])\n"
        "        print(json.dumps(unseal(keys, Sealed.model_validate_json(sys.argv[2]))))\n"
        "asyncio.run(main())\n"
    )
    env = os.environ | {"HUB_KAFKA__TOPIC_PREFIX": log_rt.settings.kafka.topic_prefix,
                        "HUB_POSTGRES__SCHEMA": log_rt.settings.postgres.schema_,
                        "HUB_STATE_DIR": str(log_rt.settings.state_dir)}
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code, sealed.kid, sealed.model_dump_json()],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == '{"note": "Jane"}', out.stderr


async def test_erasure_rotates_the_epoch_and_destroys_the_old_key(log_rt: Runtime) -> None:
    ring, token = log_rt.keyring, log_rt.keyring.token
    erased, kept = persons(2), persons(3)
    sealed = {p: seal(ring, p, {"note": f"note of {p}"}, context="t/n") for p in erased + kept}
    old = await current_epoch(log_rt)
    old_rows = await rows(log_rt, [ring.key_id(p) for p in kept])
    files = object_files(log_rt.settings)

    changed = await ring.destroy_many([*erased, "psn_" + "0" * 32])  # a never-keyed person: a tombstone
    assert set(changed.values()) == {True}
    new = await current_epoch(log_rt)
    assert new == old + 1 and token.epochs() == [new]
    assert len(object_files(log_rt.settings) - files) == 1 and len(files - object_files(log_rt.settings)) == 1
    now = await rows(log_rt, [ring.key_id(p) for p in erased + kept])
    assert all(now[ring.key_id(p)]["wrapped"] is None for p in erased)
    assert {now[ring.key_id(p)]["epoch"] for p in kept} == {new}
    # the copy of a kept key as it was before (a dead tuple, a WAL record, a backup) no longer opens
    stale = old_rows[ring.key_id(kept[0])]
    assert token.decrypt(old, [(epoch_aad(stale["kid"], old), bytes(stale["wrapped"]))]) is None

    async with keyring(log_rt) as other:  # empty cache: everything read from the new epoch
        for p in kept:
            assert await asyncio.to_thread(unseal, other, sealed[p]) == {"note": f"note of {p}"}
        for p in erased:
            with pytest.raises(KeyDestroyedError):
                await asyncio.to_thread(unseal, other, sealed[p])
            assert other.data_key(p, create=True) is None  # never re-created
    assert await ring.destroy_many(erased) == {p: False for p in erased}  # idempotent: nothing changes
    assert await current_epoch(log_rt) == new  # and no rotation without a live key to erase


async def test_rotation_under_concurrent_key_creation_loses_no_key(log_rt: Runtime) -> None:
    rng = random.Random(12)
    victims = persons(6)
    await log_rt.keyring.resolve(persons(3000) + victims)  # so that each rotation takes a while
    created: dict[str, bytes] = {}
    rotating = asyncio.Event()
    interleaved = 0

    async def create(ring: TokenKeyring, stop: asyncio.Event) -> None:
        nonlocal interleaved
        while not stop.is_set():
            batch = persons(rng.randrange(1, 40))
            during = rotating.is_set()
            keys = await ring.resolve(batch)
            interleaved += during
            for p in batch:
                key = keys.data_key(p, create=False)
                assert key is not None
                created[ring.key_id(p)] = key

    async def rotate(ring: TokenKeyring, stop: asyncio.Event) -> None:
        try:
            for victim in victims:
                rotating.set()
                assert await ring.destroy(victim) is True
                rotating.clear()
                await asyncio.sleep(0)  # let the creators run between two rotations too
        finally:
            stop.set()

    async with keyring(log_rt, timeout=60) as a, keyring(log_rt, timeout=60) as b, keyring(log_rt) as c:
        stop = asyncio.Event()
        await asyncio.gather(create(a, stop), create(b, stop), rotate(c, stop))
    assert interleaved > 0 and len(created) > 100

    async with keyring(log_rt) as fresh:  # what every process now reads from PostgreSQL + the token
        keys = await fresh.resolve_ids(created)
        lost = [kid for kid, key in created.items() if keys.key_by_id(kid) != key]
        assert not lost, f"{len(lost)} key(s) lost or changed by a concurrent rotation"
    current = await current_epoch(log_rt)
    assert log_rt.keyring.token.epochs() == [current]
    assert await log_rt.pool.fetchval(
        f"SELECT count(*) FROM {log_rt.settings.core_schema}.person_keys "
        "WHERE wrapped IS NOT NULL AND epoch IS DISTINCT FROM $1", current
    ) == 0


async def test_a_crashed_rotation_leaves_no_key_behind_and_loses_nothing(log_rt: Runtime) -> None:
    ring, token = log_rt.keyring, log_rt.keyring.token
    people = persons(30)
    keys = await ring.resolve(people)
    epoch = await current_epoch(log_rt)

    failing = TokenKeyring(log_rt.settings, log_rt.pool, batch=10)
    await failing.start()
    real = failing.token.encrypt_async
    calls = 0

    async def crash_on_second_batch(e: int, items: Any) -> list[bytes]:
        nonlocal calls
        calls += 1
        if e == epoch + 1 and calls > 1:
            raise RuntimeError("the process died mid-rotation")
        return await real(e, items)

    failing.token.encrypt_async = crash_on_second_batch  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(RuntimeError, match="mid-rotation"):
            await failing.destroy(people[0])
    finally:
        failing.token.encrypt_async = real  # type: ignore[method-assign]
        await failing.stop()
    assert token.epochs() == [epoch, epoch + 1]  # the new key is there, no row refers to it
    assert not await ring.is_destroyed(people[0])  # the transaction rolled back: nothing erased
    token.create_epoch(epoch + 7)  # and one more orphan, as from a crash after the commit

    async with keyring(log_rt) as restarted:  # start-up settles
        assert token.epochs() == [epoch]
        again = await restarted.resolve(people, create=False)
        assert all(again.data_key(p, create=False) == keys.data_key(p, create=False) for p in people)


async def test_a_row_read_just_before_a_rotation_is_read_again(log_rt: Runtime) -> None:
    ring = log_rt.keyring
    [person, other] = persons(2)
    key = (await ring.resolve([person, other])).data_key(person, create=False)
    kid = ring.key_id(person)
    before = list((await rows(log_rt, [kid])).values())

    class ReadBeforeTheRotation:
        """A connection whose first row read answers what it read before the rotation."""

        def __init__(self, conn: Any) -> None:
            self.conn, self.first = conn, True

        async def fetch(self, *args: Any) -> Any:
            if self.first:
                self.first = False
                return before
            return await self.conn.fetch(*args)

    await ring.destroy(other)  # a rotation: the epoch of `before` is destroyed
    ring.invalidate()
    async with log_rt.pool.acquire() as conn:
        loaded = await ring._load(ReadBeforeTheRotation(conn), [kid], False)  # type: ignore[arg-type]
    assert loaded == {kid: key}


async def test_a_legacy_master_key_row_moves_to_the_epoch(log_rt: Runtime) -> None:
    ring = log_rt.keyring
    [person, later] = persons(2)
    kid, data_key = ring.key_id(person), os.urandom(32)
    table = f"{log_rt.settings.core_schema}.person_keys"
    wrapped = wrap_key(secret_bytes(log_rt.settings, "master.key"), kid, data_key)
    await log_rt.pool.execute(f"INSERT INTO {table} (kid, wrapped) VALUES ($1, $2)", kid, wrapped)
    async with keyring(log_rt) as other:
        assert (await other.resolve([person], create=False)).data_key(person, create=False) == data_key
    row = (await rows(log_rt, [kid]))[kid]
    assert row["epoch"] == await current_epoch(log_rt) and bytes(row["wrapped"]) != wrapped

    await log_rt.pool.execute(f"UPDATE {table} SET wrapped = $2, epoch = NULL WHERE kid = $1", kid, wrapped)
    await ring.resolve([later])
    await ring.destroy(later)  # a rotation moves legacy rows too
    assert (await rows(log_rt, [kid]))[kid]["epoch"] == await current_epoch(log_rt)


async def test_namespace_teardown_destroys_its_epoch_keys(services: object) -> None:
    ns = Namespace.unique("t")
    settings = ns.apply(Settings())
    token = Token.from_settings(settings)
    token.open()
    try:
        for epoch in (1, 2, 3):  # a current key and two a crash left behind
            token.create_epoch(epoch)
        started = time.monotonic()
        removed = await ns.teardown(settings)
        assert removed["token_keys"] == [f"{ns.prefix}/epoch/{n}" for n in (1, 2, 3)]
        assert time.monotonic() - started < 30  # a handful of objects, whatever the persons
        assert token.epochs() == []
    finally:
        token.close()


async def test_two_creators_of_the_same_new_keys_agree_and_a_third_reads_them(log_rt: Runtime) -> None:
    """A creator keeps the keys its INSERT wrote in clear (no read back); the keys another
    creator wrote first are read from that row: both answer the same key, as does a fresh
    keyring reading them from the token later."""
    people = persons(40)
    async with keyring(log_rt) as one, keyring(log_rt) as two:
        first, second = await asyncio.gather(one.resolve(people), two.resolve(people))
    async with keyring(log_rt) as third:
        later = await third.resolve(people, create=False)
    for p in people:
        key = first.data_key(p, create=False)
        assert key is not None and len(key) == 32
        assert second.data_key(p, create=False) == key == later.data_key(p, create=False)
