"""Submitting and amending encounter forms: the intake's I/O around the pure form checks
(:mod:`connectors.intake.form`) and mapping (:mod:`connectors.intake.mapping`).

A submission, in order:

1. the submission index (``<core>.intake_submissions``) is asked for the client-generated
   id: a known id with the same content (keyed digest) is a duplicate — answered with the
   first receipt, nothing appended; with other content it is a :class:`SubmissionConflict`;
2. the form is checked against the configuration, the incident must be known
   (``incident_known``: an imported CAD incident), the person's key is resolved;
3. the facts are appended — consent before referral (two appends) — and only then is the
   submission recorded in the index. A crash in between is repaired by the retry: the
   event ids are deterministic, so the log refuses the copies and the index row is written.

Nothing acts on a form before its facts are in the log: the referral is delivered by the
delivery workers from the log, the read models are folded from it.

An amendment is a new revision (its own client-generated id, the next revision number,
taken under a row lock on the submission), appended the same way; only the submitting
program may amend (:class:`NotYourSubmission`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from connectors.intake.form import AmendmentForm, EncounterForm, FieldError, FormBody, FormInvalid, validated
from connectors.intake.mapping import (
    Earlier,
    IntakeFacts,
    Submitter,
    form_digest,
    intake_facts,
    persons_to_seal,
)
from connectors.referrals.consent import Allow, decide
from hub.kernel.crypto import KeyStore
from hub.kernel.custom_fields import EMPTY, Definitions
from hub.kernel.db import MigrationSet, check_schema_name
from hub.kernel.errors import PermanentError, outage_boundary
from hub.kernel.log import EventLog
from hub.kernel.settings import IntakeSettings
from schemas.consent import ConsentGranted
from schemas.referral import ReferralRequested

#: the submission index, in the namespace's core schema
INTAKE_MIGRATIONS = MigrationSet("intake", Path(__file__).resolve().parent / "migrations", "core")

IncidentKnown = Callable[[str], Awaitable[bool]]
ConsentsOf = Callable[[str], Awaitable[Sequence[ConsentGranted]]]


class SubmissionConflict(PermanentError):
    """A client-generated id already names a different form (HTTP 409)."""


class NotYourSubmission(PermanentError):
    """The submission belongs to another program (HTTP 403)."""


class UnknownSubmission(PermanentError):
    """No submission has this id (HTTP 404)."""


@dataclass(frozen=True)
class Receipt:
    """What the intake answers for a submission or an amendment. ``duplicate``: the id was
    known with the same content and nothing was appended."""

    submission_id: str
    incident_id: str
    revision: int
    events: int
    duplicate: bool
    person: str | None
    referral_id: str | None
    referral_status: str | None
    hold_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        referral = (
            None
            if self.referral_id is None
            else {"referral_id": self.referral_id, "status": self.referral_status, "reason": self.hold_reason}
        )
        return {
            "submission_id": self.submission_id,
            "incident_id": self.incident_id,
            "revision": self.revision,
            "events_appended": 0 if self.duplicate else self.events,
            "duplicate": self.duplicate,
            "person": self.person,
            "referral": referral,
        }


def _receipt(
    row: asyncpg.Record, *, duplicate: bool, revision: int | None = None, events: int | None = None
) -> Receipt:
    return Receipt(
        submission_id=row["submission_id"],
        incident_id=row["incident_id"],
        revision=row["revision"] if revision is None else revision,
        events=row["events"] if events is None else events,
        duplicate=duplicate,
        person=row["person"],
        referral_id=row["referral_id"],
        referral_status=row["referral_status"],
    )


@outage_boundary("intake submission index")
class SubmissionIndex:
    """``<core>.intake_submissions`` and ``<core>.intake_amendments``."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = check_schema_name(schema)

    async def submission(
        self, submission_id: str, conn: Any = None, *, lock: bool = False
    ) -> asyncpg.Record | None:
        sql = f"SELECT * FROM {self.schema}.intake_submissions WHERE submission_id = $1"
        return await (conn or self.pool).fetchrow(sql + (" FOR UPDATE" if lock else ""), submission_id)

    async def amendment(self, amendment_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"SELECT * FROM {self.schema}.intake_amendments WHERE amendment_id = $1", amendment_id
        )

    async def record_submission(
        self,
        submission_id: str,
        incident_id: str,
        submitter: Submitter,
        digest: str,
        facts: IntakeFacts,
        status: str | None,
    ) -> bool:
        """Insert the row; False when another request recorded the id first."""
        done = await self.pool.fetchval(
            f"""INSERT INTO {self.schema}.intake_submissions (submission_id, incident_id, program,
                  clinician_id, person, digest, referral_id, referral_status, consent_id, consent_digest,
                  events)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                ON CONFLICT (submission_id) DO NOTHING RETURNING 1""",
            submission_id,
            incident_id,
            submitter.program,
            submitter.clinician_id,
            facts.person,
            digest,
            facts.referral_id,
            status if facts.referral_id else None,
            facts.consent_id,
            facts.consent_digest,
            len(facts.envelopes),
        )
        return bool(done)


