"""The demo county's map and population table: valid as a county's own would have to be, and
its areas are the simulated districts and beats the feed publishes."""

from __future__ import annotations

from pathlib import Path

from hub.devtools.demo import demo_env, demo_settings
from hub.devtools.simulate.geo import beat_map, district_map, population_table, write_demo_areas
from hub.devtools.simulate.model import DISTRICTS
from hub.kernel.settings import Settings
from projections.geojson import parse_area_map
from projections.population import load_areas, parse_population


def test_the_demo_maps_are_valid_and_cover_the_simulated_areas() -> None:
    districts = parse_area_map(district_map(), grain="district", id_property="district", name_property="name")
    beats = parse_area_map(beat_map(), grain="beat", id_property="beat")
    assert districts.codes() == set(DISTRICTS)
    assert beats.codes() == {b for bs in DISTRICTS.values() for b in bs}
    # the simulated calls fall in the map's box
    assert districts.bbox() == (-122.45, 47.5, -122.25, 47.7)


def test_the_demo_population_table_is_valid_against_its_maps() -> None:
    import yaml

    maps = {"district": parse_area_map(district_map(), grain="district", id_property="district")}
    table = parse_population(yaml.safe_dump(population_table()), fmt="yaml", maps=maps)
    assert table.residents[("district", "NORTH")] == 182_000
    assert table.residents[("all", "all")] == 182_000 + 151_000 + 97_000 + 88_000
    assert "simulated" in table.source


def test_demo_settings_name_the_written_files(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = demo_settings(Settings(state_dir=tmp_path), "demo9")
    write_demo_areas(tmp_path / "demo9" / "areas")
    areas = load_areas(s.areas)
    assert list(areas.maps) == ["district"] and areas.population is not None
    for k, v in demo_env(s).items():  # a hub command pointed at the demo reads the same areas
        monkeypatch.setenv(k, v)
    assert Settings().areas == s.areas
