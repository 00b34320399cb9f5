"""Vocabularies: what a source's words *mean*, in versioned files the projections apply.

Facts keep the source's words (call types, disposition codes and texts, service types). A
vocabulary — one YAML file under ``hub/kernel/vocabularies`` or a county's own file named in
``projections.vocabularies`` — says what they mean:

- ``behavioral_health``: which calls are behavioral-health calls — ``keywords``
  (case-insensitive substrings) looked for in the ``fields`` it names
  (``call_type_initial``, ``call_type_final``), or ``crisis_template`` (the call has a crisis
  template: Seattle Crisis Data);
- ``categories``: ordered keyword rules giving a call its category (first match on the
  final, else initial, call type wins);
- ``dispositions``: source code or text → hub outcome (:data:`schemas.base.Outcome`), or →
  another code of the same map (an alias, resolved when loaded);
- ``services``: which service types are behavioral-health services (the others, e.g.
  housing, shelter, benefits, are not);
- ``not_measured``: the metrics the source cannot express (metric → the reason published
  with it), from :data:`schemas.outcome.MEASURABLE_METRICS`;
- ``footnotes``: code → a note published with the report (e.g. an oral warning counts as
  no enforcement).

``name`` and ``version`` identify a vocabulary; ``digest`` hashes its content, so a changed
file that kept its version is noticed (:mod:`projections.meta` refuses it). ``agencies``
lists the agencies whose facts carry no vocabulary name (facts recorded before facts named
theirs) that it classifies; ``"*"`` marks the fallback.

Invariant: a file is validated as a whole before anything is applied. An unknown outcome, an
alias cycle, a code mapped twice (after normalizing case and spaces) or a service type listed
twice is refused with :class:`VocabularyError` naming the file, the line and the code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub.kernel.errors import ConfigError
from schemas.base import OUTCOMES, CallCategory, Outcome
from schemas.outcome import MEASURABLE_METRICS

VOCABULARIES_DIR = Path(__file__).resolve().parent / "vocabularies"
FALLBACK = "*"
DEFAULT_VOCABULARY = "generic"

BhField = Literal["call_type_initial", "call_type_final", "crisis_template"]

DEFAULT_BH_KEYWORDS: tuple[str, ...] = (
    "suicid", "crisis", "mental", "behavioral", "behavioural", "emotional", "welfare check", "overdose",
)


def normalize_code(value: str) -> str:
    """A code as compared: upper case, single spaces, no surrounding blanks."""
    return " ".join(value.strip().upper().split())


def normalize_service(value: str) -> str:
    """A service type as compared: lower case, ``_`` for spaces and dashes."""
    return "_".join(value.strip().lower().replace("-", " ").split())


class VocabularyError(ConfigError):
    """A vocabulary file that cannot be applied; the message names the file, the line and
    the code (codes are source vocabulary, never PHI)."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line = path, line
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class BhRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    fields: tuple[BhField, ...] = ("call_type_initial", "call_type_final")
    keywords: tuple[str, ...] = DEFAULT_BH_KEYWORDS

    @field_validator("fields")
    @classmethod
    def _some_field(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("the rule must look at one field at least")
        return value


class CategoryRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    category: CallCategory
    keywords: tuple[str, ...]


class Vocabulary(BaseModel):
    """One vocabulary file, validated (aliases resolved, codes normalized)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    version: int = Field(ge=1)
    description: str = ""
    agencies: tuple[str, ...] = ()
    behavioral_health: BhRule = BhRule()
    categories: tuple[CategoryRule, ...]
    dispositions: dict[str, Outcome] = Field(default_factory=dict)
    services: dict[str, bool] = Field(default_factory=dict)
    not_measured: dict[str, str] = Field(default_factory=dict)
    footnotes: dict[str, str] = Field(default_factory=dict)

    @field_validator("not_measured")
    @classmethod
    def _known_metrics(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(MEASURABLE_METRICS))
        if unknown:
            known = ", ".join(MEASURABLE_METRICS)
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {known}")
        return value

    @property
    def label(self) -> str:
        """``name@version``, as reports and topic records state it."""
        return f"{self.name}@{self.version}"

    @property
    def digest(self) -> str:
        """``sha256:`` + 16 hex digits over the content (a change without a new version shows)."""
        return _digest(self.model_dump(mode="json"))

    # ------------------------------------------------------------------ lookups (pure)

    def is_behavioral_health(self, call_type_initial: str | None, call_type_final: str | None,
                             crisis_template: bool = False) -> bool:
        """Whether a call is a behavioral-health call, by the fields the rule names only: its
        call types (a keyword in one of them), ``crisis_template`` (an officer filed a crisis
        template for someone on it)."""
        rule = self.behavioral_health
        if "crisis_template" in rule.fields and crisis_template:
            return True
        values = {"call_type_initial": call_type_initial, "call_type_final": call_type_final}
        return matches_any([values[f] for f in rule.fields if f in values], rule.keywords)

    def category(self, call_type_initial: str | None, call_type_final: str | None,
                 behavioral_health: bool) -> CallCategory:
        """The call's category: the first rule matching the final, else the initial, call
        type; a behavioral-health call no rule matches is ``behavioral_health``, any other
        ``other``."""
        for candidate in (call_type_final, call_type_initial):
            if candidate:
                for rule in self.categories:
                    if matches_any([candidate], rule.keywords):
                        return rule.category
        return "behavioral_health" if behavioral_health else "other"

    def outcome(self, code: str | None, text: str | None) -> tuple[Outcome, bool] | None:
        """(outcome, known) of a disposition code / text (the code first, then the text), or
        None when there is neither. A value the map lacks is the hub outcome of that name
        when it is one (feeds that send the hub's own names), else ``unknown`` (not known)."""
        if code is None and text is None:
            return None
        values = [normalize_code(v) for v in (code, text) if v is not None]
        for v in values:
            if v in self.dispositions:
                return self.dispositions[v], True
        for v in values:
            name = v.lower()
            if name in OUTCOMES and name != "unknown":
                return name, True  # type: ignore[return-value]  # checked against OUTCOMES
        return "unknown", False

    def knows(self, text: str) -> bool:
        """Whether ``text`` is a label this vocabulary classifies (a code of its map, or a hub
        outcome name): what a CAD connector keeps in clear of a disposition text — any
        other text may be free text and is sealed."""
        meaning = self.outcome(None, text)
        return meaning is not None and meaning[1]

    def is_bh_service(self, service_type: str | None) -> bool:
        """Whether a service type is a behavioral-health service (unlisted types are not)."""
        return service_type is not None and self.services.get(normalize_service(service_type), False)

    def codes_for(self, outcome: str) -> list[str]:
        """The codes that mean ``outcome`` (for writers of simulated feeds)."""
        return [code for code, out in self.dispositions.items() if out == outcome]


def matches_any(texts: Iterable[str | None], keywords: Iterable[str]) -> bool:
    low = [t.casefold() for t in texts if t]
    keys = [k.casefold() for k in keywords]
    return any(k in t for t in low for k in keys)


def _digest(content: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- loading


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _top_lines(root: yaml.MappingNode) -> dict[str, int]:
    return {k.value: _line(k) for k, _ in root.value if isinstance(k, yaml.ScalarNode)}


def _scalar_pairs(node: yaml.Node, path: str, what: str) -> list[tuple[str, str, int]]:
    """(key, value, line) of a mapping of scalars."""
    if not isinstance(node, yaml.MappingNode):
        raise VocabularyError(path, _line(node), f"{what}: a mapping of code to value")
    out = []
    for k, v in node.value:
        if not isinstance(k, yaml.ScalarNode) or not isinstance(v, yaml.ScalarNode):
            raise VocabularyError(path, _line(k), f"{what}: every entry is `code: value`")
        out.append((str(k.value), str(v.value), _line(k)))
    return out


def _dispositions(node: yaml.Node, path: str) -> dict[str, Outcome]:
    """The disposition map with aliases resolved; refuses unknown outcomes, cycles and codes
    mapped twice (see the module doc)."""
    raw: dict[str, tuple[str, int, str]] = {}  # code -> (value, line, code as written)
    for code, value, line in _scalar_pairs(node, path, "dispositions"):
        key = normalize_code(code)
        if key in raw:
            first = raw[key]
            raise VocabularyError(
                path, line, f"disposition {code!r} is mapped twice (first on line {first[1]} as {first[2]!r})"
            )
        raw[key] = (value, line, code)
    resolved: dict[str, Outcome] = {}
    for key, (value, line, code) in raw.items():
        chain = [key]
        target = value
        while target not in OUTCOMES:
            alias = normalize_code(target)
            if alias not in raw:
                raise VocabularyError(
                    path, line, f"disposition {code!r}: unknown outcome {target!r} (outcomes: "
                    f"{', '.join(OUTCOMES)}; or another code of this map)"
                )
            if alias in chain:
                cycle = " -> ".join([*chain, alias])
                raise VocabularyError(path, line, f"disposition {code!r}: alias cycle {cycle}")
            chain.append(alias)
            target = raw[alias][0]
        resolved[key] = target  # type: ignore[assignment]  # checked: in OUTCOMES
    return resolved


def _services(node: yaml.Node, path: str) -> dict[str, bool]:
    """``{behavioral_health: [types], other: [types]}`` → type → is BH; a type in both or
    listed twice is refused."""
    if not isinstance(node, yaml.MappingNode):
        raise VocabularyError(path, _line(node), "services: a mapping with lists behavioral_health and other")
    out: dict[str, tuple[bool, int]] = {}
    for k, v in node.value:
        if k.value not in ("behavioral_health", "other"):
            raise VocabularyError(
                path, _line(k), f"services: unknown list {k.value!r} (behavioral_health, other)"
            )
        if not isinstance(v, yaml.SequenceNode):
            raise VocabularyError(path, _line(v), f"services.{k.value}: a list of service types")
        for item in v.value:
            key = normalize_service(str(item.value))
            if key in out:
                raise VocabularyError(
                    path, _line(item),
                    f"service type {item.value!r} is listed twice (first on line {out[key][1]})",
                )
            out[key] = (k.value == "behavioral_health", _line(item))
    return {k: bh for k, (bh, _) in out.items()}


def parse_vocabulary(text: str, path: str) -> Vocabulary:
    """The vocabulary of one file's text (pure); raises :class:`VocabularyError`."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VocabularyError(path, None, f"not valid YAML: {exc}") from None
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise VocabularyError(path, None, "a vocabulary is a YAML mapping")
    lines = _top_lines(root)
    nodes = {k.value: v for k, v in root.value if isinstance(k, yaml.ScalarNode)}
    if "dispositions" in nodes:
        data["dispositions"] = _dispositions(nodes["dispositions"], path)
    if "services" in nodes:
        data["services"] = _services(nodes["services"], path)
    for key in ("footnotes",):
        if key in nodes:
            data[key] = {normalize_code(c): v for c, v, _ in _scalar_pairs(nodes[key], path, key)}
    data.setdefault("categories", [{"category": c, "keywords": list(k)} for c, k in DEFAULT_CATEGORY_RULES])
    try:
        return Vocabulary.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc)
        raise VocabularyError(path, lines.get(loc[0]) if loc else None, f"{where}: {err['msg']}") from None


def load_vocabulary_file(path: Path) -> Vocabulary:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VocabularyError(str(path), None, f"cannot read: {exc.strerror}") from None
    return parse_vocabulary(text, str(path))


def vocabulary_names() -> list[str]:
    return sorted(p.stem for p in VOCABULARIES_DIR.glob("*.yaml"))


def vocabulary_file(name_or_path: str) -> Path:
    """The file of a bundled vocabulary name or of a path (``.yaml`` / ``.yml``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise VocabularyError(name_or_path, None, "no such vocabulary file")
        return path
    bundled = VOCABULARIES_DIR / f"{name_or_path}.yaml"
    if not bundled.is_file():
        known = ", ".join(vocabulary_names())
        raise VocabularyError(name_or_path, None, f"unknown vocabulary; bundled: {known}")
    return bundled


@lru_cache(maxsize=64)
def _cached(path: str, mtime_ns: int, size: int) -> Vocabulary:
    return load_vocabulary_file(Path(path))


def load_vocabulary(name_or_path: str) -> Vocabulary:
    """A bundled vocabulary by name (``seattle``) or a vocabulary file by path (read again
    when the file changed)."""
    path = vocabulary_file(name_or_path)
    st = path.stat()
    return _cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class VocabularySet:
    """The vocabularies a projection applies: by name (facts name their vocabulary), by
    agency (facts recorded before they named one), and the fallback (``agencies: ["*"]``),
    whose ``services`` classify service types."""

    vocabularies: tuple[Vocabulary, ...]
    fallback: Vocabulary = field(init=False, repr=False, compare=False)
    """The vocabulary claiming every agency (``*``), looked up once."""

    def __post_init__(self) -> None:
        names: dict[str, Vocabulary] = {}
        agencies: dict[str, str] = {}
        for v in self.vocabularies:
            if v.name in names:
                raise VocabularyError(v.name, None, "two vocabularies of this name are configured")
            names[v.name] = v
            for a in v.agencies:
                if a in agencies:
                    raise VocabularyError(v.name, None, f"agency {a!r} is claimed by {agencies[a]} too")
                agencies[a] = v.name
        if FALLBACK not in agencies:
            raise VocabularyError(",".join(names), None, 'no fallback vocabulary (agencies: ["*"])')
        object.__setattr__(self, "fallback", names[agencies[FALLBACK]])

    def by_name(self, name: str | None) -> Vocabulary | None:
        return next((v for v in self.vocabularies if v.name == name), None)

    def for_call(self, vocabulary: str | None, agency: str | None) -> Vocabulary:
        """The vocabulary of a call: the one it names, else the one claiming its agency, else
        the fallback (a named vocabulary that is not configured falls back too)."""
        named = self.by_name(vocabulary)
        if named is not None:
            return named
        return next((v for v in self.vocabularies if agency in v.agencies), self.fallback)

    @property
    def label(self) -> str:
        """``name@version`` of every vocabulary, sorted, comma-separated."""
        return ",".join(sorted(v.label for v in self.vocabularies))

    @property
    def digest(self) -> str:
        return _digest(sorted((v.name, v.version, v.digest) for v in self.vocabularies))

    def describe(self) -> list[dict[str, Any]]:
        """``[{"name", "version", "digest", "agencies"}]``, sorted by name (what reports state)."""
        return [
            {"name": v.name, "version": v.version, "digest": v.digest, "agencies": list(v.agencies)}
            for v in sorted(self.vocabularies, key=lambda v: v.name)
        ]


def load_vocabularies(names_or_paths: Iterable[str] = ()) -> VocabularySet:
    """The set of the given vocabularies (names or paths; none = every bundled one). The
    bundled ``generic`` vocabulary is added as the fallback when none of them claims ``*``."""
    given = list(names_or_paths) or vocabulary_names()
    vocabs = [load_vocabulary(n) for n in given]
    if not any(FALLBACK in v.agencies for v in vocabs) and all(v.name != DEFAULT_VOCABULARY for v in vocabs):
        vocabs.append(load_vocabulary(DEFAULT_VOCABULARY))
    return VocabularySet(tuple(vocabs))


# Ordered category rules used when a vocabulary has no ``categories``.
DEFAULT_CATEGORY_RULES: tuple[tuple[CallCategory, tuple[str, ...]], ...] = (
    ("behavioral_health",
     ("suicid", "crisis", "mental", "behavioral", "behavioural", "emotional", "overdose")),
    ("welfare", ("welfare", "well being", "wellbeing", "check for down person", "found person")),
    ("medical", ("medic", "casualty", "injur", "sick", "doa", "dead body", "ambulance")),
    ("violent", ("assault", "aslt", "shots", "shoot", "robbery", "weapon", "fight", "threat", "homicide",
                 "stab", "rape", "dv ", "dv-", "domestic", "kidnap", "harass")),
    ("traffic", ("traffic", "mvc", "dui", "d.u.i", "parking", "collision", "hit and run", "accident",
                 "vehicle blocking")),
    ("property", ("burg", "theft", "stolen", "property", "fraud", "vandal", "prowl", "shoplift", "car prowl",
                  "auto recovery", "alarm", "burn", "trespass")),
    ("disturbance", ("disturb", "noise", "nuisance", "suspicious", "lewd", "urinating", "public")),
)
