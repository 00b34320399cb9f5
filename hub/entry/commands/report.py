"""``hub report [--json] [--from D] [--to D] [--by GRAIN]``: outcome report of
behavioral-health calls from the read models, small cells (1 to 10) suppressed.
``hub report --release ID`` prints one release exactly as it was published, and
``hub reports history`` lists the releases (:mod:`projections.releases`).
``hub report --format csv|parquet --out FILE`` writes the same document as a file, one row
per published cell, suppressed exactly as printed (:mod:`projections.export`).

``--json`` prints the stable document of :meth:`projections.queries.ReadModelReader.report`
(version 2), in the agency's time zone, stating the vocabulary its numbers used:
``headline`` holds the shares of behavioral-health calls with no enforcement action, a
voluntary mental-health transport and an enforcement action (arrest or citation), and the
share of people with 3+ contacts enrolled in services; every cell is
``{"value", "share", "suppressed", "measured"}``; a suppressed cell has ``value: null``, and
a metric the sources cannot express has ``value: null, measured: false, reason``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.entry.commands import run_or_exit
from hub.kernel.audit import records_digest, sealed_release_digests
from hub.kernel.db import open_pool
from hub.kernel.keystore import TokenKeyring
from hub.kernel.output import EXIT_USAGE, emit_json, fail
from hub.kernel.settings import get_settings
from projections import custom_metrics, queries
from projections.export import FORMATS, export
from projections.releases import release_content, release_document
from projections.reporting import GRAINS, HEADLINE_LABELS, cell_text, parse_grain

app = typer.Typer(help="Outcome counts from the read models (small cells suppressed).")

def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{name} must be a date YYYY-MM-DD, got {value!r}") from exc


def _fmt(cell: dict[str, Any]) -> str:
    if not cell:
        return "not released"
    value, share = cell_text(cell)
    return f"{value}  ({share})" if share else value


def section_lines(doc: dict[str, Any]) -> list[str]:
    """The demographics and use-of-force sections of a report document as text lines,
    the cells as published (withheld cells read ``suppressed``, never 0)."""
    lines: list[str] = []
    demo = doc.get("demographics")
    if demo is not None:
        total = demo.get("total") or {}
        sources = ", ".join(demo.get("sources") or []) or "none"
        lines.append(f"  demographics of the people served (sources, authoritative first: {sources})")
        if demo.get("reason"):
            lines.append(f"    not available: {demo['reason']}")
        else:
            lines.append(f"    calls {_fmt(total.get('calls', {}))}; sources disagree "
                         f"{_fmt(total.get('conflicting', {}))}")
        groups: dict[str, list[str]] = {}
        for row in demo.get("rows") or []:
            name = str(row["group"]).replace("_", " ")
            groups.setdefault(row["group_kind"], []).append(f"{name} {_fmt(row['metrics']['calls'])}")
        for kind, cells in groups.items():
            lines.append(f"    [{kind.replace('_', ' ')}] " + "; ".join(cells))
    force = doc.get("use_of_force")
    if force is not None:
        lines.append("  use of force (shares of calls with use of force recorded)")
        if force.get("reason"):
            lines.append(f"    not available: {force['reason']}")
        total = force.get("total")
        rows = [{"group_kind": "all", "group": "all", "metrics": total}] if total else []
        for row in [*rows, *(force.get("by_outcome") or []), *(force.get("rows") or [])]:
            m = row["metrics"]
            types = "; ".join(
                f"{k.removeprefix('force.').replace('_', ' ')} {_fmt(c)}"
                for k, c in m.items() if k.startswith("force.")
            )
            lines.append(
                f"    [{row['group_kind']} {row['group']}] calls {_fmt(m.get('calls', {}))}; recorded "
                f"{_fmt(m.get('force_recorded', {}))}; no force {_fmt(m.get('no_force', {}))}; force used "
                f"{_fmt(m.get('force_used', {}))}" + (f" ({types})" if types else "")
            )
    return lines


@app.callback(invoke_without_command=True)
def report(
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON output")] = False,
    date_from: Annotated[str | None, typer.Option("--from", help="first day (YYYY-MM-DD)")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="last day, inclusive (YYYY-MM-DD)")] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="month | area | response | program | mode | team | referral_type"
            " | race | ethnicity | gender | age_band"),
    ] = None,
    schema: Annotated[str | None, typer.Option(help="read-model schema (default: postgres.schema)")] = None,
    release: Annotated[
        str | None, typer.Option("--release", help="print a release exactly as published (YYYY-MM.r<seq>)")
    ] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="csv | parquet: write a file (--out)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="the file --format writes")] = None,
) -> None:
    """Print the outcome report (live read models), or write it as CSV / Parquet, or print one
    release as it was published."""
    if fmt is not None and fmt not in FORMATS:
        fail("--format must be csv or parquet", EXIT_USAGE)
    if (fmt is None) != (out is None):
        fail("--format and --out go together", EXIT_USAGE)

    if release is not None:
        if date_from or date_to or by or fmt:
            fail("--release prints a release as published: no --from, --to, --by or --format", EXIT_USAGE)
        _print_release(release, schema, as_json)
        return
    try:
        grain = parse_grain(by)
    except ValueError:
        fail(f"--by must be one of {', '.join(GRAINS)}", EXIT_USAGE)
    start, end = _day(date_from, "--from"), _day(date_to, "--to")
    if start and end and start > end:
        fail("--from is after --to", EXIT_USAGE)
    settings = get_settings()
    target_schema = schema or settings.postgres.schema_

    async def go():
        async with open_pool(settings, max_size=2) as pool:
            keyring = TokenKeyring(settings, pool)  # opens the people's sealed demographics
            await keyring.start()
            try:
                reader = queries.ReadModelReader.from_settings(
                    pool, settings, schema=target_schema, keys=keyring
                )
                return await reader.report(date_from=start, date_to=end, by=grain)
            finally:
                await keyring.stop()

    doc = run_or_exit(
        go(), f"cannot read the read models in schema {target_schema} (has `hub project` run?)"
    )
    if fmt is not None and out is not None:
        data = export(queries.jsonable(doc), fmt)
        try:
            out.write_bytes(data)
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror}", 1)
        typer.echo(f"wrote {out} ({fmt}, {len(data):,} bytes)")
        return
    if as_json:
        emit_json(queries.jsonable(doc))
        return
    span = f"{doc['from'] or 'start'} .. {doc['to'] or 'now'}"
    typer.echo(f"Outcome report, behavioral-health calls, {span} (cells of 1-10 suppressed)")
    typer.echo(f"  vocabulary: {doc['vocabulary']['label'] or 'not recorded (run hub project)'}")
    for name, cell in doc["headline"].items():
        typer.echo(f"  {HEADLINE_LABELS[name]:<48} {_fmt(cell)}")
    _print_custom(doc)
    for row in doc["outcomes"]["rows"]:
        cells = row["metrics"]
        enforcement = _fmt(cells["outcome.arrest_or_citation"])
        rates = "".join(
            f"; {label} {cells['calls'][key]:,}" for key, label in RATE_LABELS
            if cells["calls"].get(key) is not None
        )
        typer.echo(
            f"  [{row['group_kind']} {row['group']}] calls {_fmt(cells['calls'])}; no enforcement "
            f"{_fmt(cells['outcome.no_enforcement'])}; enforcement {enforcement}{rates}"
        )
    for line in section_lines(doc):
        typer.echo(line)
    for note in doc["footnotes"]:
        typer.echo(f"  note: {note}")
    for metric, reason in doc["not_measured"].items():
        typer.echo(f"  not measured: {metric} ({reason})")


RATE_LABELS = (("rate_per_1000_calls", "per 1,000 calls"), ("rate_per_1000_residents", "per 1,000 residents"))


def _print_release(release_id: str, schema: str | None, as_json: bool) -> None:
    settings = get_settings()
    target_schema = schema or settings.postgres.schema_

    async def go():
        async with open_pool(settings, max_size=1) as pool:
            reader = queries.ReadModelReader.from_settings(pool, settings, schema=target_schema)
            found = await reader.release(release_id)
            sealed = await sealed_release_digests(pool, settings.core_schema, release_id, target_schema)
            return found, sealed

    found, sealed = run_or_exit(
        go(), f"cannot read the releases in schema {target_schema} (has `hub project` run?)"
    )
    if found is None:
        fail(f"no release {release_id} (`hub reports history` lists them)")
    meta, records = found
    if records_digest(release_content(records, meta["extras"])) not in sealed:
        fail(f"release {release_id}: its stored records differ from what the release log sealed "
             "(run `hub verify`)")
    if as_json:
        emit_json(queries.jsonable({**meta, "records": records, "sealed": True}))
        return
    doc = release_document(meta, records)
    typer.echo(
        f"Release {meta['release_id']} of {meta['period']}, published {meta['released_at'].isoformat()}"
        f" (vocabulary {meta['vocabulary']}, hub {meta['code_version']}; cells of 1-10 suppressed)"
    )
    for name, cell in doc["headline"].items():
        typer.echo(f"  {HEADLINE_LABELS[name]:<48} {_fmt(cell)}")
    for line in section_lines(doc):
        typer.echo(line)
    _print_custom(doc)


def _print_custom(doc: dict[str, Any]) -> None:
    """The county metrics of a report document (share of each one's denominator)."""
    cells = custom_metrics.headline_cells(doc)
    if cells:
        typer.echo(f"  county metrics ({doc['custom_metrics']['definitions']}; shares of each denominator):")
    for label, cell in cells:
        typer.echo(f"    {label:<46} {_fmt(dict(cell))}")


history = typer.Typer(help="The outcome releases: every closed month's tables as published.")


@history.command("history")
def reports_history(
    as_json: Annotated[bool, typer.Option("--json", help="stable JSON output")] = False,
    schema: Annotated[str | None, typer.Option(help="read-model schema (default: postgres.schema)")] = None,
) -> None:
    """List every release: id, month, when it was published, vocabulary and code version."""
    settings = get_settings()
    target_schema = schema or settings.postgres.schema_

    async def go():
        async with open_pool(settings, max_size=1) as pool:
            reader = queries.ReadModelReader.from_settings(pool, settings, schema=target_schema)
            return await reader.releases()

    rows = run_or_exit(go(), f"cannot read the releases in schema {target_schema} (has `hub project` run?)")
    if as_json:
        emit_json(queries.jsonable(rows))
        return
    for r in rows:
        typer.echo(f"{r['release_id']:<14} {r['released_at'].isoformat()}  vocabulary {r['vocabulary']}"
                   f"  hub {r['code_version']}")
