"""An encounter form → the facts the hub appends for it (pure: no I/O, the clock and the
resolved keys are arguments).

One revision of a form (revision 0: the submission; 1, 2, ...: its amendments) becomes:

- ``encounter.clinician.engaged`` (the submission only: it puts the incident in the
  program's care) and ``encounter.person.identified`` (when the person is first identified,
  demographics and identifiers sealed with the person's key);
- ``consent.granted`` when the revision captures a consent it did not capture before;
- ``encounter.intake.recorded`` — the form itself: mode, on-scene outcome, use of force,
  services offered, the county-defined fields, and the note sealed (with the fields the
  county declared sensitive);
- ``referral.requested`` when a referral is requested for the first time, built by
  :func:`connectors.referrals.request.referral_request` (the same request the
  case-management connectors make), so the delivery workers send it to the EHR; a Part 2
  referral without a covering consent is held by them.

The facts come in two batches (:class:`IntakeFacts`): ``first`` (engagement, person,
consent) is appended before ``then`` (the form record, the referral), so a consent is in
the log before the referral it covers.

Event ids are deterministic in (source ``intake/<program>``, submission id, revision), so
appending a revision twice appends it once. A person's identifiers never appear outside a
sealed payload: the pseudonym is their keyed HMAC (:func:`hub.kernel.identity.pseudonymize`,
the same issuer/identifier pairs the case connectors use), and the form's digest — which
tells a retry from a different form with the same id — is keyed too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.intake.form import EncounterForm, FieldError, FormBody, FormInvalid
from connectors.referrals.request import referral_request
from hub.kernel.crypto import Keyring, seal, seal_context
from hub.kernel.identity import pseudonymize
from hub.kernel.settings import IntakeDestination
from schemas.consent import ConsentGranted, Scope
from schemas.encounter import ClinicianEngaged, IntakeRecorded, PersonIdentified
from schemas.envelope import Envelope, deterministic_id, new_event

SOURCE_PREFIX = "intake/"


def intake_source(program: str) -> str:
    """The envelope source of a program's intake facts (part of every event id)."""
    return SOURCE_PREFIX + program


@dataclass(frozen=True)
class Submitter:
    """Who submits: the token's program and subject (a staff id, not PHI)."""

    program: str
    clinician_id: str


@dataclass(frozen=True)
class Earlier:
    """What earlier revisions of the submission already appended (all ``None`` for a
    submission): the person identified, the referral requested, the consent captured (its
    keyed digest)."""

    person: str | None = None
    referral_id: str | None = None
    consent_id: str | None = None
    consent_digest: str | None = None


@dataclass
class IntakeFacts:
    """The envelopes of one revision, in two batches (see the module docstring), and what
    the submission index records about it."""

    first: list[Envelope] = field(default_factory=list)
    then: list[Envelope] = field(default_factory=list)
    person: str | None = None
    referral_id: str | None = None
    consent_id: str | None = None
    consent_digest: str | None = None
    record: IntakeRecorded | None = None

    @property
    def envelopes(self) -> list[Envelope]:
        return [*self.first, *self.then]


def person_pseudonym(pseudonym_key: bytes, form: FormBody) -> str | None:
    """The pseudonym of the form's person (None when no person was identified)."""
    if form.person is None:
        return None
    return pseudonymize(pseudonym_key, form.person.system, form.person.identifier)


def keyed_digest(pseudonym_key: bytes, value: Any) -> str:
    """HMAC-SHA256 of ``value``'s canonical JSON under the pseudonym key: equal for equal
    content, and no guessed form content can be confirmed without the key."""
    canon = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hmac.new(pseudonym_key, b"hub-intake-v1\x1f" + canon, hashlib.sha256).hexdigest()


def form_digest(pseudonym_key: bytes, form: FormBody) -> str:
    """The keyed digest of a whole form (a submission or an amendment)."""
    return keyed_digest(pseudonym_key, form.model_dump(mode="json"))


def seal_subject(pseudonym_key: bytes, form: FormBody, incident_id: str, earlier: Earlier) -> str:
    """Whose key seals this revision's note: the person's, else the incident's."""
    return earlier.person or person_pseudonym(pseudonym_key, form) or incident_id


def persons_to_seal(pseudonym_key: bytes, form: FormBody, incident_id: str, earlier: Earlier) -> list[str]:
    """The key subjects :func:`intake_facts` seals for (resolve them first)."""
    return sorted({seal_subject(pseudonym_key, form, incident_id, earlier)})


def derived_id(kind: str, source: str, record_id: str, revision: int) -> str:
    """A referral or consent id made by one revision of a form."""
    return f"{kind}-{deterministic_id(source, record_id, revision, kind)}"


