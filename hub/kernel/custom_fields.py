"""County-defined fields and metrics: one versioned YAML file (``custom.definitions`` in the
settings) that declares the custom fields the county's sources carry and the metrics the
hub publishes over them, without code.

```yaml
name: our-county              # reports state name@version
version: 1                    # raise it with every change
fields:
  housing_status:
    type: enum                # enum (with values) / integer (with min, max) / boolean / date
    values: [housed, sheltered, unsheltered]
    label: Housing status
    sources: [cad, intake]    # which sources carry it: cad (a profile column), intake, case records
  safety_plan:
    type: boolean
    label: Safety plan made
    sources: [intake]
    sensitive: true           # sealed per person like free text; never a metric dimension
metrics:
  - id: unsheltered_holds
    label: Involuntary holds among unsheltered people
    grain: month
    denominator: {housing_status: unsheltered}
    numerator: {housing_status: unsheltered, outcome: involuntary_hold}
```

A *filter* is a conjunction: field → allowed value(s). A scalar or a list for enum, text and
boolean fields; for integer and date fields also ``{min, max}`` (inclusive; ``from`` / ``to``
for dates). ``{}`` is every behavioral-health call. Filters name the built-in fields of the
incident read model (:data:`BUILTIN_FIELDS`: ``outcome``, ``co_responder``,
``referral_made``, ``connected_to_services``, ``use_of_force``, ``mode``, ``program``,
``team``, ``referral_type``) or a custom field by its name. A call with no value for a
field never matches a condition on it.

Invariant: the file is checked as a whole before anything is applied. An unknown field, a
value the field does not allow (a type mismatch), a numerator that is not a subset of its
denominator, a sensitive field in a filter, a duplicate metric id or field, a custom field
named like a built-in one — each is refused with :class:`CustomDefinitionError` naming the
file, the line, the metric and the field. Values of the fields are PHI-free by contract
except sensitive ones, which are never logged nor stored in clear.

Metrics count behavioral-health calls (the report's segment): the universe of a filter is
the behavioral-health calls in scope, so ``bh`` is not a filter field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from hub.kernel.errors import ConfigError
from schemas.encounter import ENCOUNTER_MODES, USE_OF_FORCE
from schemas.outcome import PRIMARY_OUTCOMES

FieldType = Literal["enum", "integer", "boolean", "date", "text"]
DECLARED_TYPES = ("enum", "integer", "boolean", "date")  # what a county may declare
Source = Literal["cad", "intake", "case"]
SOURCES: tuple[str, ...] = get_args(Source)
Grain = Literal["month"]
GRAINS: tuple[str, ...] = get_args(Grain)
Scalar = str | int | bool | date
ID_PATTERN = "lower-case letters, digits and _ (starting with a letter, at most 40)"
_TRUE = frozenset({"y", "yes", "true", "1", "t"})
_FALSE = frozenset({"n", "no", "false", "0", "f"})


class CustomDefinitionError(ConfigError):
    """A definitions file that cannot be applied: the message names the file, the line and,
    where there is one, the metric and the field."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def _is_id(value: object) -> bool:
    """Whether ``value`` is a name of :data:`ID_PATTERN`."""
    if not isinstance(value, str) or not 0 < len(value) <= 40 or not ("a" <= value[0] <= "z"):
        return False
    return all("a" <= c <= "z" or "0" <= c <= "9" or c == "_" for c in value)


