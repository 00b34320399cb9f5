"""Dead letters: building them, masking their raw payloads, the operator's index, and
re-driving them after a mapping fix.

A connector that cannot parse, validate or map a record builds a
:class:`schemas.deadletter.DeadLetter` with :func:`build_dead_letter` and hands it (with the
rest of its batch) to :meth:`hub.kernel.log.EventLog.dead_letters`. The raw payload is
sealed under the **person's key** when the connector knows whose record it is
(:class:`PersonRawSealer`: ``hub erase`` then shreds the letter in every copy, like the
person's notes; a person already erased gets a letter without its payload), otherwise with
the hub's dead-letter key (:class:`hub.kernel.keystore.DeadLetterSealer`). :func:`open_raw`
opens either kind and answers ``None`` for an erased person's letter.

Re-driving: a redriver maps one dead letter again, from its raw bytes, and returns the
envelopes the record maps to now, or raises with a human-readable reason. The caller hands
:func:`redrive` a *registry* mapping a source (``cad/seattle``), ``<family>/<profile>``,
profile or source family to its redriver (:func:`find_redriver`; the hub's own is
:data:`connectors.registry.REDRIVERS` — this kernel module never imports connectors). A
redriver that needs runtime resources declares them as keyword-only parameters: ``keyring``
(the per-person keyring, to seal clinical fields such as contact notes with the person's
key), ``pseudonym_key``, ``pool`` and ``settings`` (e.g. to look up the recorded profile a
CAD record was rejected with); :func:`redrive` passes exactly those it declares (see
:data:`REDRIVE_RESOURCES`). Because event ids are deterministic, appending the re-driven
envelopes goes through the exactly-once index: a record re-driven twice (or re-read from
its feed in the meantime) is appended once. A success marks the dead letter ``redriven``; a
failure keeps it ``open`` with the new reason and an attempt count. An outage while
re-driving (:func:`hub.kernel.errors.is_retriable`) is not a failure of the letter: it
propagates and the letter is left as it was.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import inspect
import re
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
from pydantic import ValidationError

from hub.kernel.audit import AuditTopic, append_audit_row
from hub.kernel.crypto import KeyDestroyedError, KeyNotResolved, Keyring, KeyStore, seal, unseal
from hub.kernel.errors import PermanentError, is_retriable
from hub.kernel.keystore import DeadLetterSealer
from schemas.base import Sealed
from schemas.deadletter import DeadLetter, SourceFamily, Stage, deadletter_id
from schemas.envelope import Envelope

Redriver = Callable[..., Sequence[Envelope] | Awaitable[Sequence[Envelope]]]
"""``fn(dl, raw, *, keyring=..., pseudonym_key=...)``: the keyword-only parameters are optional."""

#: Runtime resources a redriver may ask for by naming a keyword-only parameter, and the
#: :class:`hub.kernel.runtime.Runtime` attribute each comes from.
REDRIVE_RESOURCES = {
    "keyring": "keyring",
    "pseudonym_key": "pseudonym_key",
    "pool": "pool",
    "settings": "settings",
}

STATUSES = ("open", "redriven")


def redriver_keys(dl: DeadLetter) -> list[str]:
    """The registry keys a dead letter's redriver is looked up under, most specific first:
    its source, ``<family>/<profile name>``, the profile name, its source family."""
    keys = [dl.source]
    if dl.profile_name:
        keys += [f"{dl.source_family}/{dl.profile_name}", dl.profile_name]
    keys.append(dl.source_family)
    return keys


def redriver_kwargs(fn: Redriver, rt: Any) -> dict[str, Any]:
    """The runtime resources ``fn`` declares as keyword-only parameters (see
    :data:`REDRIVE_RESOURCES`), taken from ``rt``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a callable without an inspectable signature
        return {}
    return {
        name: getattr(rt, attr)
        for name, attr in REDRIVE_RESOURCES.items()
        if name in params and params[name].kind is inspect.Parameter.KEYWORD_ONLY
    }


def find_redriver(dl: DeadLetter, registry: Mapping[str, Redriver]) -> Redriver | None:
    """The redriver of ``registry`` under the first of :func:`redriver_keys` it has."""
    return next((registry[k] for k in redriver_keys(dl) if k in registry), None)


