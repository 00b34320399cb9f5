"""``python -m bench.receivers_rss``: what unauthenticated traffic costs a receiver.

Starts the case webhook receiver in a child process (in-memory ports: no services), sends
``--requests`` concurrent *unsigned* requests of ``--size`` bytes each (default 150 of 5 MiB,
the probe of issue 12), and prints the child's resident set before, its peak (``VmHWM``)
and after, with how many requests got an answer (and which status) and how long it took.
Only loopback traffic, bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import asyncio, sys
from connectors.cases.mapping import CaseMapper
from connectors.cases.webhook import webhook_app
from connectors.core.http import serve
from connectors.core.memory import MemoryDeliveryStore, MemoryLog
from connectors.core.runner import DeadLetterSink
from hub.kernel.crypto import MemoryKeyring
from hub.kernel.keystore import DeadLetterSealer

async def main():
    app = webhook_app(
        receiver="bench", key=b"k" * 32,
        mapper=CaseMapper("cases/bench", b"p" * 32, MemoryKeyring(), default_agency="X"),
        log_port=MemoryLog(), sink=DeadLetterSink("cases/bench", "cases", DeadLetterSealer(bytes(32))),
        deliveries=MemoryDeliveryStore(),
    )
    runner, port = await serve(app)
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()

asyncio.run(main())
"""


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found")


async def unsigned_request(port: int, size: int, timeout: float) -> str:
    """One unsigned POST announcing and sending ``size`` bytes; the answer's status."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except (OSError, TimeoutError):
        return "connect failed"
    head = (
        f"POST /webhooks/cases HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()

    async def send() -> None:
        writer.write(head)
        chunk = b"x" * 65536
        sent = 0
        while sent < size:
            writer.write(chunk[: size - sent])
            sent += min(len(chunk), size - sent)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        return line.decode(errors="replace").split(" ", 2)[1] if line else "closed"
    except (OSError, TimeoutError, IndexError):
        return "no answer"
    finally:
        sender.cancel()
        writer.close()


async def load(port: int, requests: int, size: int, timeout: float) -> collections.Counter[str]:
    results = await asyncio.gather(*(unsigned_request(port, size, timeout) for _ in range(requests)))
    return collections.Counter(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--size", type=int, default=5 * 1024 * 1024)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        port = int(child.stdout.readline())
        before = rss_kib(child.pid, "VmRSS")
        started = time.monotonic()
        statuses = asyncio.run(load(port, args.requests, args.size, args.timeout))
        elapsed = time.monotonic() - started
        peak, after = rss_kib(child.pid, "VmHWM"), rss_kib(child.pid, "VmRSS")
        print(json.dumps({
            "requests": args.requests, "size_bytes": args.size, "statuses": dict(statuses),
            "seconds": round(elapsed, 2), "rss_before_mib": round(before / 1024, 1),
            "rss_peak_mib": round(peak / 1024, 1), "rss_after_mib": round(after / 1024, 1),
        }))
        child.stdin.close()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
