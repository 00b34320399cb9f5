"""``python -m bench.rotation``: what one erasure costs — the key rotation
(:meth:`hub.kernel.keystore.TokenKeyring.destroy_ids`) — for a number of live keys.

For each size (default 1,000 / 10,000 / 100,000 live keys, cumulative) the run fills a
private core schema with synthetic live rows in the real layout (random data keys
encrypted on the development token under the current epoch key, written with COPY), then
erases one key and times the rotation: the tombstone, a new epoch key, every live row
decrypted under the old epoch and encrypted under the new one on the token, the
batched UPDATEs, the commit and the old key's ``C_DestroyObject``. That time is also how
long key *creation* waits (it takes the rotation lock shared), so it bounds how long an
erasure stalls the connectors. The namespace (schema, epoch keys) is removed at the end.
Prints a table and writes ``state_dir/bench/rotation.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.workspace import Workspace
from hub.bootstrap import open_runtime
from hub.kernel.keystore import ROTATION_BATCH, epoch_aad
from hub.kernel.logs import configure_logging
from hub.kernel.runtime import Runtime
from hub.kernel.settings import get_settings

FILL_BATCH = 5000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="live keys per measurement (ascending)")
    parser.add_argument("--batch", type=int, default=ROTATION_BATCH, help="rows re-encrypted per round-trip")
    parser.add_argument("--out", type=Path, default=None, help="JSON (state_dir/bench/rotation.json)")
    return parser.parse_args(argv)


async def fill(rt: Runtime, count: int) -> float:
    """Add ``count`` synthetic live keys under the current epoch; returns the seconds."""
    started = time.perf_counter()
    epoch = await rt.keyring.settle()
    table = f"{rt.settings.core_schema}.person_keys"
    for start in range(0, count, FILL_BATCH):
        kids = [f"k_bench{uuid.uuid4().hex}" for _ in range(min(FILL_BATCH, count - start))]
        items = [(epoch_aad(kid, epoch), AESGCM.generate_key(bit_length=256)) for kid in kids]
        blobs = await rt.keyring.token.encrypt_async(epoch, items)
        async with rt.pool.acquire() as conn:
            await conn.copy_records_to_table(
                "person_keys", schema_name=rt.settings.core_schema, columns=["kid", "wrapped", "epoch"],
                records=[(kid, blob, epoch) for kid, blob in zip(kids, blobs, strict=True)],
            )
    await rt.pool.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


async def measure(ws: Workspace, sizes: list[int], batch: int) -> list[dict[str, float]]:
    settings = ws.settings("r")
    results = []
    async with open_runtime(settings, ensure_topics=False) as rt:
        rt.keyring.batch = batch
        live = 0
        for size in sizes:
            filled = await fill(rt, size - live)
            live = size
            victim = f"psn_{uuid.uuid4().hex}"
            await rt.keyring.resolve([victim])  # one more live key, made the ordinary way
            started = time.perf_counter()
            erased = await rt.keyring.destroy(victim)
            seconds = time.perf_counter() - started
            assert erased
            epochs = rt.keyring.token.epochs()
            results.append({
                "live_keys": size, "rotation_seconds": round(seconds, 3),
                "keys_per_second": round(size / seconds), "fill_seconds": round(filled, 1),
                "epoch_keys_on_token": len(epochs),
            })
            print(f"{size:>9,} live keys: rotation {seconds:7.2f} s ({size / seconds:,.0f} keys/s); "
                  f"epoch keys on the token: {len(epochs)}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    configure_logging(settings)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    ws = Workspace(settings)

    async def go() -> list[dict[str, float]]:
        try:
            return await measure(ws, sizes, args.batch)
        finally:
            for problem in await ws.cleanup():
                print(f"bench cleanup: {problem}", file=sys.stderr)

    results = asyncio.run(go())
    out = args.out or settings.state_dir / "bench" / "rotation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"batch": args.batch, "load_average": os.getloadavg(), "results": results}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
