"""``hub infra setup | up | down | status | topics | rebind``: the local Kafka broker and PostgreSQL, and the
topic catalogue on whichever cluster is configured.

Exit codes: 0 healthy / done; 1 a service failed or is unhealthy; 3 topic drift found.
``--json`` output of ``status`` and ``topics`` is stable::

    status: {"healthy": bool, "kafka": {...KafkaStatus}, "postgres": {...PostgresStatus}}
    topics: {"ok": bool, "bootstrap", "prefix", "created": [...], "matching": [...],
             "drift": [{"topic", "setting", "expected", "actual"}], "errors": [...]}
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from hub.devtools.infra import InfraError, kafka, postgres, softhsm
from hub.devtools.infra.stack import bring_up, collect_status
from hub.kernel.binding import rebind
from hub.kernel.db import open_pool
from hub.kernel.keys import ensure_dev_keys
from hub.kernel.output import EXIT_USAGE, emit_json, fail
from hub.kernel.settings import Settings, get_settings
from hub.kernel.topics import TopicReport, ensure_topics

app = typer.Typer(help="Start, stop and inspect the local Kafka broker and PostgreSQL.", no_args_is_help=True)

EXIT_UNHEALTHY = 1
EXIT_DRIFT = 3


def _print_topics(report: TopicReport) -> None:
    typer.echo(
        f"topics ({report.prefix}.* on {report.bootstrap}): {len(report.created)} created, "
        f"{len(report.matching)} matching the catalogue, {len(report.drift)} drifted"
    )
    for drift in report.drift:
        typer.echo(f"  DRIFT {drift}", err=True)
    for err in report.errors:
        typer.echo(f"  ERROR {err}", err=True)


@app.command()
def up() -> None:
    """Start Kafka and PostgreSQL if needed (idempotent) and apply the topic catalogue."""
    settings = get_settings()
    try:
        k, p, report = asyncio.run(bring_up(settings))
    except InfraError as exc:
        fail(str(exc), EXIT_UNHEALTHY)
    where = f"pid {k.pid}, " if k.pid else ""
    typer.echo(f"kafka: up on {k.bootstrap} ({where}cluster {k.cluster_id}, {k.brokers} broker(s))")
    typer.echo(f"postgres: up on {p.target} (server {p.server_version})")
    _print_topics(report)
    if not report.ok:
        fail("the topic catalogue does not match the cluster (see DRIFT/ERROR above)", EXIT_DRIFT)


@app.command()
def setup() -> None:
    """Prepare without starting anything: fetch the Kafka jars (Maven) and, in development,
    generate the key files under ``state_dir/keys`` and initialise the SoftHSM2 token
    (installing ``softhsm2`` when missing)."""
    settings = get_settings()
    try:
        libs = kafka.ensure_jars(settings)
        if settings.is_development:
            ensure_dev_keys(settings)
        token = softhsm.setup(settings)
    except InfraError as exc:
        fail(str(exc), EXIT_UNHEALTHY)
    typer.echo(f"kafka jars: {libs} ({sum(1 for _ in libs.glob('*.jar'))} jars)")
    typer.echo(f"keys: {settings.keys_dir}")
    if token is not None:
        typer.echo(f"key store: token {token.label!r} ({token.module}, {token.softhsm_conf})")


@app.command()
def down() -> None:
    """Stop the local Kafka broker (controlled shutdown) and the local PostgreSQL. Data stays."""
    settings = get_settings()
    try:
        stopped_kafka = kafka.down(settings)
        stopped_pg = postgres.down(settings)
    except InfraError as exc:
        fail(str(exc), EXIT_UNHEALTHY)
    typer.echo(f"kafka: {'stopped' if stopped_kafka else 'not running (or not managed here)'}")
    typer.echo(f"postgres: {'stopped' if stopped_pg else 'not running (or not managed here)'}")


@app.command()
def status(json_: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Report broker and database health; exit 0 when both are healthy, 1 otherwise."""
    result = asyncio.run(collect_status(get_settings()))
    if json_:
        emit_json(result, sort_keys=True)
    else:
        for name in ("kafka", "postgres"):
            part = result[name]
            assert isinstance(part, dict)
            target = part.get("bootstrap") or part.get("target")
            if part["healthy"]:
                extra = (
                    f"cluster {part['cluster_id']}, {part['brokers']} broker(s)"
                    if name == "kafka"
                    else f"server {part['server_version']}"
                )
                typer.echo(f"{name}: healthy on {target} ({extra})")
            else:
                typer.echo(f"{name}: DOWN on {target}: {part['error']}")
    if not result["healthy"]:
        raise typer.Exit(EXIT_UNHEALTHY)


@app.command()
def topics(
    json_: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    check: Annotated[bool, typer.Option("--check", help="only compare; create nothing")] = False,
) -> None:
    """Apply the topic catalogue: create missing topics, report drift (exit 3) of existing ones."""
    try:
        report = asyncio.run(ensure_topics(get_settings(), create=not check))
    except InfraError as exc:
        fail(str(exc), EXIT_UNHEALTHY)
    if json_:
        emit_json(report.to_dict(), sort_keys=True)
    else:
        _print_topics(report)
    if not report.ok:
        raise typer.Exit(EXIT_DRIFT)


async def _rebind(settings: Settings) -> tuple[str | None, str]:
    async with open_pool(settings, role="owner", max_size=1) as pool:
        return await rebind(pool, settings)


@app.command("rebind")
def rebind_cmd(
    yes: Annotated[
        bool, typer.Option("--yes", help="confirm: this state now belongs to the connected cluster")
    ] = False,
) -> None:
    """Bind the core schema's state (event index, cursors, seals) to the connected Kafka
    cluster, for a deliberate move of the log to a new cluster. Without it the hub refuses
    to pair PostgreSQL state with another cluster's log (see docs/operators.md)."""
    settings = get_settings()
    if not yes:
        fail(
            f"rebinding {settings.core_schema} to the cluster at {settings.kafka.bootstrap} is deliberate: "
            "only after the log's topics moved there with their offsets; confirm with --yes",
            EXIT_USAGE,
        )
    previous, current = asyncio.run(_rebind(settings))
    typer.echo(f"{settings.core_schema}: bound to Kafka cluster {current} (was {previous or 'unbound'})")


# `python -m hub.devtools.commands.infra up` works even if another group fails to import
if __name__ == "__main__":
    app()
