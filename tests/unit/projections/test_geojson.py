"""County maps: a GeoJSON FeatureCollection of one grain's areas, validated with a clear
message for everything that would draw wrong (and the data's codes the map lacks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.kernel.errors import ConfigError
from hub.kernel.settings import PROJECT_ROOT, AreaMapSettings
from projections.geojson import load_area_map, parse_area_map, unmatched

RING = [[-122.3, 47.6], [-122.2, 47.6], [-122.2, 47.7], [-122.3, 47.7], [-122.3, 47.6]]
SEATTLE_BEATS = PROJECT_ROOT / "tests" / "data" / "areas" / "seattle_beats.geojson"


def feature(props: dict[str, Any], geometry: Any = None) -> dict[str, Any]:
    return {"type": "Feature", "properties": props,
            "geometry": geometry if geometry is not None else {"type": "Polygon", "coordinates": [RING]}}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def test_polygons_and_multipolygons_are_areas() -> None:
    multi = {"type": "MultiPolygon", "coordinates": [[RING], [RING]]}
    m = parse_area_map(collection(feature({"beat": "K1", "label": "King 1"}), feature({"beat": 7}, multi)),
                       grain="beat", id_property="beat", name_property="label")
    assert m.codes() == {"K1", "7"}
    doc = m.document()
    assert doc["grain"] == "beat" and doc["bbox"] == [-122.3, 47.6, -122.2, 47.7]
    areas = [(a["area"], a["name"], len(a["polygons"])) for a in doc["areas"]]
    assert areas == [("K1", "King 1", 1), ("7", "7", 2)]
    assert unmatched(m, ["K1", "K3", "unknown", "7"]) == ["K3"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "Feature"}, "not a GeoJSON FeatureCollection"),
        (collection(), "the FeatureCollection has no features"),
        (collection(feature({"name": "K1"})),
         "feature 0: no property 'beat' (the id_property of the beat map"),
        (collection(feature({"beat": "K1"}), feature({"beat": "K1"})),
         "feature 1 (beat=K1): beat K1 is given twice (first as feature 0)"),
        (collection(feature({"beat": "K1"}, {"type": "Point", "coordinates": [-122.3, 47.6]})),
         "feature 0 (beat=K1): geometry 'Point' is not an area (Polygon or MultiPolygon)"),
        (collection(feature({"beat": "K1"}, {"type": "Polygon", "coordinates": [RING[:3]]})),
         "a linear ring needs at least 4 positions"),
        (collection(feature({"beat": "K1"}, {"type": "Polygon",
                                             "coordinates": [[[p[1], p[0] * 2] for p in RING]]})),
         "is not a longitude, latitude in degrees"),
        (collection({"type": "Feature", "properties": {"beat": "K1"}}),
         "feature 0 (beat=K1): has no geometry"),
    ],
)
def test_a_bad_map_is_refused_with_the_feature_named(data: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_area_map(data, grain="beat", id_property="beat", source="beats.geojson")
    assert str(err.value).startswith("beats.geojson: ") and message in str(err.value)


def test_files(tmp_path: Path) -> None:
    (tmp_path / "bad.geojson").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not JSON"):
        load_area_map(AreaMapSettings(grain="beat", geojson=tmp_path / "bad.geojson", id_property="beat"))
    with pytest.raises(ConfigError, match=r"areas.maps\[beat\]: cannot read"):
        load_area_map(AreaMapSettings(grain="beat", geojson=tmp_path / "none.geojson", id_property="beat"))
    (tmp_path / "ok.geojson").write_text(json.dumps(collection(feature({"beat": "K1"}))), encoding="utf-8")
    assert load_area_map(AreaMapSettings(grain="beat", geojson=tmp_path / "ok.geojson",
                                         id_property="beat")).codes() == {"K1"}


def test_the_hand_made_seattle_beats_map_is_valid() -> None:
    m = load_area_map(AreaMapSettings(grain="beat", geojson=SEATTLE_BEATS, id_property="beat"))
    assert m.codes() == {"K1", "K2", "K3", "M1", "M2"}
