"""CSV and Parquet exports of the outcome report (pure: bytes from a report document).

An export is the report document :meth:`projections.queries.ReadModelReader.report`
returns — already suppressed — flattened to one row per published cell, so a file shows
exactly what the screen shows: a suppressed cell is an empty ``value`` (null in Parquet)
with ``suppressed`` true, never its count. Nothing is recounted here.

Columns (:data:`COLUMNS`): ``report``, ``report_version``, ``vocabulary_version`` (the
version of the outcome vocabulary the cells are named in), ``release`` (the hub's
version), ``from``, ``to``, ``by``, ``section``, ``group_kind``, ``group``, ``metric``,
``value``, ``share``, ``suppressed``. Statistics (median, 90th percentile) are rows whose
``metric`` ends in ``.median`` / ``.p90`` / ``.n``. The Parquet file carries the same
header values as key-value metadata of its schema.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from importlib import metadata
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.export import CONTRACT_VERSION

ExportFormat = Literal["csv", "parquet"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")
#: the outcome vocabulary's version: the contract's, which defines it (``schemas.base.Outcome``)
VOCABULARY_VERSION = CONTRACT_VERSION
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
HEADER = ("report", "report_version", "vocabulary_version", "release", "from", "to", "by")
COLUMNS = (*HEADER, "section", "group_kind", "group", "metric", "value", "share", "suppressed")
#: the report's sections exported as cells, in order
SECTIONS = ("headline", "outcomes", "repeat_encounters", "response_times", "referral_funnel", "use_of_force")


def release() -> str:
    """The installed hub's version (``unknown`` when run from a tree without metadata)."""
    try:
        return metadata.version("coresponder-hub")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed here
        return "unknown"


def _is_cell(value: Any) -> bool:
    return isinstance(value, Mapping) and "suppressed" in value and ("value" in value or "n" in value)


def _cells(metrics: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any, bool]]:
    """(metric, value, share, suppressed) of one group's cells and statistics."""
    for name, c in metrics.items():
        if not _is_cell(c):
            continue
        if "value" in c:
            yield name, c["value"], c.get("share"), bool(c["suppressed"])
        else:  # a statistic: its count and values, withheld together
            for part in ("n", "median", "p90", "total"):
                if part in c:
                    yield f"{name}.{part}", c[part], None, bool(c["suppressed"])


def rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The report document as export rows (see the module docstring)."""
    head = {
        "report": doc.get("report"),
        "report_version": doc.get("version"),
        "vocabulary_version": VOCABULARY_VERSION,
        "release": release(),
        "from": doc.get("from"),
        "to": doc.get("to"),
        "by": doc.get("by"),
    }
    out: list[dict[str, Any]] = []

    def add(section: str, kind: str, group: str, metrics: Mapping[str, Any]) -> None:
        for metric, value, share, suppressed in _cells(metrics):
            out.append(
                {
                    **head,
                    "section": section,
                    "group_kind": kind,
                    "group": group,
                    "metric": metric,
                    "value": value,
                    "share": share,
                    "suppressed": suppressed,
                }
            )

    for section in SECTIONS:
        part = doc.get(section)
        if not isinstance(part, Mapping):
            continue
        if "total" in part and isinstance(part["total"], Mapping) and "rows" in part:
            add(section, "all", "all", part["total"])
            for extra in ("by_outcome", "rows"):
                for r in part.get(extra, ()):
                    add(section, r["group_kind"], r["group"], r["metrics"])
        else:
            add(section, "all", "all", part)
    return out


def to_csv(doc: Mapping[str, Any]) -> bytes:
    """The export as CSV (UTF-8, a header row of :data:`COLUMNS`; a suppressed value is empty)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows(doc):
        writer.writerow(
            {k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v) for k, v in r.items()}
        )
    return buf.getvalue().encode("utf-8")


SCHEMA = pa.schema(
    [
        *(pa.field(name, pa.string()) for name in HEADER if name != "report_version"),
        pa.field("report_version", pa.int32()),
        pa.field("section", pa.string()),
        pa.field("group_kind", pa.string()),
        pa.field("group", pa.string()),
        pa.field("metric", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("share", pa.float64()),
        pa.field("suppressed", pa.bool_()),
    ]
)


def to_parquet(doc: Mapping[str, Any]) -> bytes:
    """The export as Parquet: the same rows; the header values also as schema metadata."""
    found = rows(doc)
    table = pa.Table.from_pylist(found, schema=SCHEMA).select(list(COLUMNS))
    meta = {k: "" if v is None else str(v) for k, v in (found[0] if found else {}).items() if k in HEADER}
    table = table.replace_schema_metadata({f"hub.{k}": v for k, v in meta.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def export(doc: Mapping[str, Any], fmt: ExportFormat) -> bytes:
    """``doc`` as ``fmt`` bytes."""
    if fmt == "csv":
        return to_csv(doc)
    if fmt == "parquet":
        return to_parquet(doc)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")
