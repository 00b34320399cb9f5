"""The county's population table: residents per area, for rates per 1,000 residents
(:func:`projections.areas.rates`). Supplied by the county with its source and year
(settings ``areas.population``), as CSV or YAML:

CSV (``.csv``), one row per area, the same source and year on every row::

    grain,area,population,source,year
    beat,K1,5234,"US Census Bureau, 2020 Census, blocks apportioned to beats",2020
    all,all,737015,"US Census Bureau, 2020 Census, blocks apportioned to beats",2020

YAML (``.yaml`` / ``.yml``)::

    source: US Census Bureau, 2020 Census, blocks apportioned to beats
    year: 2020
    areas:
      beat: {K1: 5234, K2: 4410}
      all: {all: 737015}

``grain`` is ``all`` (area ``all``: the jurisdiction), ``precinct``, ``district``, ``sector``
or ``beat``; ``area`` the code the CAD feed publishes. Refused, with the file, the line and
the area named: an unknown grain; an area not on the county's map of that grain (when one
is configured) or ``unknown``; a population that is negative or not a whole number; an area
given twice; a missing source or year. Nothing of a refused table is used.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hub.kernel.errors import ConfigError
from hub.kernel.settings import AreaSettings
from projections.counts import UNKNOWN_AREA
from projections.geojson import AreaMap, load_area_map
from projections.outcomes import AreaKey

POPULATION_GRAINS = ("all", "precinct", "district", "sector", "beat")
CSV_COLUMNS = ("grain", "area", "population", "source", "year")
MAX_PROBLEMS = 10


@dataclass(frozen=True)
class PopulationTable:
    """Residents per (grain, area), from ``source`` in ``year`` (file ``path``)."""

    source: str
    year: int
    residents: dict[AreaKey, int]
    path: str = ""

    def info(self) -> dict[str, Any]:
        """What a release or report states about the table it used."""
        return {"source": self.source, "year": self.year, "areas": len(self.residents)}


class _Lines(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys and remembers each key's line."""


def _mapping(loader: _Lines, node: yaml.MappingNode) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in out:
            raise ConfigError(f"line {line}: {key!r} is given twice (first on line {lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        lines[key] = line
    out["__lines__"] = lines
    return out


_Lines.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _entries_yaml(text: str) -> tuple[Any, Any, list[tuple[int, Any, Any, Any]]]:
    data = yaml.load(text, Loader=_Lines)
    if not isinstance(data, dict):
        raise ConfigError("the file must hold a mapping with source, year and areas")
    lines = data.get("__lines__", {})
    areas = data.get("areas")
    if not isinstance(areas, dict):
        raise ConfigError("no 'areas' mapping (grain → {area: population})")
    entries = []
    for grain, table in areas.items():
        if grain == "__lines__":
            continue
        if not isinstance(table, dict):
            entries.append((areas["__lines__"][grain], grain, None, table))
            continue
        for area, n in table.items():
            if area != "__lines__":
                entries.append((table["__lines__"][area], grain, area, n))
    return (data.get("source"), lines.get("source", 1)), (data.get("year"), lines.get("year", 1)), entries


def _entries_csv(text: str) -> tuple[Any, Any, list[tuple[int, Any, Any, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(f"line 1: the header must name the columns {', '.join(CSV_COLUMNS)} "
                          f"(missing {', '.join(missing)})")
    entries, sources, years = [], set(), set()
    for row in reader:
        line = reader.line_num
        entries.append((line, (row["grain"] or "").strip(), (row["area"] or "").strip(),
                        (row["population"] or "").strip()))
        sources.add((row["source"] or "").strip())
        years.add((row["year"] or "").strip())
    if len(sources) > 1 or len(years) > 1:
        raise ConfigError("every row must name the same source and year (one table, one source)")
    return (next(iter(sources), None), 2), (next(iter(years), None), 2), entries


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def parse_population(text: str, *, fmt: str, source: str = "<population>",
                     maps: Mapping[str, AreaMap] | None = None) -> PopulationTable:
    """The table in ``text`` (``fmt``: ``csv`` or ``yaml``); ``maps``: the county's maps by
    grain, whose areas are the only ones a table of that grain may name. Raises ConfigError
    naming ``source``, the line and every problem found (the first ten)."""
    maps = maps or {}
    try:
        parsed = _entries_csv(text) if fmt == "csv" else _entries_yaml(text)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({type(exc).__name__})") from None
    (src, src_line), (year, year_line), entries = parsed
    problems: list[str] = []
    if not isinstance(src, str) or not src.strip():
        problems.append(f"line {src_line}: no source (who published the population figures)")
    year_n = _count(year)
    if year_n is None or not 1800 <= year_n <= 2200:
        problems.append(f"line {year_line}: no year, or not a year: {year!r}")
    residents: dict[AreaKey, int] = {}
    first: dict[AreaKey, int] = {}
    for line, grain, area, n in entries:
        if grain not in POPULATION_GRAINS:
            problems.append(f"line {line}: unknown grain {grain!r} (one of {', '.join(POPULATION_GRAINS)})")
            continue
        area = "" if area is None else str(area).strip()
        if not area or area == UNKNOWN_AREA or (grain == "all") != (area == "all"):
            problems.append(f"line {line}: unknown {grain} {area!r}"
                            + (" (the jurisdiction is grain all, area all)" if grain == "all" or area == "all"
                               else ""))
            continue
        if grain in maps and area not in maps[grain].codes():
            problems.append(f"line {line}: unknown {grain} {area!r} "
                            f"(not on the {grain} map {maps[grain].source})")
            continue
        key = (grain, area)
        if key in first:
            problems.append(f"line {line}: {grain} {area} is given twice (first on line {first[key]})")
            continue
        first[key] = line
        count = _count(n)
        if count is None:
            problems.append(f"line {line}: the population of {grain} {area} is not a whole number: {n!r}")
        elif count < 0:
            problems.append(f"line {line}: the population of {grain} {area} is negative: {count}")
        else:
            residents[key] = count
    if not entries:
        problems.append("no areas")
    if problems:
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise ConfigError(f"{source}: " + "; ".join(problems[:MAX_PROBLEMS]) + more)
    assert isinstance(src, str) and year_n is not None
    return PopulationTable(src.strip(), year_n, residents, source)


@dataclass(frozen=True)
class Areas:
    """The county's area configuration, validated: its maps by grain and its population table."""

    maps: dict[str, AreaMap]
    population: PopulationTable | None

    def residents(self) -> dict[AreaKey, int] | None:
        return None if self.population is None else self.population.residents


def load_population(path: Path, maps: Mapping[str, AreaMap] | None = None) -> PopulationTable:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise ConfigError(f"areas.population: {path} must be a .csv, .yaml or .yml file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"areas.population: cannot read {path}: {exc.strerror}") from None
    return parse_population(text, fmt="csv" if suffix == ".csv" else "yaml", source=str(path), maps=maps)


def load_areas(settings: AreaSettings) -> Areas:
    """Read and validate the maps and the population table ``settings`` name (ConfigError)."""
    maps: dict[str, AreaMap] = {m.grain: load_area_map(m) for m in settings.maps}
    population = None if settings.population is None else load_population(Path(settings.population), maps)
    return Areas(maps, population)
