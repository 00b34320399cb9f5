"""What a referral says, in clear, once its sealed ``reason`` is opened — and what the
sender may disclose about the person.

``ReferralRequested.reason`` is :class:`schemas.base.Sealed` under the person's data key;
its clear JSON is :class:`ReferralReason`. Producers of ``referral.requested`` seal
``ReferralReason(...).model_dump(mode="json")`` with :func:`hub.kernel.crypto.seal`. Unknown keys
are ignored so that a producer that adds a field does not break delivery.

:class:`Disclosure` is everything one outbound message may carry: the request itself, its
opened reason, the demographics the destination is allowed to receive and, for a Part 2
record, the consent that permits the disclosure. The builders in
:mod:`connectors.fhir.bundle` and :mod:`connectors.hl7v2.ref_i12` are pure functions of it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.consent import ConsentGranted
from schemas.referral import ReferralRequested

# Business identifier systems shared by the FHIR and HL7 builders (and by the simulator).
HUB_SYSTEM = "urn:coresponder-hub"
PERSON_SYSTEM = f"{HUB_SYSTEM}:person"
REFERRAL_SYSTEM = f"{HUB_SYSTEM}:referral"
TASK_SYSTEM = f"{HUB_SYSTEM}:referral-task"
CONSENT_SYSTEM = f"{HUB_SYSTEM}:consent"
INCIDENT_SYSTEM = f"{HUB_SYSTEM}:incident"
PROVIDER_SYSTEM = f"{HUB_SYSTEM}:provider"
SERVICE_TYPE_SYSTEM = f"{HUB_SYSTEM}:service-type"
HL7_ASSIGNING_AUTHORITY = "COHUB"
#: RF1-6 (EI) is at most 30 characters in HL7 v2.5.1: the id, ``^``, the assigning authority
RF1_6_LIMIT = 30
_HL7_ID_ROOM = RF1_6_LIMIT - 1 - len(HL7_ASSIGNING_AUTHORITY)
_HL7_SPECIAL = re.compile(r"[\\|^&~]")
_HL7_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
#: 42 CFR 2.32(a): the notice that must accompany every disclosure made with the patient's
#: written consent (statement 2, the short form the rule allows). Both channels send it with
#: a Part 2 referral (HL7 v2: an NTE; FHIR: the security labels and the Consent resource).
PART2_NOTICE = "42 CFR part 2 prohibits unauthorized use or disclosure of these records."


def hl7_referral_id(referral_id: str) -> str:
    """The referral's id as HL7 v2 carries it in RF1-6.1 (pure, deterministic).

    The id itself when it fits RF1-6's 30 characters once escaped and survives the round trip
    (no control characters, no surrounding whitespace — receivers strip both); otherwise a
    short form, ``H-`` and 22 base32 characters of its SHA-256 (110 bits: unique among any
    number of referrals a hub will ever send). The delivery ledger keeps the short form with
    the referral (:meth:`connectors.referrals.ledger.Ledger.find_referral`), so the EHR's
    answer naming it is mapped back to the referral.
    """
    escaped = len(referral_id) + 2 * len(_HL7_SPECIAL.findall(referral_id))
    if escaped <= _HL7_ID_ROOM and not _HL7_UNSAFE.search(referral_id) and referral_id == referral_id.strip():
        return referral_id
    digest = base64.b32encode(hashlib.sha256(referral_id.encode("utf-8")).digest()).decode("ascii")
    return "H-" + digest[:_HL7_ID_ROOM - 2]

Gender = Literal["male", "female", "other", "unknown"]
DemographicField = Literal["gender", "birth_date", "birth_year", "postal_code"]


class ReasonCode(BaseModel):
    """A coded reason (ICD-10-CM by default)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9.\-]+$")
    display: str | None = Field(None, max_length=200)
    system: str = "http://hl7.org/fhir/sid/icd-10-cm"


class ReferralReason(BaseModel):
    """The clear content of ``ReferralRequested.reason`` (PHI: only ever in memory or sealed)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    text: str = Field(min_length=1, max_length=4000)
    codes: tuple[ReasonCode, ...] = ()
    note: str | None = Field(None, max_length=4000)
    gender: Gender | None = None
    birth_date: date | None = None
    postal_code: str | None = Field(None, max_length=12)
    occurrence_start: datetime | None = None
    occurrence_end: datetime | None = None


class Endpoint(BaseModel):
    """The two parties of a referral as the receiving system knows them."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=64)
    display: str = Field(min_length=1, max_length=200)


class Disclosure(BaseModel):
    """One referral ready to be rendered for a destination.

    Invariants: ``consent`` is set only for a ``substance_use`` referral (whose consent
    gate allowed it); ``shared_demographics`` names the only demographic fields that may
    leave the hub for this destination — everything else in ``reason`` about the person
    is withheld.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event_id: str
    request: ReferralRequested
    reason: ReferralReason | None
    requester: Endpoint
    performer: Endpoint
    shared_demographics: frozenset[DemographicField] = frozenset()
    consent: ConsentGranted | None = None
    sending_facility: str = "COHUB"

    def birth_date(self) -> date | None:
        """The birth date if (and only if) it may be shared."""
        value = self.demographic("birth_date")
        return value if isinstance(value, date) else None

    def demographic(self, name: DemographicField) -> object | None:
        """The value of one demographic if (and only if) it may be shared."""
        if self.reason is None or name not in self.shared_demographics:
            return None
        if name == "birth_year":
            return self.reason.birth_date.year if self.reason.birth_date else None
        return getattr(self.reason, name)


def sample_disclosures() -> list[Disclosure]:
    """Synthetic referrals covering every branch of the builders (no real data): a bare
    one, and a Part 2 one with every demographic, coded reasons, a note and a consent."""
    at = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
    requester = Endpoint(id="team-1", display="Team 1")
    performer = Endpoint(id="clinic-a", display="Clinic A")
    bare = ReferralRequested(
        referral_id="R-SELF-1", person="psn_" + "0" * 32, at=at, destination="clinic-a",
        channel="fhir", service_type="housing", requester="team-1",
    )
    part2 = ReferralRequested(
        referral_id="R-SELF-2", person="psn_" + "1" * 32, at=at, incident_id="sea:SELF-2",
        destination="clinic-a", channel="hl7v2", service_type="substance_use_treatment",
        priority="urgent", substance_use=True, requester="team-1",
    )
    reason = ReferralReason(
        text="Self-check | reason ^ text & more ~\\ line\nsecond line",
        codes=(ReasonCode(code="F10.20", display="Alcohol dependence"),
               ReasonCode(code="1234", system="http://snomed.info/sct")),
        note="A note", gender="female", birth_date=date(1980, 2, 3), postal_code="98101",
        occurrence_start=at, occurrence_end=datetime(2024, 3, 2, tzinfo=UTC),
    )
    consent = ConsentGranted(
        consent_id="C-SELF-2", person=part2.person, at=datetime(2024, 2, 28, tzinfo=UTC),
        recipients=("clinic-a",), scope=("part2",), expires_at=datetime(2024, 6, 1, tzinfo=UTC),
    )
    return [
        Disclosure(event_id="e" * 32, request=bare, reason=None, requester=requester, performer=performer),
        Disclosure(
            event_id="f" * 32, request=part2, reason=reason, requester=requester, performer=performer,
            shared_demographics=frozenset({"gender", "birth_date", "postal_code"}), consent=consent,
        ),
    ]