class ValueFreeError(PermanentError, ValueError):
    """An error whose message the hub composed from field names and rules only, never from
    input values: :func:`describe_error` may show its message in a dead-letter reason."""


_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# pydantic error types whose message a custom validator wrote (it may quote the input)
_CUSTOM_ERROR_TYPES = frozenset({"value_error", "assertion_error"})
_CUSTOM_RULE = "rejected by a validator (message withheld: it may quote the input)"


def _where(exc: BaseException) -> str:
    """``path:line`` of the innermost project frame that raised ``exc`` (no values)."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    for fs in reversed(frames):
        path = Path(fs.filename)
        if path.is_relative_to(_PROJECT_ROOT) and ".venv" not in path.parts:
            return f" at {path.relative_to(_PROJECT_ROOT).as_posix()}:{fs.lineno}"
    return f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""


def describe_error(exc: BaseException, limit: int = 500) -> str:
    """A human-readable reason for ``exc`` that names fields, rules and code locations but
    never input values (it ends up in dead letters, HTTP error bodies, events and CLI output).

    - a pydantic :class:`ValidationError` lists ``field: rule`` without the offending input
      (messages written by custom validators are withheld: they may quote it);
    - a :class:`ValueFreeError` keeps its message (composed by the hub without values);
    - any other exception shows only its type and where it was raised: messages of library
      and built-in errors quote their input (``KeyError('Jane Doe')``, ``invalid literal …:
      '1984-07-19'``), so they are never copied.
    """
    if isinstance(exc, ValidationError):
        parts = [
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: "
            + (_CUSTOM_RULE if e["type"] in _CUSTOM_ERROR_TYPES else e["msg"])
            for e in exc.errors(include_input=False, include_url=False, include_context=False)
        ]
        text = "invalid event: " + "; ".join(parts)
    elif isinstance(exc, ValueFreeError):
        text = f"{exc}"
    else:
        text = f"{type(exc).__name__}{_where(exc)} (message withheld: it may quote input values)"
    return text[:limit]


def describe_failure(exc: BaseException, limit: int = 300) -> str:
    """For operational failures (a feed unreachable, a broker down, a bad configuration):
    ``Type: message``, except that a pydantic :class:`ValidationError` (whose text embeds
    the input it rejected) is described by :func:`describe_error`. Not for errors about one
    input record: those use :func:`describe_error`."""
    if isinstance(exc, ValidationError):
        return describe_error(exc, limit)
    return f"{type(exc).__name__}: {exc}"[:limit]


class RawSealer(Protocol):
    """Seals a dead letter's raw bytes (:class:`DeadLetterSealer`, :class:`PersonRawSealer`)."""

    def seal(self, raw: bytes) -> Sealed: ...


class PersonRawSealer:
    """Seals raw bytes under one person's data key (from a resolved snapshot, no I/O):
    erasing the person shreds the dead letter too. :class:`KeyDestroyedError` when the
    person is already erased."""

    def __init__(self, keys: Keyring, person: str) -> None:
        self.keys = keys
        self.person = person

    def seal(self, raw: bytes) -> Sealed:
        # as DeadLetterSealer: a dead letter's id is over (source, record ref, raw)
        return seal(self.keys, self.person, {"raw": base64.b64encode(raw).decode()}, context="deadletter")


def person_sealer(keys: Keyring, person: str, fallback: RawSealer) -> RawSealer:
    """A :class:`PersonRawSealer` when ``keys`` hold ``person``'s key — live, or destroyed
    (the payload is then dropped) —, else ``fallback`` (a snapshot resolved without creating
    keys, for a pseudonym the hub never keyed: an unverified input never creates one)."""
    try:
        keys.data_key(person, create=True)
    except KeyNotResolved:
        return fallback
    return PersonRawSealer(keys, person)


