"""Erasing persons (crypto-shredding), the operator's action behind ``hub erase``.

An erasure is a fact first: ``erasure.person.erased.v1`` is appended to the log (who asked,
on what basis, when), then the person's data key is destroyed in the key store, together
with the keys of the CAD incidents the person's case and referral facts link them to
(their sealed remarks and clearance text may name the person): one **rotation**
(:meth:`hub.kernel.keystore.TokenKeyring.destroy_many`) writes their tombstones, moves
every other live key to a new epoch key on the PKCS#11 token and destroys the old one.
From then on every payload sealed for those keys — contact notes, demographics, referral
reasons, EHR answers, their dead letters, the linked calls' free text — is unreadable in
every copy and replay of the log and of the database, while the pseudonymous, non-clinical
facts stay countable for aggregates. Several persons erased in one run share one rotation
(its cost grows with the number of live keys, not of erased ones).

Invariants:
- idempotent: the event id is deterministic over the pseudonym, so erasing twice appends
  one fact; destroying an already destroyed key changes nothing;
- the facts are in the log before the keys are destroyed, so a crash in between leaves an
  erasure on record that a re-run completes (never a silent key loss);
- other processes stop serving the key within their keyring cache TTL (30 s by default);
- finding the linked incidents reads the case and referral families once per run (an
  operator action, rare): a link recorded after the erasure cannot exist (nothing new is
  sealed or linked for an erased person's notes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.kernel.crypto import incident_subject
from hub.kernel.errors import PermanentError
from schemas.envelope import Envelope, new_event
from schemas.erasure import PersonErased

SOURCE = "hub/erasure"
PSEUDONYM = re.compile(r"^psn_[0-9a-f]{32}$")


class ErasureError(PermanentError, ValueError):
    """The request is not a valid erasure (bad pseudonym, empty basis or requester)."""


def erasure_event(person: str, *, basis: str, requested_by: str, at: datetime | None = None) -> Envelope:
    """The ``PersonErased`` envelope of one request (pure). Raises :class:`ErasureError`."""
    if not PSEUDONYM.match(person):
        raise ErasureError("--person must be a pseudonym (psn_ + 32 hex digits), never a clear identifier")
    if not basis.strip():
        raise ErasureError("--basis must say why the person is erased (e.g. a request or court order id)")
    if not requested_by.strip():
        raise ErasureError("--requested-by must name who asked for the erasure")
    data = PersonErased(
        person=person, at=at or datetime.now(UTC), requested_by=requested_by.strip(), basis=basis.strip()
    )
    return new_event(data, source=SOURCE, record_id=person)


@dataclass(frozen=True)
class ErasureResult:
    person: str
    event_id: str
    appended: bool  # False: the erasure was already on record
    key_destroyed: bool  # False: the key was already destroyed
    incident_keys_destroyed: int = 0  # linked incidents whose free-text key this call destroyed

    def as_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "event_id": self.event_id,
            "appended": self.appended,
            "key_destroyed": self.key_destroyed,
            "incident_keys_destroyed": self.incident_keys_destroyed,
        }


async def linked_incidents(rt: Any, persons: Iterable[str]) -> dict[str, set[str]]:
    """Person → the CAD incidents their case and referral facts name (``incident_id``), for
    each of ``persons``, in one read of those families."""
    found: dict[str, set[str]] = {p: set() for p in persons}
    async for logged in rt.log.replay(families=["case", "referral"]):
        env = logged.envelope
        incident = env.data.get("incident_id") if isinstance(env.data, dict) else None
        if not incident:
            continue
        for person in {env.partitionkey, env.data.get("person")}:
            if person in found:
                found[person].add(str(incident))
    return found


async def erase_persons(
    rt: Any, persons: Sequence[str], *, basis: str, requested_by: str
) -> list[ErasureResult]:
    """Append the erasure facts of ``persons`` (one batch), then destroy their keys and the
    free-text keys of their linked incidents in one rotation (``rt`` is a
    :class:`hub.kernel.runtime.Runtime`). One result per person, in order; a person named
    twice is erased once. Raises :class:`ErasureError` for an invalid request before
    anything is written."""
    people = list(dict.fromkeys(persons))
    if not people:
        raise ErasureError("name at least one person (--person)")
    envs = [erasure_event(p, basis=basis, requested_by=requested_by) for p in people]
    appended = await rt.log.append(envs)
    new_ids = {logged.envelope.id for logged in appended.appended}
    incidents = await linked_incidents(rt, people)
    subjects = {incident_subject(i) for found in incidents.values() for i in found}
    changed = await rt.keyring.destroy_many([*people, *sorted(subjects)])
    return [
        ErasureResult(
            person, env.id, env.id in new_ids, changed[person],
            sum(1 for i in incidents[person] if changed[incident_subject(i)]),
        )
        for person, env in zip(people, envs, strict=True)
    ]


async def erase_person(rt: Any, person: str, *, basis: str, requested_by: str) -> ErasureResult:
    """:func:`erase_persons` of one person."""
    [result] = await erase_persons(rt, [person], basis=basis, requested_by=requested_by)
    return result
