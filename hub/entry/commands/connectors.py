"""``hub connectors``: run the long-lived connectors and workers from a config file.

``hub connectors run --config FILE.yaml`` starts every configured component (see
:mod:`connectors.registry`), serves ``/metrics``, ``/livez`` and ``/readyz`` on
``metrics_port`` (:mod:`hub.kernel.probes`; ready once every component started), runs until
SIGINT/SIGTERM, then stops them in reverse order
(within ``stop_grace_s``, else it exits at once, non-zero:
:func:`hub.entry.commands.stop_on_signals`).
One component failing to poll never stops the others (they back off on their own). The
file is validated before anything starts: an error names the file, the component and the
field, and exits 1.

``hub connectors kinds [--fields]`` lists the kinds (with ``--fields``: each kind's
options, their types and defaults).

``hub connectors redrive [--destination D] [--channel C] [--referral ID ...]`` puts failed
referral deliveries back in the delivery queue (:meth:`connectors.referrals.ledger.Ledger.redrive`):
the running delivery workers send them again within their ``poll_interval_s``. Prints
``{"redriven": N, "referrals": [{"destination": …, "referral": …}, …]}`` (masked ids).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from connectors.referrals.ledger import Ledger
from connectors.registry import KINDS, build, check_principal, kind_fields, load_config
from hub.bootstrap import open_runtime
from hub.entry.commands import report_failure, run_or_exit, stop_on_signals
from hub.kernel.errors import HubError
from hub.kernel.identity import mask
from hub.kernel.output import emit_json
from hub.kernel.probes import Probes, serve_probes
from hub.kernel.settings import get_settings

app = typer.Typer(help="Long-lived pull connectors, receivers and delivery workers.", no_args_is_help=True)


async def _run(config: Path) -> None:
    configs = load_config(config)
    settings = get_settings()
    check_principal(configs, settings.kafka.principal, str(config))
    stop = asyncio.Event()
    stop_on_signals(stop, "hub connectors run", settings.stop_grace_s)
    probes = Probes()
    serving = serve_probes(settings.metrics_host, settings.metrics_port, probes)
    async with serving, open_runtime(settings) as rt:
        components = build(rt, configs)
        started = []
        try:
            for cfg, component in zip(configs, components, strict=True):
                await component.start()
                started.append(component)
                emit_json({"started": cfg.name, "kind": cfg.kind}, compact=True)
            probes.ready = True
            await stop.wait()
        finally:
            probes.ready = False
            for component in reversed(started):
                try:
                    await component.stop()
                except Exception as exc:  # keep stopping the others
                    print(f"hub connectors: stopping failed: {exc}", file=sys.stderr)
    emit_json({"stopped": len(started)}, compact=True)


@app.command("run")
def run(
    config: Path = typer.Option(..., "--config", "-c", help="YAML file with a 'components' list"),
) -> None:
    """Run the configured connectors until interrupted (logging: ``hub --log-level``)."""
    try:
        asyncio.run(_run(config))
    except (OSError, ValueError, HubError) as exc:  # a bad config file or setting; a service down
        raise typer.Exit(report_failure(exc, "hub connectors run")) from None


@app.command("kinds")
def kinds(
    fields: bool = typer.Option(False, "--fields", help="also list each kind's options and defaults"),
) -> None:
    """List the component kinds a config may use."""
    for name in sorted(KINDS):
        typer.echo(name)
        if fields:
            for line in kind_fields(name):
                typer.echo(f"    {line}")


@app.command("redrive")
def redrive(
    destination: str = typer.Option(None, "--destination", "-d", help="only this destination's failures"),
    channel: str = typer.Option(None, "--channel", help="only this channel's failures (fhir or hl7v2)"),
    referral: list[str] = typer.Option([], "--referral", "-r", help="only these referral ids (repeatable)"),
) -> None:
    """Send failed referral deliveries again (the delivery workers pick them up)."""
    if channel not in (None, "fhir", "hl7v2"):
        raise typer.BadParameter("--channel must be fhir or hl7v2")

    async def go() -> list[tuple[str, str]]:
        async with open_runtime(get_settings()) as rt:
            return await Ledger(rt.pool, rt.namespace.core_schema).redrive(
                destination, referral, channel=channel
            )

    done = run_or_exit(go(), "hub connectors redrive")
    emit_json({
        "redriven": len(done),
        "referrals": [{"destination": d, "referral": mask(r)} for d, r in done],
    })