@dataclass(frozen=True)
class FieldDef:
    """One field a filter can name. ``values``: an enum's allowed values; ``minimum`` /
    ``maximum``: an integer's range (inclusive, None = open); ``sources``: where a custom
    field comes from (empty for built-in fields); ``sensitive``: sealed, never a metric
    dimension; ``builtin``: a column of the incident read model."""

    name: str
    type: FieldType
    label: str
    values: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    sources: tuple[str, ...] = ()
    sensitive: bool = False
    builtin: bool = False

    def check(self, value: Any) -> str | None:
        """Why ``value`` (JSON, as a form sends it) is not a value of this field, or None.
        Messages name the rule, never the value (a sensitive field's value is PHI)."""
        if self.type == "enum":
            if not isinstance(value, str) or value not in self.values:
                return f"must be one of {', '.join(self.values)}"
        elif self.type == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                return "must be a whole number"
            if self.minimum is not None and value < self.minimum:
                return f"must be at least {self.minimum}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {self.maximum}"
        elif self.type == "boolean":
            if not isinstance(value, bool):
                return "must be true or false"
        elif self.type == "date":
            if not isinstance(value, str):
                return "must be a date (YYYY-MM-DD)"
            try:
                date.fromisoformat(value)
            except ValueError:
                return "must be a date (YYYY-MM-DD)"
        elif not isinstance(value, str):
            return "must be text"
        return None

    def parse(self, raw: Any) -> Scalar | None:
        """A stored value (a form's JSON value, or the source's words from a CAD column) as a
        typed value of this field; None when it is not one (counted as not recorded)."""
        if raw is None:
            return None
        if self.type == "enum":
            if not isinstance(raw, str):
                return None
            text = " ".join(raw.split()).casefold()
            return next(
                (v for v in self.values if v.casefold() == text or v.casefold() == text.replace(" ", "_")),
                None,
            )
        if self.type == "integer":
            if isinstance(raw, bool):
                return None
            try:
                value = int(raw) if isinstance(raw, int) else int(str(raw).strip())
            except ValueError:
                return None
            return None if self.check(value) else value
        if self.type == "boolean":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().casefold()
            return True if text in _TRUE else False if text in _FALSE else None
        if self.type == "date":
            try:
                return date.fromisoformat(str(raw).strip()[:10])
            except ValueError:
                return None
        return str(raw)


#: the incident read model's columns a filter may name (behavioral-health calls only)
BUILTIN_FIELDS: dict[str, FieldDef] = {
    f.name: f
    for f in (
        FieldDef("outcome", "enum", "primary outcome", PRIMARY_OUTCOMES, builtin=True),
        FieldDef("co_responder", "boolean", "co-responder present", builtin=True),
        FieldDef("referral_made", "boolean", "referral made", builtin=True),
        FieldDef("connected_to_services", "boolean", "connected to services", builtin=True),
        FieldDef("use_of_force", "enum", "use of force", USE_OF_FORCE, builtin=True),
        FieldDef("mode", "enum", "co-responder mode", ENCOUNTER_MODES, builtin=True),
        FieldDef("program", "text", "program", builtin=True),
        FieldDef("team", "text", "co-responder team", builtin=True),
        FieldDef("referral_type", "text", "service first referred to", builtin=True),
    )
}
#: fields a filter may not name, with the reason
REFUSED_FIELDS = {
    "bh": "every metric counts behavioral-health calls (the report's segment); leave bh out",
    "behavioral_health": "every metric counts behavioral-health calls (the report's segment); leave it out",
}


@dataclass(frozen=True)
class Condition:
    """Allowed values of one field: a set (``values``) or an inclusive range (``low`` /
    ``high``, None = open) for integers and dates."""

    values: frozenset[Scalar] | None = None
    low: int | date | None = None
    high: int | date | None = None

    def holds(self, value: Scalar | None) -> bool:
        if value is None:
            return False
        if self.values is not None:
            return value in self.values
        if self.low is not None and value < self.low:  # type: ignore[operator]  # same field type
            return False
        return not (self.high is not None and value > self.high)  # type: ignore[operator]

    def within(self, other: Condition) -> bool:
        """Whether every value this condition allows, ``other`` allows too."""
        if other.values is not None:
            return self.values is not None and self.values <= other.values
        if self.values is not None:
            return all(other.holds(v) for v in self.values)
        lo_ok = other.low is None or (self.low is not None and self.low >= other.low)  # type: ignore[operator]
        hi_ok = other.high is None or (self.high is not None and self.high <= other.high)  # type: ignore[operator]
        return lo_ok and hi_ok

    def describe(self) -> Any:
        """JSON of the condition (for reports)."""
        if self.values is not None:
            vals = sorted((v.isoformat() if isinstance(v, date) else v for v in self.values), key=str)
            return vals[0] if len(vals) == 1 else vals

        def j(v: Any) -> Any:
            return v.isoformat() if isinstance(v, date) else v

        return {"min": j(self.low), "max": j(self.high)}


