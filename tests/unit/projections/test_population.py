"""The county's population table: CSV and YAML read the same, and every bad table is refused
with the file, the line and the area named (nothing of it used)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.kernel.errors import ConfigError
from hub.kernel.settings import AreaMapSettings, AreaSettings
from projections.geojson import parse_area_map
from projections.population import load_areas, load_population, parse_population

SOURCE = "US Census Bureau, 2020 Census (blocks apportioned to beats)"
CSV = f"""grain,area,population,source,year
beat,K1,5234,"{SOURCE}",2020
beat,K2,4410,"{SOURCE}",2020
all,all,737015,"{SOURCE}",2020
"""
YAML = f"""source: {SOURCE}
year: 2020
areas:
  beat: {{K1: 5234, K2: 4410}}
  all: {{all: 737015}}
"""


def square(code: str) -> dict:  # type: ignore[type-arg]
    ring = [[-122.3, 47.6], [-122.2, 47.6], [-122.2, 47.7], [-122.3, 47.7], [-122.3, 47.6]]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    return {"type": "Feature", "properties": {"beat": code}, "geometry": geometry}


BEATS = parse_area_map({"type": "FeatureCollection", "features": [square("K1"), square("K2")]},
                       grain="beat", id_property="beat", source="beats.geojson")


def test_csv_and_yaml_tables_read_the_same() -> None:
    a = parse_population(CSV, fmt="csv", maps={"beat": BEATS})
    b = parse_population(YAML, fmt="yaml", maps={"beat": BEATS})
    assert a.residents == b.residents == {("beat", "K1"): 5234, ("beat", "K2"): 4410, ("all", "all"): 737015}
    assert (a.source, a.year) == (b.source, b.year) == (SOURCE, 2020)
    assert a.info() == {"source": SOURCE, "year": 2020, "areas": 3}


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        (CSV.replace("beat,K2,4410", "beet,K2,4410"), "csv", "pop.csv: line 3: unknown grain 'beet'"),
        (CSV.replace("beat,K2,4410", "beat,K9,4410"), "csv",
         "pop.csv: line 3: unknown beat 'K9' (not on the beat map beats.geojson)"),
        (CSV.replace("beat,K2,4410", "beat,unknown,4410"), "csv", "line 3: unknown beat 'unknown'"),
        (CSV.replace("4410", "-4410"), "csv", "line 3: the population of beat K2 is negative: -4410"),
        (CSV.replace("4410", "44.5"), "csv",
         "line 3: the population of beat K2 is not a whole number: '44.5'"),
        (CSV.replace("beat,K2,4410", "beat,K1,4410"), "csv",
         "line 3: beat K1 is given twice (first on line 2)"),
        (CSV.replace(",2020\nall", ",2021\nall"), "csv", "every row must name the same source and year"),
        ("area,population\nK1,5\n", "csv", "line 1: the header must name the columns"),
        (YAML.replace("K2: 4410", "K1: 4410"), "yaml", "line 4: 'K1' is given twice (first on line 4)"),
        (YAML.replace(f"source: {SOURCE}\n", ""), "yaml", "no source"),
        (YAML.replace("year: 2020", "year: recent"), "yaml", "line 2: no year, or not a year: 'recent'"),
        (YAML.replace("K2: 4410", "K2: -3"), "yaml", "the population of beat K2 is negative: -3"),
    ],
)
def test_a_bad_table_is_refused_naming_the_line(text: str, fmt: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_population(text, fmt=fmt, source=f"pop.{fmt}", maps={"beat": BEATS})
    assert message in str(err.value)


def test_files_are_read_by_their_suffix(tmp_path: Path) -> None:
    (tmp_path / "pop.yml").write_text(YAML, encoding="utf-8")
    assert load_population(tmp_path / "pop.yml").residents[("beat", "K1")] == 5234
    (tmp_path / "pop.txt").write_text(CSV, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"must be a \.csv, \.yaml or \.yml file"):
        load_population(tmp_path / "pop.txt")
    with pytest.raises(ConfigError, match="cannot read"):
        load_population(tmp_path / "absent.csv")


def test_load_areas_checks_the_table_against_the_maps(tmp_path: Path) -> None:
    import json

    (tmp_path / "beats.geojson").write_text(json.dumps(
        {"type": "FeatureCollection", "features": [square("K1")]}), encoding="utf-8")
    (tmp_path / "pop.csv").write_text(CSV, encoding="utf-8")
    settings = AreaSettings(population=tmp_path / "pop.csv", maps=[
        AreaMapSettings(grain="beat", geojson=tmp_path / "beats.geojson", id_property="beat")])
    with pytest.raises(ConfigError, match="unknown beat 'K2'"):
        load_areas(settings)
    assert load_areas(AreaSettings()).population is None and load_areas(AreaSettings()).residents() is None
