"""Hypothesis strategies that build valid instances of any event payload model by reading
its field annotations (pseudonyms, incident ids, aware datetimes, literals, sealed blobs,
nested frozen models, optionals, tuples and mappings)."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, Union, get_args, get_origin

from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel

from schemas.base import Sealed
from schemas.envelope import Envelope, new_event

PSEUDONYM = st.from_regex(r"\Apsn_[0-9a-f]{32}\Z")
INCIDENT = st.builds(
    lambda agency, num: f"{agency}:{num}",
    st.sampled_from(["sea", "nola", "sf"]),
    st.from_regex(r"\A[0-9A-Z-]{1,20}\Z"),
)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
ZONES = st.sampled_from([UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30))])
AWARE = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 1, 1), timezones=ZONES)
SEALED = st.builds(
    Sealed,
    kid=st.from_regex(r"\Ak_[0-9a-f]{24}\Z"),
    nonce=st.binary(min_size=12, max_size=12).map(lambda b: __import__("base64").b64encode(b).decode()),
    ciphertext=st.binary(min_size=16, max_size=64).map(lambda b: __import__("base64").b64encode(b).decode()),
)


def _pattern(metadata: list[Any]) -> str | None:
    for m in metadata:
        pattern = getattr(m, "pattern", None)
        if pattern:
            return pattern
    return None


def for_annotation(annotation: Any, metadata: list[Any] | None = None) -> st.SearchStrategy[Any]:
    metadata = list(metadata or [])
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = get_args(annotation)
        return for_annotation(base, metadata + list(extra))
    pattern = _pattern(metadata)
    if pattern == r"^psn_[0-9a-f]{32}$":
        return PSEUDONYM
    if pattern is not None and pattern.startswith("^[A-Za-z0-9_.-]+:"):
        return INCIDENT
    if pattern is not None and annotation is str:
        return st.from_regex(pattern, fullmatch=True)
    if origin in (Union, types.UnionType):
        return st.one_of(*(for_annotation(a, metadata) for a in get_args(annotation)))
    if origin is Literal:
        return st.sampled_from(get_args(annotation))
    if origin is dict:  # county-defined fields: name → value
        key, value = get_args(annotation)
        return st.dictionaries(for_annotation(key), for_annotation(value), max_size=3)
    if origin is tuple:
        args = get_args(annotation)
        inner = for_annotation(args[0])
        return st.lists(inner, min_size=1, max_size=3, unique=True).map(tuple)
    if annotation is type(None):
        return st.none()
    if annotation is AwareDatetime or annotation is datetime:
        return AWARE
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(min_value=0, max_value=10_000)
    if annotation is float:
        return st.floats(min_value=-180, max_value=180, allow_nan=False)
    if annotation is str:
        return TEXT
    if annotation is Sealed:
        return SEALED
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return model_strategy(annotation)
    raise NotImplementedError(f"no strategy for {annotation!r}")


def model_strategy(model: type[BaseModel]) -> st.SearchStrategy[BaseModel]:
    fields = {
        name: for_annotation(f.annotation, f.metadata) for name, f in model.model_fields.items()
    }
    return st.fixed_dictionaries(fields).map(lambda kw: model(**kw))


def envelope_strategy(model: type[BaseModel]) -> st.SearchStrategy[Envelope]:
    return st.builds(
        lambda data, source, record, rev: new_event(
            data, source=source, record_id=record, revision=rev, recorded_at=datetime(2030, 1, 1, tzinfo=UTC)
        ),
        model_strategy(model),
        st.sampled_from(["cad/seattle", "cases/acme", "ehr/clinic-a"]),
        st.from_regex(r"\A[A-Za-z0-9-]{1,12}\Z"),
        st.integers(0, 5),
    )
