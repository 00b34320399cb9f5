"""``hub demo`` as a user runs it, a second time over the same prefix: it appends no new
fact, delivers nothing twice, prints the same report as ``hub report --json``, and leaves
the API serving a dashboard with the same numbers."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import asyncpg
import httpx

from hub.devtools.demo import DemoResult, api_pid_file, demo_env
from hub.devtools.infra.proc import owned_pid, wait_until_dead
from hub.entry.api.auth import DevIssuer
from hub.kernel.settings import PROJECT_ROOT, Settings
from tests.e2e.conftest import E2E_OPTIONS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_hub_demo_rerun_adds_nothing_and_serves_the_same_numbers(
    settings: Settings, demo_run: DemoResult, pg_pool: asyncpg.Pool
) -> None:
    core = settings.core_schema
    events_before = await pg_pool.fetchval(f'SELECT count(*) FROM "{core}".event_index')
    sends_before = await pg_pool.fetchval(f'SELECT count(*) FROM "{core}".referral_delivery_attempts')
    o = E2E_OPTIONS
    port = free_port()
    env = {**os.environ, "COLUMNS": "200"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.entry.cli",
            "demo",
            "--seed",
            str(o.seed),
            "--days",
            str(o.days),
            "--start",
            o.start.isoformat(),
            "--calls-per-day",
            str(o.calls_per_day),
            "--prefix",
            settings.kafka.topic_prefix,
            "--api-port",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    pid_file = api_pid_file(settings)
    try:
        assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
        assert await pg_pool.fetchval(f'SELECT count(*) FROM "{core}".event_index') == events_before
        assert (
            await pg_pool.fetchval(f'SELECT count(*) FROM "{core}".referral_delivery_attempts')
            == sends_before
        )
        assert "0 new events" in out.stdout and "no enforcement action" in out.stdout
        url = re.search(r"dashboard: (http://\S+)/dashboard/", out.stdout)
        assert url, out.stdout
        report = json.loads(
            subprocess.run(
                [sys.executable, "-m", "hub.entry.cli", "report", "--json"],
                cwd=PROJECT_ROOT,
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, **demo_env(demo_run.settings)},  # as `hub demo` prints it
                timeout=120,
            ).stdout
        )
        assert report == demo_run.report
        token = DevIssuer.open(settings).mint(sub="e2e", role="analyst")
        headers = {"Authorization": f"Bearer {token}"}
        view = httpx.get(url.group(1) + "/v1/dashboard", headers=headers, timeout=30).json()
        # an analyst sees the released month: the cards are the latest release's cells
        released = httpx.get(url.group(1) + "/v1/reports/outcomes", headers=headers, timeout=30).json()
        for card in view["headline"]:
            assert card["share"] == released["headline"][card["key"]]["share"]
            assert card["numerator"] == released["headline"][card["key"]]["value"]
        for cell in ("no_enforcement", "voluntary_transport", "enforcement"):
            value = report["headline"][cell]["value"]
            if value is not None:
                assert f"{value:,}" in out.stdout  # the terminal shows the same counts
    finally:
        pid = owned_pid(pid_file, "hub.entry.cli")
        if pid is not None:  # the background API this test's `hub demo` started
            os.kill(pid, signal.SIGTERM)
            wait_until_dead(pid, 10)
        shutil.rmtree(pid_file.parent, ignore_errors=True)  # var/<session prefix>/ (pid file, API log)
