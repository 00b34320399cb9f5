"""County-supplied maps of its areas (pure validation of a GeoJSON document; reading the file).

A map is a GeoJSON ``FeatureCollection`` (RFC 7946: longitude, latitude in WGS 84) whose
features are the areas of one grain — precincts, districts, sectors or beats — each
carrying the area's code, as the CAD feed publishes it, in the configured ``id_property``
(``hub.kernel.settings.AreaMapSettings``). Only ``Polygon`` and ``MultiPolygon`` geometries
are areas. Anything else is refused with a message naming the file, the feature and the
rule; nothing of a bad file is used.

The dashboard draws the validated map itself (``hub/entry/api/static/map.js``): no tile
server, no external request. :meth:`AreaMap.document` is what it receives: per area its code,
name and polygons (rings of [longitude, latitude], 5 decimals), and the bounding box.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.kernel.errors import ConfigError
from hub.kernel.settings import AreaMapSettings

Ring = tuple[tuple[float, float], ...]
Polygon = tuple[Ring, ...]  # exterior ring first, then holes
MAX_PROBLEMS = 10


@dataclass(frozen=True)
class AreaFeature:
    area: str
    name: str
    polygons: tuple[Polygon, ...]


@dataclass(frozen=True)
class AreaMap:
    """A validated map: the areas of ``grain`` (codes unique), from ``source`` (the file)."""

    grain: str
    source: str
    features: tuple[AreaFeature, ...]

    def codes(self) -> set[str]:
        return {f.area for f in self.features}

    def bbox(self) -> tuple[float, float, float, float]:
        xs = [x for f in self.features for p in f.polygons for r in p for x, _ in r]
        ys = [y for f in self.features for p in f.polygons for r in p for _, y in r]
        return (min(xs), min(ys), max(xs), max(ys))

    def document(self) -> dict[str, Any]:
        """What the dashboard draws: ``{"grain", "bbox", "areas": [{"area", "name", "polygons"}]}``."""
        return {
            "grain": self.grain,
            "bbox": list(self.bbox()),
            "areas": [
                {"area": f.area, "name": f.name,
                 "polygons": [[[[round(x, 5), round(y, 5)] for x, y in ring] for ring in poly]
                              for poly in f.polygons]}
                for f in self.features
            ],
        }


def unmatched(area_map: AreaMap, codes: Iterable[str]) -> list[str]:
    """The area codes of the data (``unknown`` aside) that the map has no feature for."""
    return sorted({c for c in codes if c and c != "unknown"} - area_map.codes())


def _point(value: Any) -> tuple[float, float] | str:
    if not isinstance(value, list | tuple) or len(value) < 2:
        return "a position must be [longitude, latitude]"
    x, y = value[0], value[1]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (x, y)):
        return "a position must hold two numbers"
    if not (-180 <= x <= 180 and -90 <= y <= 90):
        return f"position [{x}, {y}] is not a longitude, latitude in degrees (RFC 7946: WGS 84)"
    return (float(x), float(y))


def _polygon(value: Any) -> Polygon | str:
    if not isinstance(value, list) or not value:
        return "a polygon must be a list of linear rings"
    rings = []
    for ring in value:
        if not isinstance(ring, list) or len(ring) < 4:
            return "a linear ring needs at least 4 positions"
        points = []
        for pos in ring:
            p = _point(pos)
            if isinstance(p, str):
                return p
            points.append(p)
        rings.append(tuple(points))
    return tuple(rings)


def _geometry(geometry: Any) -> tuple[Polygon, ...] | str:
    if not isinstance(geometry, dict):
        return "has no geometry"
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        polys = [coords]
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            return "a MultiPolygon needs a list of polygons"
        polys = coords
    else:
        return f"geometry {kind!r} is not an area (Polygon or MultiPolygon)"
    out = []
    for poly in polys:
        p = _polygon(poly)
        if isinstance(p, str):
            return p
        out.append(p)
    return tuple(out)


def parse_area_map(
    data: Any, *, grain: str, id_property: str, name_property: str | None = None, source: str = "<map>"
) -> AreaMap:
    """The map of ``grain`` in ``data`` (a parsed GeoJSON document); raises ConfigError naming
    ``source``, the feature (its index and id) and every problem found (the first ten)."""
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection":
        raise ConfigError(f"{source}: not a GeoJSON FeatureCollection "
                          "(its \"type\" must be \"FeatureCollection\")")
    features = data.get("features")
    if not isinstance(features, list) or not features:
        raise ConfigError(f"{source}: the FeatureCollection has no features")
    problems: list[str] = []
    found: list[AreaFeature] = []
    first: dict[str, int] = {}
    for i, feature in enumerate(features):
        where = f"feature {i}"
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            problems.append(f"{where}: not a GeoJSON Feature")
            continue
        props = feature.get("properties")
        code = props.get(id_property) if isinstance(props, dict) else None
        if isinstance(code, bool) or not isinstance(code, str | int) or str(code).strip() == "":
            problems.append(f"{where}: no property {id_property!r} (the id_property of the {grain} map: "
                            f"the {grain} code the CAD feed publishes)")
            continue
        code = str(code).strip()
        where = f"feature {i} ({id_property}={code})"
        if code in first:
            problems.append(f"{where}: {grain} {code} is given twice (first as feature {first[code]})")
            continue
        first[code] = i
        polygons = _geometry(feature.get("geometry"))
        if isinstance(polygons, str):
            problems.append(f"{where}: {polygons}")
            continue
        name = props.get(name_property) if name_property and isinstance(props, dict) else None
        found.append(AreaFeature(code, str(name) if name not in (None, "") else code, polygons))
    if problems:
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise ConfigError(f"{source}: " + "; ".join(problems[:MAX_PROBLEMS]) + more)
    return AreaMap(grain, source, tuple(found))


def load_area_map(settings: AreaMapSettings) -> AreaMap:
    """Read and validate the map file of ``settings``; ConfigError when unreadable or invalid."""
    path = Path(settings.geojson)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"areas.maps[{settings.grain}]: cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    return parse_area_map(data, grain=settings.grain, id_property=settings.id_property,
                          name_property=settings.name_property, source=str(path))