def build_dead_letter(
    *,
    source: str,
    source_family: SourceFamily,
    record_ref: str,
    stage: Stage,
    reason: str,
    raw: bytes,
    sealer: RawSealer | None,
    profile: str | None = None,
    at: datetime | None = None,
) -> DeadLetter:
    """A dead letter for ``raw``. With a ``sealer`` (the default for every CAD, case and EHR
    input: they may carry PHI) the raw bytes are sealed — under the person's key with a
    :class:`PersonRawSealer`; a person already erased gets no payload at all —;
    ``sealer=None`` stores them clear and is only for inputs known to be PHI-free. The id
    is deterministic over (source, record ref, raw bytes): the same bad record read twice
    is one dead letter."""
    sealed: Sealed | None = None
    if sealer is not None:
        with contextlib.suppress(KeyDestroyedError):
            sealed = sealer.seal(raw)
    return DeadLetter(
        id=deadletter_id(source, record_ref, raw),
        source=source,
        source_family=source_family,
        record_ref=record_ref,
        stage=stage,
        reason=reason,
        profile=profile,
        raw=sealed,
        raw_clear=None if sealer is not None else raw.decode("utf-8", errors="replace"),
        at=at or datetime.now(UTC),
    )


class ErasedPayloadError(PermanentError, LookupError):
    """The dead letter's raw payload belonged to an erased person: it is gone."""


async def open_raw(dl: DeadLetter, sealer: DeadLetterSealer, keystore: KeyStore) -> bytes:
    """The raw bytes of ``dl``: opened with the dead-letter key, or with the person's key
    (looked up in ``keystore``, never created). Raises :class:`ErasedPayloadError` when the
    person was erased (their key destroyed, or erased before the letter was written)."""
    if dl.raw is not None:
        if dl.raw.kid == sealer.kid:
            return sealer.open(dl.raw)
        keys = await keystore.resolve_ids([dl.raw.kid])
        try:
            return base64.b64decode(unseal(keys, dl.raw)["raw"])
        except KeyDestroyedError:
            raise ErasedPayloadError("the person was erased: this dead letter's payload is gone") from None
    if dl.raw_clear is not None:
        return dl.raw_clear.encode("utf-8")
    raise ErasedPayloadError("this dead letter was written without its payload (the person was erased)")


_LETTERS = re.compile(r"[^\W\d_]")
_DIGITS = re.compile(r"\d")


def mask_raw(raw: bytes, limit: int = 2000) -> str:
    """The raw payload's shape without its content: letters become ``x``, digits ``9``;
    punctuation, delimiters and white space stay (so an operator sees a broken quote, a
    missing column or a bad date format without seeing any value)."""
    text = raw.decode("utf-8", errors="replace")
    shown = _DIGITS.sub("9", _LETTERS.sub("x", text[:limit]))
    return shown + (f"… [{len(text) - limit} more characters]" if len(text) > limit else "")


# --------------------------------------------------------------------------- the PG index


@dataclass(frozen=True)
class DeadLetterRow:
    """A dead letter as indexed (the record plus its operational status)."""

    record: DeadLetter
    status: str
    attempts: int
    last_error: str | None
    redriven_at: datetime | None
    redriven_events: int | None
    topic: str | None
    partition: int | None
    offset: int | None

    def summary(self) -> dict[str, Any]:
        """PHI-free fields only (no raw payload)."""
        d = self.record
        return {
            "id": d.id, "source": d.source, "source_family": d.source_family, "profile": d.profile,
            "record_ref": d.record_ref, "stage": d.stage, "reason": d.reason, "at": d.at.isoformat(),
            "status": self.status, "attempts": self.attempts, "last_error": self.last_error,
            "redriven_at": self.redriven_at.isoformat() if self.redriven_at else None,
            "redriven_events": self.redriven_events, "sealed": d.raw is not None,
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
        }


def _row(r: asyncpg.Record) -> DeadLetterRow:
    return DeadLetterRow(
        record=DeadLetter.model_validate_json(r["record"]),
        status=r["status"], attempts=r["attempts"], last_error=r["last_error"],
        redriven_at=r["redriven_at"], redriven_events=r["redriven_events"],
        topic=r["topic"], partition=r["partition"], offset=r["offset"],
    )


