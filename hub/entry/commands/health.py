"""``hub health``: can the hub work right now? Checks PostgreSQL (a ``SELECT 1`` as the
runtime role) and whether the log takes appends (:func:`hub.kernel.topics.append_health`:
every fact topic partition led, with at least ``min.insync.replicas`` in-sync replicas).

Prints ``{"status": "ok" | "degraded", "database": bool, "log_appends": {"available": bool,
"problems": [...]}}``; exits 0 when both are available, 75 (service unavailable) when either
is not — so a script or a probe can wait for an outage to end.
"""

from __future__ import annotations

import asyncio
from typing import Any

import typer

from hub.kernel.db import open_pool
from hub.kernel.output import EXIT_UNAVAILABLE, emit_json
from hub.kernel.settings import Settings, get_settings
from hub.kernel.topics import append_health

app = typer.Typer(help="Is PostgreSQL reachable and does the log take appends? (exit 75 when not)")


async def _database_up(settings: Settings, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s), open_pool(settings, role="runtime", max_size=1) as pool:
            return bool(await pool.fetchval("SELECT 1") == 1)
    except Exception:  # unreachable, refused, timed out, login failed: not up
        return False


async def check(settings: Settings, timeout_s: float) -> dict[str, Any]:
    """The health document (both checks run concurrently, each bounded by ``timeout_s``)."""
    database, appends = await asyncio.gather(
        _database_up(settings, timeout_s), append_health(settings, timeout_s)
    )
    ok = database and appends.available
    return {"status": "ok" if ok else "degraded", "database": database, "log_appends": appends.to_dict()}


@app.callback(invoke_without_command=True)
def health(
    timeout_s: float = typer.Option(5.0, "--timeout-s", min=0.1, help="seconds each check may take"),
) -> None:
    """Check PostgreSQL and whether the log takes appends."""
    report = asyncio.run(check(get_settings(), timeout_s))
    emit_json(report)
    if report["status"] != "ok":
        raise typer.Exit(EXIT_UNAVAILABLE)
