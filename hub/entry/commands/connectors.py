"""``hub connectors``: run the long-lived connectors and workers from a config file.

``hub connectors run --config FILE.yaml`` starts every configured component (see
:mod:`connectors.registry`), runs until SIGINT/SIGTERM, then stops them in reverse order
(within ``stop_grace_s``, else it exits at once, non-zero:
:func:`hub.entry.commands.stop_on_signals`).
One component failing to poll never stops the others (they back off on their own). The
file is validated before anything starts: an error names the file, the component and the
field, and exits 1.

``hub connectors kinds [--fields]`` lists the kinds (with ``--fields``: each kind's
options, their types and defaults).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import typer

from connectors.registry import KINDS, build, kind_fields, load_config
from hub.bootstrap import open_runtime
from hub.entry.commands import report_failure, stop_on_signals
from hub.kernel.errors import HubError
from hub.kernel.output import emit_json
from hub.kernel.settings import get_settings

app = typer.Typer(help="Long-lived pull connectors, receivers and delivery workers.", no_args_is_help=True)


async def _run(config: Path) -> None:
    configs = load_config(config)
    stop = asyncio.Event()
    settings = get_settings()
    stop_on_signals(stop, "hub connectors run", settings.stop_grace_s)
    async with open_runtime(settings) as rt:
        components = build(rt, configs)
        started = []
        try:
            for cfg, component in zip(configs, components, strict=True):
                await component.start()
                started.append(component)
                emit_json({"started": cfg.name, "kind": cfg.kind}, compact=True)
            await stop.wait()
        finally:
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
