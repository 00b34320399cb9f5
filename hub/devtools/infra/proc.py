"""Process and port helpers for the services ``hub infra`` manages: pid files that survive
a crash (a stale pid never hides a dead service or names a recycled process), port
availability, and an exclusive file lock so concurrent ``hub infra up`` calls serialise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from hub.kernel.net import is_loopback

__all__ = ["is_loopback"]


def parse_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; the first entry of a comma-separated list is used."""
    first = address.split(",")[0].strip()
    if not first:
        raise ValueError("empty address")
    if first.startswith("["):  # [::1]:9092
        host, _, rest = first[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    host, sep, port = first.rpartition(":")
    if not sep:
        return first, default_port
    return host, int(port)


def read_pid(path: Path) -> int | None:
    """The pid recorded in ``path``; ``None`` when absent or unreadable."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie whose threads all exited counts as dead; our own dead
    children are reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    if state not in {"Z", "X"}:
        return True
    # A killed multi-threaded process (a JVM) shows its leader as a zombie while the other
    # threads still exit and still hold its sockets and locks: dead only when they are gone.
    try:
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def owned_pid(pid_file: Path, marker: str) -> int | None:
    """The pid from ``pid_file`` if that process is alive and its command line contains
    ``marker`` (so a recycled pid is never mistaken for our service); else ``None``."""
    pid = read_pid(pid_file)
    if pid is None or not is_alive(pid):
        return None
    if not any(marker in arg for arg in process_cmdline(pid)):
        return None
    return pid


def port_is_free(host: str, port: int) -> bool:
    """True when a listener could bind ``host:port`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def listener_pids(port: int) -> list[int]:
    """Pids holding a listening TCP socket on ``port`` (best effort, from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    found: list[int] = []
    if not inodes:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    found.append(int(entry.name))
                    break
    return found


def describe_pid(pid: int) -> str:
    cmd = " ".join(process_cmdline(pid))
    return f"pid {pid} ({cmd[:120]})" if cmd else f"pid {pid}"


def wait_until_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return True
        time.sleep(0.1)
    return not is_alive(pid)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if needed) for the block's duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def async_file_lock(path: Path) -> AsyncIterator[None]:
    """:func:`file_lock` for coroutines: waits for the lock in a thread, not on the loop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")  # noqa: SIM115 - closed in finally, after the lock is released
    try:
        await asyncio.to_thread(fcntl.flock, fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a text file (empty when absent)."""
    try:
        data = path.read_bytes()[-20000:]
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])
