"""CAD mapping profiles: per-agency data (YAML under ``connectors/cad/profiles``) saying
which column holds which normalized field, how times are written, which rows the source
marks as not real calls, and which vocabulary its codes are in.

What the codes *mean* (behavioral-health rule, disposition → outcome, categories) is not
in the profile: it lives in a versioned vocabulary file (:mod:`hub.kernel.vocabulary`)
that the projections apply, so correcting it reclassifies history. The facts a profile
maps keep the source's words and name the vocabulary (``vocabulary``; default: the
bundled vocabulary of the profile's name, when there is one). The mapper reads the
vocabulary only to count dispositions it does not know (an operator signal).

Invariant: a profile is validated when loaded (unknown time zones or field names, and the
vocabulary keys profiles used to carry, are errors), so a bad profile fails at start,
never mid-import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.kernel.custom_fields import check_source_fields, load_definitions
from hub.kernel.settings import Settings
from hub.kernel.vocabulary import Vocabulary, load_vocabulary, normalize_code, vocabulary_names

__all__ = ["normalize_code"]  # re-exported: the mapper compares codes the way vocabularies do

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
    "use_of_force",
    "cit_requested",
    "cit_dispatched",
    "cit_arrived",
    "remarks",
]

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
    # each row is a crisis template (one person on one contact): the mapper adds a
    # ``CrisisTemplate`` fact carrying the row's indicators
    crisis_template: bool = False
    # the export repeats a record once per disposition (Seattle Crisis Data): rows of one
    # number that differ only in their disposition are more dispositions, not revisions
    disposition_rows: bool = False
    vocabulary: str | None = None  # a vocabulary name or file; None: the bundled one of ``name``, if any
    #: county-defined field → the source column it is read from (the field must be declared,
    #: with ``cad`` among its sources, in the county's definitions: :mod:`hub.kernel.custom_fields`);
    #: the facts keep the column's text
    custom: dict[str, str] = Field(default_factory=dict)
    #: decimal places kept of published coordinates (3 ≈ 110 m, block level); None = as
    #: published (only for a feed that is already blurred at the source)
    coordinate_decimals: int | None = Field(3, ge=0, le=8)

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_vocabulary(cls, data: Any) -> Any:
        """Profiles recorded before vocabularies moved out (``mapper_configs`` rows) carry
        ``dispositions`` / ``behavioral_health`` / ``categories``: read them without those.
        Profile files and overrides with them are refused (:func:`legacy_keys_error`)."""
        if isinstance(data, dict) and LEGACY_VOCABULARY_KEYS & data.keys():
            data = {k: v for k, v in data.items() if k not in LEGACY_VOCABULARY_KEYS}
        return data

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("custom")
    @classmethod
    def _custom_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", k)]
        if bad:
            raise ValueError(f"custom field names are lower-case letters, digits and _: {bad!r}")
        return value

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
        cols += list(self.custom.values())
        return list(dict.fromkeys(cols))

    @cached_property
    def vocab(self) -> Vocabulary | None:
        """The vocabulary the profile's codes are in (loaded once per profile object), or
        None when the profile names none and no bundled vocabulary has its name."""
        if self.vocabulary is not None:
            return load_vocabulary(self.vocabulary)
        if self.name in vocabulary_names():
            return load_vocabulary(self.name)
        return None


LEGACY_VOCABULARY_KEYS = frozenset({"dispositions", "behavioral_health", "categories"})


def legacy_keys_error(where: str | None, keys: Iterable[str]) -> str | None:
    """The message refusing vocabulary keys in a profile file (``where``: its path) or in
    overrides (None: the caller names the field), or None."""
    legacy = sorted(LEGACY_VOCABULARY_KEYS & set(keys))
    if not legacy:
        return None
    prefix = f"{where}: " if where else ""
    return (f"{prefix}{', '.join(legacy)} moved to vocabulary files (hub/kernel/vocabularies, or your "
            "own file named in the profile's `vocabulary` and in projections.vocabularies); see "
            "docs/operators.md, \"Vocabularies\"")


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
    legacy = legacy_keys_error(str(path), data)
    if legacy:
        raise ValueError(legacy)
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
    """``profile`` with a county's overrides (validated as a whole profile again): each key
    replaces the profile's value (e.g. the county's own ``agency`` id, its ``time_formats``,
    its ``vocabulary``). Vocabulary keys (``dispositions`` ...) are refused: a county's codes
    go in its vocabulary file."""
    if not overrides:
        return profile
    legacy = legacy_keys_error(None, overrides)
    if legacy:
        raise ValueError(legacy)
    data = profile.model_dump()
    data.update(overrides)
    return Profile.model_validate(data)



def check_custom(profile: Profile, settings: Settings) -> None:
    """Refuse (:class:`~hub.kernel.errors.ConfigError`) a profile whose ``custom`` columns
    name fields the county's definitions (``custom.definitions``) do not declare for CAD."""
    if profile.custom:
        defs = load_definitions(settings.custom.definitions)
        check_source_fields(defs, "cad", profile.custom, f"CAD profile {profile.name!r}: custom")
