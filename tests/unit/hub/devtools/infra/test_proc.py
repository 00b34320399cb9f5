"""Process, port and lock helpers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from hub.devtools.infra import proc


@given(
    host=st.sampled_from(["127.0.0.1", "localhost", "kafka-0.kafka.svc", "10.1.2.3"]),
    port=st.integers(1, 65535),
    extra=st.lists(st.sampled_from(["b:1", "c:2"]), max_size=2),
)
def test_parse_host_port_takes_the_first_entry(host: str, port: int, extra: list[str]) -> None:
    assert proc.parse_host_port(",".join([f"{host}:{port}", *extra]), 9092) == (host, port)


def test_parse_host_port_defaults_and_ipv6() -> None:
    assert proc.parse_host_port("broker", 9092) == ("broker", 9092)
    assert proc.parse_host_port("[::1]:19092", 9092) == ("::1", 19092)


def test_loopback() -> None:
    assert proc.is_loopback("127.0.0.1") and proc.is_loopback("127.1.2.3") and proc.is_loopback("localhost")
    assert not proc.is_loopback("10.0.0.1") and not proc.is_loopback("kafka")


def test_stale_pid_file_of_a_dead_process_is_not_ours(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    pid_file = tmp_path / "x.pid"
    pid_file.write_text(f"{child.pid}\n")
    assert proc.read_pid(pid_file) == child.pid
    assert proc.owned_pid(pid_file, "anything") is None


def test_live_process_must_match_marker(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "marker-123"])
    try:
        pid_file = tmp_path / "x.pid"
        pid_file.write_text(str(child.pid))
        assert proc.owned_pid(pid_file, "marker-123") == child.pid
        assert proc.owned_pid(pid_file, "some-other-service") is None  # recycled pid is not ours
    finally:
        child.kill()
        child.wait()
    assert not proc.is_alive(child.pid)


def test_killed_unreaped_child_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    os.kill(child.pid, 9)
    assert proc.wait_until_dead(child.pid, 5)  # zombie until reaped: still dead to us


def test_missing_or_garbled_pid_file(tmp_path: Path) -> None:
    assert proc.read_pid(tmp_path / "none.pid") is None
    (tmp_path / "bad.pid").write_text("not a pid")
    assert proc.read_pid(tmp_path / "bad.pid") is None


def test_port_is_free_and_listener_pids() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert not proc.port_is_free("127.0.0.1", port)
        assert os.getpid() in proc.listener_pids(port)
    assert proc.port_is_free("127.0.0.1", port)


def test_file_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / "l" / ".lock"
    order: list[str] = []

    def second() -> None:
        with proc.file_lock(lock):
            order.append("second")

    with proc.file_lock(lock):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)
        order.append("first-done")
    thread.join(5)
    assert order == ["first-done", "second"]


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("\n".join(f"line {i}" for i in range(100)))
    assert proc.tail(log, 3) == "line 97\nline 98\nline 99"
    assert proc.tail(tmp_path / "missing.log") == ""