class IntakeService:
    """Submit and amend encounter forms (see the module docstring). ``incident_known`` says
    whether an incident was imported; ``consents_of`` gives a person's recorded consents
    (to tell the clinician whether a Part 2 referral will be held)."""

    def __init__(
        self,
        *,
        log: EventLog,
        keystore: KeyStore,
        pseudonym_key: bytes,
        pool: asyncpg.Pool,
        core_schema: str,
        options: IntakeSettings,
        incident_known: IncidentKnown,
        consents_of: ConsentsOf,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        custom: Definitions = EMPTY,
    ) -> None:
        self.log = log
        self.keystore = keystore
        self.pseudonym_key = pseudonym_key
        self.index = SubmissionIndex(pool, core_schema)
        self.pool = pool
        self.options = options
        self.incident_known = incident_known
        self.consents_of = consents_of
        self.clock = clock
        #: the county's custom field declarations the forms are checked against
        self.custom = custom

    async def _facts(
        self,
        form: FormBody,
        *,
        record_id: str,
        submission_id: str,
        incident_id: str,
        revision: int,
        submitter: Submitter,
        earlier: Earlier,
        reason: str | None = None,
    ) -> IntakeFacts:
        keys = await self.keystore.resolve(persons_to_seal(self.pseudonym_key, form, incident_id, earlier))
        return intake_facts(
            form,
            record_id=record_id,
            submission_id=submission_id,
            incident_id=incident_id,
            revision=revision,
            submitter=submitter,
            earlier=earlier,
            pseudonym_key=self.pseudonym_key,
            keys=keys,
            destinations=self.options.destinations,
            now=self.clock(),
            reason=reason,
            sensitive=frozenset(n for n, f in self.custom.fields.items() if f.sensitive),
        )

    async def _append(self, facts: IntakeFacts) -> None:
        """Consent (and the rest of ``first``) before the referral: see the module docstring."""
        if facts.first:
            await self.log.append(facts.first)
        await self.log.append(facts.then)

    async def _gate(self, facts: IntakeFacts) -> tuple[str | None, str | None]:
        """(referral status, hold reason) as the delivery workers' consent gate will decide
        it now (a Part 2 referral without a covering consent is held)."""
        request = next((p for e in facts.then if isinstance(p := e.payload(), ReferralRequested)), None)
        if request is None:
            return None, None
        consents = list(await self.consents_of(request.person)) if request.substance_use else []
        consents += [p for e in facts.first if isinstance(p := e.payload(), ConsentGranted)]
        verdict = decide(request, consents, self.clock())
        return ("requested", None) if isinstance(verdict, Allow) else ("held_for_consent", verdict.reason)

    async def submit(self, form: EncounterForm, submitter: Submitter) -> Receipt:
        submission_id = str(form.submission_id)
        digest = form_digest(self.pseudonym_key, form)
        known = await self._known_submission(submission_id, digest)
        if known is not None:
            return known
        validated(form, self.options, self.custom)
        if not await self.incident_known(form.incident_id):
            raise FormInvalid([FieldError("incident_id", "no CAD incident with this id has been imported")])
        facts = await self._facts(
            form,
            record_id=submission_id,
            submission_id=submission_id,
            incident_id=form.incident_id,
            revision=0,
            submitter=submitter,
            earlier=Earlier(),
        )
        status, hold_reason = await self._gate(facts)
        await self._append(facts)
        if not await self.index.record_submission(
            submission_id, form.incident_id, submitter, digest, facts, status
        ):
            raced = await self._known_submission(submission_id, digest)
            assert raced is not None
            return raced
        return Receipt(
            submission_id,
            form.incident_id,
            0,
            len(facts.envelopes),
            False,
            facts.person,
            facts.referral_id,
            status,
            hold_reason,
        )

    async def _known_submission(self, submission_id: str, digest: str) -> Receipt | None:
        row = await self.index.submission(submission_id)
        if row is None:
            return None
        if row["digest"] != digest:
            raise SubmissionConflict("this submission_id was already used for a different form")
        return _receipt(row, duplicate=True, revision=0)

    async def amend(self, submission_id: str, form: AmendmentForm, submitter: Submitter) -> Receipt:
        amendment_id = str(form.amendment_id)
        digest = form_digest(self.pseudonym_key, form)
        known = await self.index.amendment(amendment_id)
        if known is not None:
            if known["digest"] != digest or known["submission_id"] != submission_id:
                raise SubmissionConflict("this amendment_id was already used for a different amendment")
            row = await self.index.submission(submission_id)
            assert row is not None
            return _receipt(row, duplicate=True, revision=known["revision"], events=known["events"])
        validated(form, self.options, self.custom)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await self.index.submission(submission_id, conn, lock=True)
            if row is None:
                raise UnknownSubmission("no submitted form has this id")
            if row["program"] != submitter.program:
                raise NotYourSubmission("the form was submitted by another program")
            revision = row["revision"] + 1
            earlier = Earlier(row["person"], row["referral_id"], row["consent_id"], row["consent_digest"])
            facts = await self._facts(
                form,
                record_id=amendment_id,
                submission_id=submission_id,
                incident_id=row["incident_id"],
                revision=revision,
                submitter=submitter,
                earlier=earlier,
                reason=form.reason,
            )
            status, hold_reason = row["referral_status"], None  # an earlier revision's referral
            if facts.referral_id != row["referral_id"]:  # this revision requests one
                status, hold_reason = await self._gate(facts)
            await self._append(facts)
            schema = self.index.schema
            await conn.execute(
                f"""INSERT INTO {schema}.intake_amendments (amendment_id, submission_id, revision, digest,
                      clinician_id, events) VALUES ($1, $2, $3, $4, $5, $6)""",
                amendment_id,
                submission_id,
                revision,
                digest,
                submitter.clinician_id,
                len(facts.envelopes),
            )
            await conn.execute(
                f"""UPDATE {schema}.intake_submissions SET revision = $2, person = $3, referral_id = $4,
                      referral_status = $5, consent_id = $6, consent_digest = $7, amended_at = now()
                    WHERE submission_id = $1""",
                submission_id,
                revision,
                facts.person,
                facts.referral_id,
                status,
                facts.consent_id,
                facts.consent_digest,
            )
        return Receipt(
            submission_id,
            row["incident_id"],
            revision,
            len(facts.envelopes),
            False,
            facts.person,
            facts.referral_id,
            status,
            hold_reason,
        )
