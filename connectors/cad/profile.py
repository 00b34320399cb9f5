"""CAD mapping profiles: per-agency data (YAML under ``connectors/cad/profiles``) saying
which column holds which normalized field, how times are written, which rows the source
marks as not real calls, how dispositions map to the hub's outcome vocabulary and which
call types are behavioral-health calls.

Invariant: a profile is validated when loaded (unknown outcome names, categories, time
zones or field names are errors), so a bad profile fails at start, never mid-import.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.base import CallCategory, Outcome

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

NormalizedField = Literal[
    "cad_number",
    "received_at",
    "dispatched_at",
    "enroute_at",
    "onscene_at",
    "closed_at",
    "call_type_initial",
    "call_type_final",
    "priority",
    "disposition_code",
    "disposition_text",
    "precinct",
    "district",
    "sector",
    "beat",
    "longitude",
    "latitude",
    "updated_at",
    "remarks",
]

# The default behavioral-health rule: a call is flagged when its initial or final call-type
# text mentions one of these (case-insensitive substring; "suicid" covers suicide/suicidal).
DEFAULT_BH_KEYWORDS: tuple[str, ...] = (
    "suicid",
    "crisis",
    "mental",
    "behavioral",
    "behavioural",
    "emotional",
    "welfare check",
    "overdose",
)

# Ordered category rules: the first rule with a keyword in the final (else initial) call
# type wins; a behavioral-health-flagged call whose text matches no rule is
# ``behavioral_health``; everything else is ``other``.
DEFAULT_CATEGORY_RULES: tuple[tuple[CallCategory, tuple[str, ...]], ...] = (
    (
        "behavioral_health",
        ("suicid", "crisis", "mental", "behavioral", "behavioural", "emotional", "overdose"),
    ),
    ("welfare", ("welfare", "well being", "wellbeing", "check for down person", "found person")),
    ("medical", ("medic", "casualty", "injur", "sick", "doa", "dead body", "ambulance")),
    (
        "violent",
        (
            "assault",
            "aslt",
            "shots",
            "shoot",
            "robbery",
            "weapon",
            "fight",
            "threat",
            "homicide",
            "stab",
            "rape",
            "dv ",
            "dv-",
            "domestic",
            "kidnap",
            "harass",
        ),
    ),
    (
        "traffic",
        (
            "traffic",
            "mvc",
            "dui",
            "d.u.i",
            "parking",
            "collision",
            "hit and run",
            "accident",
            "vehicle blocking",
        ),
    ),
    (
        "property",
        (
            "burg",
            "theft",
            "stolen",
            "property",
            "fraud",
            "vandal",
            "prowl",
            "shoplift",
            "car prowl",
            "auto recovery",
            "alarm",
            "burn",
            "trespass",
        ),
    ),
    ("disturbance", ("disturb", "noise", "nuisance", "suspicious", "lewd", "urinating", "public")),
)


class SelfInitiatedRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str
    values: list[str]


class ExcludeRule(BaseModel):
    """Rows whose ``field`` (a source column) equals one of ``values`` (case-insensitive)
    are not real calls (the source marks them duplicate / void / test)."""

    model_config = ConfigDict(extra="forbid")
    field: str
    values: list[str]


class BehavioralHealthRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_BH_KEYWORDS))


class CategoryRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: CallCategory
    keywords: list[str]


class Profile(BaseModel):
    """One agency's export layout and vocabulary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    format: Literal["csv", "eido"] = "csv"
    agency: str
    source: str
    timezone: str
    columns: list[str] = Field(default_factory=list)
    fields: dict[NormalizedField, str] = Field(default_factory=dict)
    time_formats: list[str] = Field(default_factory=lambda: ["iso"])
    self_initiated: SelfInitiatedRule | None = None
    exclude: list[ExcludeRule] = Field(default_factory=list)
    dispositions: dict[str, Outcome] = Field(default_factory=dict)
    #: decimal places kept of published coordinates (3 ≈ 110 m, block level); None = as
    #: published (only for a feed that is already blurred at the source)
    coordinate_decimals: int | None = Field(3, ge=0, le=8)
    behavioral_health: BehavioralHealthRule = Field(default_factory=BehavioralHealthRule)
    categories: list[CategoryRule] | None = None

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("dispositions")
    @classmethod
    def _normalize_keys(cls, value: dict[str, Outcome]) -> dict[str, Outcome]:
        return {normalize_code(k): v for k, v in value.items()}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def required_columns(self) -> list[str]:
        """Source columns the mapping reads (the file header must contain them all);
        ``updated_at`` is optional in files (API rows carry it)."""
        cols = [c for f, c in self.fields.items() if f != "updated_at"]
        if self.self_initiated:
            cols.append(self.self_initiated.field)
        cols += [r.field for r in self.exclude]
        return list(dict.fromkeys(cols))

    def category_rules(self) -> list[tuple[CallCategory, tuple[str, ...]]]:
        if self.categories is None:
            return [(c, k) for c, k in DEFAULT_CATEGORY_RULES]
        return [(r.category, tuple(r.keywords)) for r in self.categories]

    def codes_for(self, outcome: str) -> list[str]:
        """Source disposition values that map to ``outcome`` (for writers/simulators)."""
        return [code for code, out in self.dispositions.items() if out == outcome]


def normalize_code(value: str) -> str:
    return " ".join(value.strip().upper().split())


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile_file(path: Path) -> Profile:
    """The profile of one YAML file; raises ``ValueError`` (a pydantic ``ValidationError``
    for a profile that does not validate)."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profile is a YAML mapping")
    return Profile.model_validate(data)


def profile_file(name_or_path: str) -> Path | None:
    """The YAML file of a profile given as a path (``.yaml``/``.yml``, existing) or as a
    bundled name (``seattle``); None when there is no such file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    bundled = PROFILES_DIR / f"{name_or_path}.yaml"
    return bundled if bundled.is_file() else None


@lru_cache(maxsize=32)
def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name (``seattle``), or a profile file by path."""
    path = profile_file(name_or_path)
    if path is None:
        raise ValueError(f"unknown CAD profile {name_or_path!r}; known: {', '.join(profile_names())}")
    return load_profile_file(path)


def apply_overrides(profile: Profile, overrides: Mapping[str, Any] | None) -> Profile:
    """``profile`` with a county's overrides (validated as a whole profile again):
    ``dispositions`` are merged into the profile's code map, any other key replaces the
    profile's value (e.g. the county's own ``agency`` id, its ``time_formats``)."""
    if not overrides:
        return profile
    data = profile.model_dump()
    for key, value in overrides.items():
        if key == "dispositions":
            if not isinstance(value, Mapping):
                raise ValueError("dispositions: a mapping of source code to outcome")
            data["dispositions"] = {**data["dispositions"], **value}
        else:
            data[key] = value
    return Profile.model_validate(data)