Filter = Mapping[str, Condition]


@dataclass(frozen=True)
class MetricDef:
    """One county metric: ``numerator`` ⊆ ``denominator`` (both filters over
    behavioral-health calls), published per ``grain`` with the built-in metrics' suppression."""

    id: str
    label: str
    numerator: dict[str, Condition]
    denominator: dict[str, Condition]
    grain: str = "month"

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.numerator) | frozenset(self.denominator)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "grain": self.grain,
            "numerator": {k: c.describe() for k, c in sorted(self.numerator.items())},
            "denominator": {k: c.describe() for k, c in sorted(self.denominator.items())},
        }


@dataclass(frozen=True)
class Definitions:
    """A loaded definitions file: its custom fields and metrics; ``label`` is
    ``name@version``, ``digest`` hashes the content. :data:`EMPTY` when none is configured."""

    name: str
    version: int
    fields: dict[str, FieldDef] = field(default_factory=dict)
    metrics: tuple[MetricDef, ...] = ()
    digest: str = ""
    path: str = ""

    @property
    def label(self) -> str | None:
        return f"{self.name}@{self.version}" if self.name else None

    def field(self, name: str) -> FieldDef | None:
        """A custom field or a built-in one by name."""
        return self.fields.get(name) or BUILTIN_FIELDS.get(name)

    def from_source(self, source: str) -> dict[str, FieldDef]:
        """The custom fields a source (``cad`` / ``intake`` / ``case``) carries."""
        return {n: f for n, f in self.fields.items() if source in f.sources}

    def describe(self) -> dict[str, Any]:
        """What reports state: the label, digest and every metric's definition."""
        return {"label": self.label, "digest": self.digest, "metrics": [m.describe() for m in self.metrics]}

    def value(self, row: Mapping[str, Any], name: str) -> Scalar | None:
        """The typed value of field ``name`` on an incident row (its column, or its entry in
        the row's ``custom`` map, parsed by the field's type)."""
        f = self.field(name)
        if f is None:
            return None
        if f.builtin:
            return row.get(name)
        custom = row.get("custom") or {}
        if isinstance(custom, str):
            custom = json.loads(custom)
        return f.parse(custom.get(name))

    def matches(self, flt: Filter, row: Mapping[str, Any]) -> bool:
        """Whether the incident row passes every condition of the filter."""
        return all(c.holds(self.value(row, name)) for name, c in flt.items())


EMPTY = Definitions(name="", version=0)


# --------------------------------------------------------------------------- loading


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _mapping(node: yaml.Node, path: str, what: str) -> list[tuple[str, yaml.Node, int]]:
    """(key, value node, line) of a mapping node; refuses a key given twice."""
    if not isinstance(node, yaml.MappingNode):
        raise CustomDefinitionError(path, _line(node), f"{what}: a mapping")
    seen: dict[str, int] = {}
    out = []
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode):
            raise CustomDefinitionError(path, _line(k), f"{what}: keys are names")
        if k.value in seen:
            raise CustomDefinitionError(
                path, _line(k), f"{what}: {k.value!r} is given twice (first on line {seen[k.value]})"
            )
        seen[k.value] = _line(k)
        out.append((str(k.value), v, _line(k)))
    return out


def _null(node: yaml.Node) -> bool:
    """Whether a node is YAML's null (``metrics:`` with nothing under it)."""
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _plain(node: yaml.Node) -> Any:
    """The Python value of a node (safe types only)."""
    return yaml.safe_load(yaml.serialize(node))