def intake_facts(
    form: FormBody,
    *,
    record_id: str,
    submission_id: str,
    incident_id: str,
    revision: int,
    submitter: Submitter,
    earlier: Earlier,
    pseudonym_key: bytes,
    keys: Keyring,
    destinations: Mapping[str, IntakeDestination],
    now: datetime,
    reason: str | None = None,
    sensitive: frozenset[str] = frozenset(),
) -> IntakeFacts:
    """The facts of revision ``revision`` of a checked form (:func:`connectors.intake.form.check_form`);
    ``record_id`` is the client-generated id of the revision (the submission's or the
    amendment's), which with the source makes the event ids. Raises :class:`FormInvalid`
    when an amendment names another person than the submission. The custom fields named in
    ``sensitive`` are sealed with the note (under ``custom``), the others recorded in clear."""
    source = intake_source(submitter.program)
    at = form.encounter_at
    out = IntakeFacts()

    def event(data: Any, of: str = record_id) -> Envelope:
        return new_event(data, source=source, record_id=of, revision=revision, recorded_at=now)

    person = person_pseudonym(pseudonym_key, form)
    if earlier.person is not None and person is not None and person != earlier.person:
        raise FormInvalid(
            [FieldError("person", "an amendment cannot change the identified person (ask an administrator)")]
        )
    if revision == 0 and isinstance(form, EncounterForm):
        out.first.append(
            event(
                ClinicianEngaged(
                    incident_id=incident_id,
                    at=at,
                    clinician_id=submitter.clinician_id,
                    program=submitter.program,
                    mode=form.mode,
                )
            )
        )
    if person is not None and earlier.person is None and form.person is not None:
        p = form.person
        demographics = {
            "system": p.system,
            "identifier": p.identifier,
            **{
                k: v
                for k, v in p.model_dump(mode="json").items()
                if k not in ("system", "identifier", "role")
            },
        }
        out.first.append(
            event(
                PersonIdentified(
                    incident_id=incident_id,
                    at=at,
                    person=person,
                    role=p.role,
                    demographics=seal(
                        keys,
                        person,
                        demographics,
                        context=seal_context(source, record_id, revision, "demographics"),
                    ),
                )
            )
        )
    person = earlier.person or person
    out.person = person
    out.consent_id, out.consent_digest = earlier.consent_id, earlier.consent_digest
    if form.consent is not None and person is not None:
        digest = keyed_digest(pseudonym_key, form.consent.model_dump(mode="json"))
        if digest != earlier.consent_digest:
            consent_id = derived_id("consent", source, record_id, revision)
            scope: tuple[Scope, ...] = (
                *(("general",) if form.consent.general else ()),
                *(("part2",) if form.consent.part2 else ()),
            )
            out.first.append(
                event(
                    ConsentGranted(
                        consent_id=consent_id,
                        person=person,
                        at=min(at, now),
                        recipients=form.consent.recipients,
                        scope=scope,
                        purpose="treatment",
                        expires_at=form.consent.expires_at,
                    ),
                    of=consent_id,
                )
            )
            out.consent_id, out.consent_digest = consent_id, digest
    out.referral_id = earlier.referral_id
    referral_env: Envelope | None = None
    if form.referral is not None and person is not None and earlier.referral_id is None:
        r = form.referral
        referral_id = derived_id("referral", source, record_id, revision)
        gender = form.person.gender if form.person is not None else None
        birth_date = form.person.birth_date if form.person is not None else None
        referral_env = event(
            referral_request(
                keys,
                referral_id=referral_id,
                person=person,
                at=r.requested_at or now,
                incident_id=incident_id,
                destination=r.destination,
                channel=destinations[r.destination].channel,
                service_type=r.service_type,
                priority=r.urgency,
                substance_use=r.substance_use,
                requester=submitter.program,
                reason=r.reason,
                context=seal_context(source, referral_id, revision, "reason"),
                gender=gender,
                birth_date=birth_date,
            ),
            of=referral_id,
        )
        out.referral_id = referral_id
    sealed: dict[str, Any] = {}
    if form.note:
        sealed["note"] = form.note
    if reason:
        sealed["amendment_reason"] = reason
    hidden = {k: v for k, v in form.custom.items() if k in sensitive}
    if hidden:
        sealed["custom"] = hidden
    subject = seal_subject(pseudonym_key, form, incident_id, earlier)
    record = IntakeRecorded(
        incident_id=incident_id,
        at=at,
        submission_id=submission_id,
        revision=revision,
        program=submitter.program,
        clinician_id=submitter.clinician_id,
        mode=form.mode,
        outcome=form.outcome,
        use_of_force=form.use_of_force,
        services_offered=form.services_offered,
        person=person,
        referral_ids=(out.referral_id,) if out.referral_id else (),
        consent_ids=(out.consent_id,) if out.consent_id else (),
        officer_released_at=form.officer_released_at,
        note=seal(keys, subject, sealed, context=seal_context(source, record_id, revision, "note"))
        if sealed
        else None,
        custom={k: v for k, v in form.custom.items() if k not in sensitive},
    )
    out.record = record
    out.then.append(event(record))
    if referral_env is not None:
        out.then.append(referral_env)
    return out