class DeadLetterStore:
    """Queries over ``<core>.deadletters`` and its access log."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    async def list(
        self, *, source: str | None = None, status: str | None = None, limit: int = 1000
    ) -> list[DeadLetterRow]:
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        rows = await self.pool.fetch(
            f"""SELECT * FROM {self.schema}.deadletters
                WHERE ($1::text IS NULL OR source = $1 OR source_family = $1 OR profile = $1
                       OR split_part(profile, '@', 1) = $1)
                  AND ($2::text IS NULL OR status = $2)
                ORDER BY at, id LIMIT $3""",
            source, status, limit,
        )
        return [_row(r) for r in rows]

    async def get(self, dl_id: str) -> DeadLetterRow | None:
        r = await self.pool.fetchrow(f"SELECT * FROM {self.schema}.deadletters WHERE id = $1", dl_id)
        return None if r is None else _row(r)

    async def record_access(
        self, audit: AuditTopic, dl_id: str, actor: str, action: str, reason: str | None = None
    ) -> None:
        """Append one row to the reveal audit (the append-only ``deadletter_access`` table
        and the audit topic ``audit``) before anything is shown."""
        values = {"deadletter_id": dl_id, "actor": actor, "action": action, "reason": reason}
        await append_audit_row(self.pool, audit, self.schema, "deadletter_access", values)

    async def accesses(self, dl_id: str) -> builtins.list[dict[str, Any]]:  # `list` is a method here
        rows = await self.pool.fetch(
            f"SELECT actor, action, reason, at FROM {self.schema}.deadletter_access "
            "WHERE deadletter_id = $1 ORDER BY id",
            dl_id,
        )
        return [dict(r) for r in rows]

    async def mark_redriven(self, dl_id: str, appended: int, duplicates: int) -> None:
        await self.pool.execute(
            f"""UPDATE {self.schema}.deadletters
                SET status = 'redriven', redriven_at = now(), redriven_events = $2,
                    redriven_duplicates = $3, attempts = attempts + 1, last_attempt_at = now(),
                    last_error = NULL
                WHERE id = $1""",
            dl_id, appended, duplicates,
        )

    async def mark_failed(self, dl_id: str, error: str) -> None:
        await self.pool.execute(
            f"""UPDATE {self.schema}.deadletters
                SET attempts = attempts + 1, last_attempt_at = now(), last_error = $2
                WHERE id = $1""",
            dl_id, error[:2000],
        )


# --------------------------------------------------------------------------- re-driving


@dataclass(frozen=True)
class RedriveOutcome:
    id: str
    ok: bool
    appended: int = 0
    duplicates: int = 0
    error: str | None = None


async def redrive(rt: Any, row: DeadLetterRow, registry: Mapping[str, Redriver]) -> RedriveOutcome:
    """Re-drive one open dead letter through its redriver in ``registry`` (``rt`` is a
    :class:`hub.kernel.runtime.Runtime`). Already re-driven letters are left alone."""
    dl = row.record
    store = DeadLetterStore(rt.pool, rt.settings.core_schema)
    if row.status == "redriven":
        return RedriveOutcome(dl.id, True, error="already re-driven")
    fn = find_redriver(dl, registry)
    if fn is None:
        error = f"no redriver registered for {' / '.join(redriver_keys(dl))}"
        await store.mark_failed(dl.id, error)
        return RedriveOutcome(dl.id, False, error=error)
    try:
        raw = await open_raw(dl, rt.deadletter_sealer, rt.keyring)
        produced = fn(dl, raw, **redriver_kwargs(fn, rt))
        envelopes = list(await produced if inspect.isawaitable(produced) else produced)
    except Exception as exc:  # the redriver's reason, kept for the operator (no input values)
        if is_retriable(exc):
            raise  # a service is down, not the letter: no attempt is counted, it stays open
        error = describe_error(exc)
        await store.mark_failed(dl.id, error)
        return RedriveOutcome(dl.id, False, error=error)
    result = await rt.log.append(envelopes)
    await store.mark_redriven(dl.id, len(result.appended), len(result.duplicates))
    return RedriveOutcome(dl.id, True, appended=len(result.appended), duplicates=len(result.duplicates))