def _field_def(name: str, node: yaml.Node, line: int, path: str) -> FieldDef:
    where = f"field {name!r}"
    if not _is_id(name):
        raise CustomDefinitionError(path, line, f"{where}: a field name is {ID_PATTERN}")
    if name in BUILTIN_FIELDS or name in REFUSED_FIELDS:
        raise CustomDefinitionError(path, line, f"{where}: the name of a built-in field; choose another")
    spec = {k: (v, ln) for k, v, ln in _mapping(node, path, where)}
    allowed = {"type", "label", "values", "min", "max", "sources", "sensitive"}
    for key, (_, ln) in spec.items():
        if key not in allowed:
            raise CustomDefinitionError(
                path, ln, f"{where}: unknown key {key!r} ({', '.join(sorted(allowed))})"
            )

    def get(key: str, default: Any = None) -> Any:
        return _plain(spec[key][0]) if key in spec else default

    def at(key: str) -> int:
        return spec[key][1] if key in spec else line

    ftype = get("type")
    if ftype not in DECLARED_TYPES:
        raise CustomDefinitionError(
            path, at("type"), f"{where}: type must be one of {', '.join(DECLARED_TYPES)}"
        )
    label = get("label")
    if not isinstance(label, str) or not label.strip():
        raise CustomDefinitionError(path, at("label"), f"{where}: label: a text for readers is required")
    values: tuple[str, ...] = ()
    if ftype == "enum":
        raw = get("values")
        if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw):
            raise CustomDefinitionError(
                path, at("values"), f"{where}: values: an enum lists its allowed values"
            )
        if len(set(raw)) != len(raw):
            raise CustomDefinitionError(path, at("values"), f"{where}: values: each value once")
        values = tuple(raw)
    elif "values" in spec:
        raise CustomDefinitionError(path, at("values"), f"{where}: values: only an enum has values")
    lo, hi = get("min"), get("max")
    if (lo is not None or hi is not None) and ftype != "integer":
        raise CustomDefinitionError(
            path, at("min" if "min" in spec else "max"), f"{where}: min/max: only an integer has a range"
        )
    for key, v in (("min", lo), ("max", hi)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise CustomDefinitionError(path, at(key), f"{where}: {key}: a whole number")
    if lo is not None and hi is not None and lo > hi:
        raise CustomDefinitionError(path, at("min"), f"{where}: min is above max")
    sources = get("sources")
    if not isinstance(sources, list) or not sources:
        raise CustomDefinitionError(path, at("sources"), f"{where}: sources: list cad, intake and/or case")
    for s in sources:
        if s not in SOURCES:
            raise CustomDefinitionError(
                path, at("sources"), f"{where}: sources: unknown source {s!r} (cad, intake, case)"
            )
    sensitive = get("sensitive", False)
    if not isinstance(sensitive, bool):
        raise CustomDefinitionError(path, at("sensitive"), f"{where}: sensitive: true or false")
    if sensitive and "cad" in sources:
        raise CustomDefinitionError(
            path,
            at("sources"),
            f"{where}: a sensitive field comes from the intake or the case system only (it is "
            "sealed with the person's key, and a CAD row names no person)",
        )
    return FieldDef(name, ftype, label.strip(), values, lo, hi, tuple(dict.fromkeys(sources)), sensitive)


def _one_value(f: FieldDef, raw: Any) -> Scalar:
    """A filter value of field ``f``; raises ValueError saying why."""
    if f.type == "boolean":
        if not isinstance(raw, bool):
            raise ValueError("must be true or false")
        return raw
    if f.type == "integer":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("must be a whole number")
        return raw
    if f.type == "date":
        if isinstance(raw, date):
            return raw
        try:
            return date.fromisoformat(str(raw))
        except ValueError:
            raise ValueError("must be a date (YYYY-MM-DD)") from None
    if not isinstance(raw, str):
        raise ValueError("must be a text value")
    if f.type == "enum" and raw not in f.values:
        raise ValueError(f"value {raw!r} is not allowed (allowed: {', '.join(f.values)})")
    return raw


def _condition(f: FieldDef, raw: Any) -> Condition:
    """The condition a filter writes for field ``f``; raises ValueError saying why."""
    if isinstance(raw, dict):
        if f.type not in ("integer", "date"):
            raise ValueError("a range {min, max} is for integer and date fields")
        keys = {"min": "low", "max": "high", "from": "low", "to": "high"}
        if not raw or any(k not in keys for k in raw):
            raise ValueError("a range has min and/or max (from / to for dates)")
        bounds = {keys[k]: _one_value(f, v) for k, v in raw.items()}
        low, high = bounds.get("low"), bounds.get("high")
        if low is not None and high is not None and low > high:  # type: ignore[operator]  # one type
            raise ValueError("the range's min is above its max")
        return Condition(low=low, high=high)  # type: ignore[arg-type]  # int or date by the field
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ValueError("an empty list matches nothing")
    return Condition(values=frozenset(_one_value(f, item) for item in items))


def _filter(
    node: yaml.Node | None, line: int, path: str, metric: str, part: str, fields: Mapping[str, FieldDef]
) -> dict[str, Condition]:
    if node is None:
        raise CustomDefinitionError(
            path, line, f"metric {metric!r}: {part}: required (a filter; {{}} = every call)"
        )
    out: dict[str, Condition] = {}
    for name, v, ln in _mapping(node, path, f"metric {metric!r}: {part}"):
        where = f"metric {metric!r}: {part}: field {name!r}"
        if name in REFUSED_FIELDS:
            raise CustomDefinitionError(path, ln, f"{where}: {REFUSED_FIELDS[name]}")
        f = fields.get(name) or BUILTIN_FIELDS.get(name)
        if f is None:
            known = ", ".join([*BUILTIN_FIELDS, *fields])
            raise CustomDefinitionError(path, ln, f"{where}: unknown field (known: {known})")
        if f.sensitive:
            raise CustomDefinitionError(
                path, ln, f"{where}: a sensitive field is never a metric dimension (it is sealed per person)"
            )
        try:
            out[name] = _condition(f, _plain(v))
        except ValueError as exc:
            raise CustomDefinitionError(path, ln, f"{where}: {exc}") from None
    return out


def _metric(node: yaml.Node, path: str, fields: Mapping[str, FieldDef]) -> MetricDef:
    line = _line(node)
    spec = {k: (v, ln) for k, v, ln in _mapping(node, path, "metric")}
    mid = _plain(spec["id"][0]) if "id" in spec else None
    if not isinstance(mid, str) or not _is_id(mid):
        raise CustomDefinitionError(path, spec.get("id", (None, line))[1], f"metric: id is {ID_PATTERN}")
    where = f"metric {mid!r}"
    allowed = {"id", "label", "numerator", "denominator", "grain"}
    for key, (_, ln) in spec.items():
        if key not in allowed:
            raise CustomDefinitionError(
                path, ln, f"{where}: unknown key {key!r} ({', '.join(sorted(allowed))})"
            )
    label = _plain(spec["label"][0]) if "label" in spec else None
    if not isinstance(label, str) or not label.strip():
        raise CustomDefinitionError(path, spec.get("label", (None, line))[1], f"{where}: label: required")
    grain = _plain(spec["grain"][0]) if "grain" in spec else "month"
    if grain not in GRAINS:
        raise CustomDefinitionError(
            path,
            spec["grain"][1],
            f"{where}: grain: {grain!r} is not published (grains: {', '.join(GRAINS)}; "
            "releases are monthly tables of every area)",
        )
    num_node, num_line = spec.get("numerator", (None, line))
    den_node, den_line = spec.get("denominator", (None, line))
    denominator = _filter(den_node, den_line, path, mid, "denominator", fields)
    numerator = _filter(num_node, num_line, path, mid, "numerator", fields)
    for name, cond in denominator.items():
        if name not in numerator or not numerator[name].within(cond):
            raise CustomDefinitionError(
                path,
                num_line,
                f"{where}: numerator: field {name!r}: the numerator is not a subset of the "
                "denominator (each of its conditions must hold in the numerator, as narrow or narrower)",
            )
    return MetricDef(mid, label.strip(), numerator, denominator, grain)


def parse_definitions(text: str, path: str) -> Definitions:
    """The definitions of one file's text (pure); raises :class:`CustomDefinitionError`."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise CustomDefinitionError(path, None, f"not valid YAML: {exc}") from None
    if not isinstance(root, yaml.MappingNode):
        raise CustomDefinitionError(path, None, "a definitions file is a YAML mapping")
    top = {k: (v, ln) for k, v, ln in _mapping(root, path, "file")}
    for key, (_, ln) in top.items():
        if key not in ("name", "version", "fields", "metrics"):
            raise CustomDefinitionError(path, ln, f"unknown key {key!r} (name, version, fields, metrics)")
    name = _plain(top["name"][0]) if "name" in top else None
    if not isinstance(name, str) or not name.strip():
        raise CustomDefinitionError(
            path, top.get("name", (None, 1))[1], "name: required (reports state name@version)"
        )
    version = _plain(top["version"][0]) if "version" in top else None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CustomDefinitionError(
            path,
            top.get("version", (None, 1))[1],
            "version: a whole number from 1 (raise it with every change)",
        )
    top = {k: (v, ln) for k, (v, ln) in top.items() if k in ("name", "version") or not _null(v)}
    fields: dict[str, FieldDef] = {}
    if "fields" in top:
        for fname, node, ln in _mapping(top["fields"][0], path, "fields"):
            fields[fname] = _field_def(fname, node, ln, path)
    metrics: list[MetricDef] = []
    if "metrics" in top:
        node = top["metrics"][0]
        if not isinstance(node, yaml.SequenceNode):
            raise CustomDefinitionError(path, top["metrics"][1], "metrics: a list of metric definitions")
        first: dict[str, int] = {}
        for item in node.value:
            m = _metric(item, path, fields)
            if m.id in first:
                raise CustomDefinitionError(
                    path, _line(item), f"metric {m.id!r}: duplicate id (first on line {first[m.id]})"
                )
            first[m.id] = _line(item)
            metrics.append(m)
    content = {
        "name": name,
        "version": version,
        "fields": _plain(top["fields"][0]) if "fields" in top else {},
        "metrics": _plain(top["metrics"][0]) if "metrics" in top else [],
    }
    digest = (
        "sha256:" + hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]
    )
    return Definitions(name.strip(), version, fields, tuple(metrics), digest, path)


@lru_cache(maxsize=16)
def _cached(path: str, mtime_ns: int, size: int) -> Definitions:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CustomDefinitionError(path, None, f"cannot read: {exc.strerror}") from None
    return parse_definitions(text, path)


def load_definitions(path: str | Path | None) -> Definitions:
    """The definitions of the file at ``path`` (:data:`EMPTY` for None); re-read when the file
    changes."""
    if path is None or str(path) == "":
        return EMPTY
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise CustomDefinitionError(str(p), None, "no such definitions file") from None
    return _cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


def check_source_fields(defs: Definitions, source: str, names: Iterable[str], where: str) -> None:
    """Refuse field names a source maps (a CAD profile's ``custom`` columns) that are not
    declared custom fields carried by ``source``; ``where`` names the profile."""
    for name in names:
        f = defs.fields.get(name)
        if f is None:
            known = ", ".join(defs.fields) or "none declared"
            raise ConfigError(
                f"{where}: custom field {name!r} is not declared in the custom definitions "
                f"({defs.path or 'custom.definitions is not set'}; declared: {known})"
            )
        if source not in f.sources:
            raise ConfigError(
                f"{where}: custom field {name!r} does not list {source} in its sources ({defs.path})"
            )
