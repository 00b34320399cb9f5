"""Raw records and mapping results.

A *source* yields :class:`RawRecord` values; a *mapper* (pure: no I/O, no clock) turns one
raw record into exactly one of

- :class:`Mapped` — one or more event envelopes (deterministic ids),
- :class:`Rejection` — the record cannot become events (bad input: goes to a dead letter),
- :class:`Exclusion` — the source itself marks the record as not a real fact
  (duplicate / void / test rows): counted, never appended, never dead-lettered.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from hub.kernel.crypto import Keyring
from schemas.deadletter import Stage
from schemas.envelope import Envelope


class RawRecord:
    """One record as the source delivered it (immutable).

    ``ref`` locates it for humans (``file.csv:17``, ``page@offset``); ``raw`` is the exact
    bytes kept for the dead letter; ``fields`` is the parsed form a mapper reads (a CSV row
    as a column→value dict, a JSON object ...), or ``None`` when the source already knows
    it cannot be parsed — then ``problem`` says why. ``observed_at`` is when the source
    published this version of the record as far as the shell can tell (a dropped file's
    modification time); mappers use it to order revisions that carry no updated-at of
    their own. It is input, not a clock reading, so mapping stays pure.

    A source may give ``encode`` (a pure function of what it read) instead of ``raw``: the
    bytes are then built the first time they are asked for — only a dead letter needs them
    (a CSV row is re-serialized only when it is rejected). Either way ``raw`` is the same
    bytes, and equal records compare equal.
    """

    __slots__ = ("_encode", "_raw", "fields", "observed_at", "problem", "ref")

    ref: str
    fields: Any
    problem: str | None
    observed_at: datetime | None
    _raw: bytes | None
    _encode: Callable[[], bytes] | None

    def __init__(
        self,
        ref: str,
        raw: bytes | None = None,
        fields: Any = None,
        problem: str | None = None,
        observed_at: datetime | None = None,
        *,
        encode: Callable[[], bytes] | None = None,
    ) -> None:
        if (raw is None) == (encode is None):
            raise TypeError("RawRecord needs exactly one of raw and encode")
        setter = object.__setattr__
        setter(self, "ref", ref)
        setter(self, "_raw", raw)
        setter(self, "_encode", encode)
        setter(self, "fields", fields)
        setter(self, "problem", problem)
        setter(self, "observed_at", observed_at)

    @property
    def raw(self) -> bytes:
        raw: bytes | None = self._raw
        if raw is None:
            assert self._encode is not None  # __init__ sets one of them
            raw = self._encode()
            object.__setattr__(self, "_raw", raw)
            object.__setattr__(self, "_encode", None)
        return raw

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RawRecord is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RawRecord is immutable (cannot delete {name!r})")

    def __reduce__(self) -> tuple[Any, ...]:
        return (RawRecord, (self.ref, self.raw, self.fields, self.problem, self.observed_at))

    def _key(self) -> tuple[Any, ...]:
        return (self.ref, self.raw, self.fields, self.problem, self.observed_at)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, RawRecord)
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # like the dataclass it replaces: fields is a dict

    def __repr__(self) -> str:
        return (f"RawRecord(ref={self.ref!r}, raw={self.raw!r}, fields={self.fields!r}, "
                f"problem={self.problem!r}, observed_at={self.observed_at!r})")


@dataclass(frozen=True)
class Mapped:
    """The events of one record. ``unknown_disposition`` notes that the source's
    disposition was not in the profile (mapped to ``unknown``; the runner counts it)."""

    events: tuple[Envelope, ...]
    unknown_disposition: bool = False


@dataclass(frozen=True)
class Rejection:
    stage: Stage
    reason: str


@dataclass(frozen=True)
class Exclusion:
    reason: str


MapResult = Mapped | Rejection | Exclusion


@dataclass(frozen=True)
class RevisionKey:
    """Identifies one revision of one source record (e.g. a CAD number and its
    updated-at). The runner claims the *first* revision it sees of each key, so a later
    revision becomes a "revised" fact instead of a second "received" fact."""

    key: str
    revision: str


class Mapper(Protocol):
    """Pure mapping of one raw record. ``first_revision`` is the revision of ``key`` the
    hub saw first (``None`` when the mapper does not track revisions)."""

    source: str

    def revision_key(self, record: RawRecord) -> RevisionKey | None: ...

    def map(self, record: RawRecord, first_revision: str | None = None) -> MapResult: ...


@runtime_checkable
class SealingMapper(Protocol):
    """A mapper that seals clinical fields with per-person keys, and still maps without
    I/O: ``persons_to_seal(record)`` names (purely) the pseudonyms ``map`` will seal for;
    the runner resolves their keys from ``keyring`` when it is a
    :class:`hub.kernel.crypto.KeyStore` (awaited, bounded) and maps the batch with
    ``with_keyring(snapshot)``. ``persons_to_seal`` never raises for a bad record (``map``
    rejects it)."""

    source: str
    keyring: Any

    def persons_to_seal(self, record: RawRecord) -> Sequence[str]: ...

    def with_keyring(self, keyring: Keyring) -> Mapper: ...


@runtime_checkable
class AttributingMapper(Protocol):
    """A mapper whose raw records may name a person: ``person_of(record)`` is the pseudonym
    of the person the record is about when it can be read (pure, best effort, never
    raises; None otherwise). The runner seals such a record's dead letter under that
    person's key, so erasing the person erases the letter too."""

    def person_of(self, record: RawRecord) -> str | None: ...


@dataclass
class Batch:
    """Records read in one poll, with the cursor to commit once they are all in the log."""

    records: Sequence[RawRecord]
    cursor: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
