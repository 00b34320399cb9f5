"""The county model through the hub's pure mapping code, without services: the envelopes
the demo's connectors would append, for checks of what the demo will report.

- :func:`cad_envelopes` — each call's latest published version as an SF-style API row,
  mapped by the CAD mapper with the demo county's profile (malformed rows are what the
  connector dead-letters, so they give no events);
- :func:`case_envelopes` — the case-system records through the case mapper;
- :func:`encounter_events` (re-exported) — the co-responder app's facts and requests;
- :func:`referral_outcome_envelopes` — what delivery and the EHR would add, under a
  stated assumption (the EHR simulator's declines and timing are random and live, so a
  pure check brackets them: ``"none"`` = no answer at all, ``"complete"`` = every
  deliverable referral completed — with no separate "accepted" for every other one, as
  when a poll misses it). Part 2 referrals (substance use) are held for consent, as the
  consent gate does when no consent is on record.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

from connectors.cad.mapping import CadMapper
from connectors.cad.profile import Profile
from connectors.cases.mapping import CaseMapper
from connectors.core.records import Mapped, RawRecord
from connectors.referrals.answers import AnswerKind, answer_event, delivered_event, held_event
from hub.devtools.simulate.feeds import encounter_events, soql_row
from hub.devtools.simulate.model import County
from hub.kernel.crypto import Keyring
from schemas.envelope import Envelope
from schemas.referral import ReferralRequested

__all__ = [
    "cad_envelopes",
    "case_envelopes",
    "county_envelopes",
    "encounter_events",
    "referral_outcome_envelopes",
]

Answers = Literal["none", "complete"]


def _mapped(result: Any) -> tuple[Envelope, ...]:
    return result.events if isinstance(result, Mapped) else ()


def cad_envelopes(county: County, profile: Profile) -> list[Envelope]:
    """The CAD connector's events for every call (its latest version, as the demo's feed
    serves it; one version per call, so no revisions)."""
    mapper = CadMapper(profile)
    out: list[Envelope] = []
    for call in county.calls:
        row = soql_row(call.latest(), county.timezone)
        out += _mapped(mapper.map(RawRecord(ref=call.cad_number, raw=b"", fields=row)))
    return out


def case_envelopes(
    county: County,
    pseudonym_key: bytes,
    keyring: Keyring | None = None,
    *,
    source: str = "cases/county-cases",
    namespace: str = "mpi:county",
) -> list[Envelope]:
    """The case connector's events for every case record."""
    mapper = CaseMapper(
        source, pseudonym_key, keyring, default_namespace=namespace, default_agency=county.agency
    )
    out: list[Envelope] = []
    for rec in county.case_records:
        out += _mapped(mapper.map(RawRecord(ref=str(rec["record_id"]), raw=b"", fields=dict(rec))))
    return out


def referral_outcome_envelopes(requests: Iterable[Envelope], answers: Answers) -> list[Envelope]:
    """Delivery outcomes and EHR answers for the referral requests among ``requests``
    under the assumption ``answers`` (see the module docstring); times are the request's
    plus minutes, deterministic."""
    if answers == "none":
        return []
    out: list[Envelope] = []
    n = 0
    for env in requests:
        req = env.current().payload()
        if not isinstance(req, ReferralRequested):
            continue
        n += 1
        if req.substance_use:
            out.append(
                held_event(req, request_event_id=env.id, at=req.at, reason="no consent on record", hold_seq=1)
            )
            continue
        delivered = req.at + timedelta(minutes=1)
        out.append(
            delivered_event(
                req, request_event_id=env.id, at=delivered, remote_id=None, ack_code="AA", attempts=1
            )
        )
        kinds: tuple[AnswerKind, ...] = (
            ("accepted", "completed") if n % 2 else ("completed",)  # every other poll misses "accepted"
        )
        for i, kind in enumerate(kinds, start=1):
            out.append(
                answer_event(
                    kind,
                    referral_id=req.referral_id,
                    person=req.person,
                    destination=req.destination,
                    at=delivered + timedelta(hours=i),
                    remote_id=None,
                    source_status=kind,
                    causation_id=env.id,
                )
            )
    return out


def county_envelopes(
    county: County,
    profile: Profile,
    pseudonym_key: bytes,
    keyring: Keyring | None = None,
    *,
    answers: Answers = "none",
) -> list[Envelope]:
    """Every envelope the demo appends for ``county`` (CAD, case system, co-responder
    app) plus delivery and EHR answers under ``answers``."""
    team = encounter_events(county, pseudonym_key, keyring)
    return [
        *cad_envelopes(county, profile),
        *case_envelopes(county, pseudonym_key, keyring),
        *team,
        *referral_outcome_envelopes(team, answers),
    ]
