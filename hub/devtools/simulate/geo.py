"""The simulated county's areas as a county would supply them (pure, plus a writer): a
GeoJSON map of its police districts (and their beats) and a population table — made up for
the demo from :data:`hub.devtools.simulate.model.DISTRICTS` and the box its calls fall in.
No real boundary file is bundled (none we could license); a real county configures its own
(``docs/operators.md``, "Areas of need")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hub.devtools.simulate.model import DISTRICTS

#: the box the simulated calls fall in (longitude, latitude; see CountyModel._call)
WEST, EAST, SOUTH, NORTH = -122.45, -122.25, 47.50, 47.70
#: district → (west, south, east, north): two bands across the county, the middle one split
BOXES = {
    "NORTH": (WEST, 47.635, EAST, NORTH),
    "WEST": (WEST, 47.565, -122.36, 47.635),
    "EAST": (-122.36, 47.565, EAST, 47.635),
    "SOUTH": (WEST, SOUTH, EAST, 47.565),
}
#: made-up residents per district / beat (clearly not census figures)
RESIDENTS = {"NORTH": 182_000, "SOUTH": 151_000, "EAST": 97_000, "WEST": 88_000}
POPULATION_SOURCE = "simulated county (demo data, not census figures)"
POPULATION_YEAR = 2024


def _ring(west: float, south: float, east: float, north: float) -> list[list[float]]:
    """A closed ring, counter-clockwise (RFC 7946): neighbouring areas share their edges
    exactly, so the map has no gaps."""
    pts = [(west, south), (east, south), (east, north), (west, north), (west, south)]
    return [[round(x, 5), round(y, 5)] for x, y in pts]


def _feature(props: dict[str, Any], box: tuple[float, float, float, float]) -> dict[str, Any]:
    geometry = {"type": "Polygon", "coordinates": [_ring(*box)]}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def district_map() -> dict[str, Any]:
    """The districts as a FeatureCollection (id property ``district``)."""
    return {"type": "FeatureCollection", "features": [
        _feature({"district": d, "name": d.title()}, BOXES[d]) for d in sorted(DISTRICTS)]}


def beat_map() -> dict[str, Any]:
    """The beats (each district cut into vertical strips, one per beat; id property ``beat``)."""
    features = []
    for d in sorted(DISTRICTS):
        west, south, east, north = BOXES[d]
        beats = DISTRICTS[d]
        step = (east - west) / len(beats)
        for i, b in enumerate(beats):
            box = (west + i * step, south, west + (i + 1) * step, north)
            features.append(_feature({"beat": b, "district": d}, box))
    return {"type": "FeatureCollection", "features": features}


def population_table() -> dict[str, Any]:
    """Residents per district and beat (beats share their district's residents evenly)."""
    beats = {b: RESIDENTS[d] // len(bs) for d, bs in DISTRICTS.items() for b in bs}
    return {"source": POPULATION_SOURCE, "year": POPULATION_YEAR, "areas": {
        "all": {"all": sum(RESIDENTS.values())}, "district": dict(sorted(RESIDENTS.items())),
        "beat": dict(sorted(beats.items()))}}


def write_demo_areas(directory: Path) -> dict[str, Path]:
    """Write ``districts.geojson``, ``beats.geojson`` and ``population.yaml`` under
    ``directory``; returns their paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"districts": directory / "districts.geojson", "beats": directory / "beats.geojson",
             "population": directory / "population.yaml"}
    paths["districts"].write_text(json.dumps(district_map(), indent=1) + "\n", encoding="utf-8")
    paths["beats"].write_text(json.dumps(beat_map(), indent=1) + "\n", encoding="utf-8")
    paths["population"].write_text(yaml.safe_dump(population_table(), sort_keys=False), encoding="utf-8")
    return paths
