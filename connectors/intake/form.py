"""The co-responder's encounter form as the intake receives it (pure: models and checks).

:class:`EncounterForm` is the body of ``POST /v1/intake/encounters``; an amendment
(:class:`AmendmentForm`) carries the whole corrected form plus its own client-generated id
and a reason. Checks come in two steps, both answering field-level messages that name the
field and the rule and never quote a value (the form carries identifiers and clinical
text):

1. shape — :func:`parse_form` / :func:`parse_amendment` validate the JSON against the
   models (types, vocabularies, lengths, cross-field rules such as "a referral needs an
   identified person");
2. configuration — :func:`check_form` checks the form against the county's
   :class:`~hub.kernel.settings.IntakeSettings` (known destinations, identifier issuers and
   services; a consent's recipients must be configured destinations) and its custom field
   declarations (``custom.<field>``: declared for the intake, a value of its type).

Invariant: a form that passes both is mapped to facts (:mod:`connectors.intake.mapping`)
without further checks, so everything the intake refuses is refused before anything is
appended.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from hub.kernel.custom_fields import EMPTY, Definitions
from hub.kernel.errors import PermanentError
from hub.kernel.settings import IntakeSettings
from schemas.base import CustomFieldName, CustomValue, IncidentId, Outcome
from schemas.demographics import AgeBand, Ethnicity, Race
from schemas.encounter import EncounterMode, ServiceName, UseOfForce
from schemas.referral import Priority

PersonRole = Literal["subject", "caller", "family", "other"]
Gender = Literal["male", "female", "other", "unknown"]

#: pydantic's error type for a rule written by this module's validators (they never quote values)
_CUSTOM = "value_error"
#: how far in the future a clinician's clock may put the encounter
_SKEW = timedelta(minutes=5)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class PersonIn(_Model):
    """Who the call was about: the identifier the pseudonym is made from (``system``: its
    issuer, e.g. the county master person index) and what the form may add about them.
    Everything here is PHI: it is only ever sealed, never stored or logged in clear."""

    system: str = Field(min_length=1, max_length=100)
    identifier: str = Field(min_length=1, max_length=100)
    role: PersonRole = "subject"
    given_name: str | None = Field(None, max_length=100)
    family_name: str | None = Field(None, max_length=100)
    birth_date: date | None = None
    gender: Gender | None = None
    #: OMB race category (``multiple``: more than one), ethnicity, and the age band when the
    #: birth date is not known (the report computes it from ``birth_date`` when given)
    race: Race | None = None
    ethnicity: Ethnicity | None = None
    age_band: AgeBand | None = None

    @model_validator(mode="after")
    def _birth_date_past(self) -> PersonIn:
        if self.birth_date is not None and self.birth_date > datetime.now(UTC).date():
            raise ValueError("birth_date: must not be in the future")
        return self


class ReferralIn(_Model):
    """The referral the team requests: to a configured EHR destination."""

    destination: str = Field(min_length=1, max_length=100)
    service_type: ServiceName
    urgency: Priority = "routine"
    reason: str = Field(min_length=1, max_length=4000)
    substance_use: bool = False  # a 42 CFR Part 2 record: disclosed only under consent
    #: when the team asked for it (default: when the form is submitted)
    requested_at: AwareDatetime | None = None


class ConsentIn(_Model):
    """Consent captured on scene: ``general`` disclosure and/or ``part2`` (42 CFR Part 2),
    to the named destinations, until ``expires_at`` (None: until revoked)."""

    general: bool = False
    part2: bool = False
    recipients: tuple[str, ...] = Field(default=(), max_length=20)
    expires_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _meaningful(self) -> ConsentIn:
        if not (self.general or self.part2):
            raise ValueError("consent: tick general and/or 42 CFR Part 2, or leave consent out")
        if not self.recipients:
            raise ValueError("consent.recipients: name at least one destination the consent covers")
        if self.expires_at is not None and self.expires_at <= datetime.now(UTC):
            raise ValueError("consent.expires_at: must be in the future")
        return self


class FormBody(_Model):
    """What an encounter form says (shared by a submission and an amendment)."""

    encounter_at: AwareDatetime
    mode: EncounterMode
    outcome: Outcome
    use_of_force: UseOfForce
    services_offered: tuple[ServiceName, ...] = Field(default=(), max_length=20)
    person: PersonIn | None = None
    referral: ReferralIn | None = None
    consent: ConsentIn | None = None
    officer_released_at: AwareDatetime | None = None
    note: str | None = Field(None, max_length=8000)
    #: the county-defined fields of the form (declared with ``intake`` among their sources:
    #: :mod:`hub.kernel.custom_fields`), field → value (text of an enum, a whole number,
    #: true/false, a date as YYYY-MM-DD); checked against the declarations by :func:`check_form`
    custom: dict[CustomFieldName, CustomValue] = Field(default_factory=dict, max_length=50)

    @model_validator(mode="after")
    def _cross_field(self) -> FormBody:
        if self.encounter_at > datetime.now(UTC) + _SKEW:
            raise ValueError("encounter_at: must not be in the future")
        if self.referral is not None and self.person is None:
            raise ValueError("referral: a referral needs the person identified")
        if self.consent is not None and self.person is None:
            raise ValueError("consent: a consent needs the person identified")
        requested = self.referral.requested_at if self.referral is not None else None
        if requested is not None and requested > datetime.now(UTC) + _SKEW:
            raise ValueError("referral.requested_at: must not be in the future")
        if self.officer_released_at is not None and self.officer_released_at < self.encounter_at:
            raise ValueError("officer_released_at: must not be before encounter_at")
        if len(set(self.services_offered)) != len(self.services_offered):
            raise ValueError("services_offered: each service once")
        return self


class EncounterForm(FormBody):
    """``POST /v1/intake/encounters``: a new form. ``submission_id`` is generated by the
    client (a UUID) so that a retry or a double click is recognised: the intake appends a
    submission once."""

    submission_id: uuid.UUID
    incident_id: IncidentId


class AmendmentForm(FormBody):
    """``POST /v1/intake/encounters/{submission_id}/amendments``: the corrected form (all of
    it) with its own client-generated id and why it was amended (sealed). The incident and
    the identified person of a submission cannot be changed by an amendment."""

    amendment_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=2000)


@dataclass(frozen=True)
class FieldError:
    """One refusal: the field (dotted path, as the form names it) and the rule it broke."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class FormInvalid(PermanentError, ValueError):
    """The form was refused: one :class:`FieldError` per problem (no values quoted)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


def field_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic's errors as :class:`FieldError` s, without inputs. A rule written by one of
    this module's validators starts with its field (``"referral: ..."``) and is split."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"])
        message = str(err["msg"])
        if err["type"] == _CUSTOM:
            message = message.removeprefix("Value error, ")
            head, sep, rest = message.partition(": ")
            if sep and " " not in head:
                where = ".".join(p for p in (where, head) if p) if not head.startswith(where) else head
                message = rest
        if err["loc"][:1] == ("custom",) and len(err["loc"]) >= 2:  # a county field: one message each
            name = str(err["loc"][1])
            key = err["loc"][2:3] == ("[key]",)
            where = "custom" if key else f"custom.{name}"
            message = ("field names are lower-case letters, digits and _" if key
                       else "must be text, a whole number, true/false or a date (YYYY-MM-DD)")
            if any(e.field == where and e.message == message for e in out):
                continue
        out.append(FieldError(where or "<form>", message))
    return out


def _parse(model: type[_Model], body: Any) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise FormInvalid(field_errors(exc)) from None


def parse_form(body: Any) -> EncounterForm:
    """The submitted JSON as an :class:`EncounterForm`, or :class:`FormInvalid`."""
    form: EncounterForm = _parse(EncounterForm, body)
    return form


def parse_amendment(body: Any) -> AmendmentForm:
    """The amendment JSON as an :class:`AmendmentForm`, or :class:`FormInvalid`."""
    form: AmendmentForm = _parse(AmendmentForm, body)
    return form


def check_form(form: FormBody, options: IntakeSettings, custom: Definitions = EMPTY) -> list[FieldError]:
    """The problems of ``form`` against the county's intake configuration and custom field
    declarations (pure)."""
    errors: list[FieldError] = []
    declared = custom.from_source("intake")
    for name, value in sorted(form.custom.items()):
        field = declared.get(name)
        if field is None:
            errors.append(FieldError(f"custom.{name}", "not a custom field declared for the intake"))
        elif (problem := field.check(value)) is not None:
            errors.append(FieldError(f"custom.{name}", problem))
    if form.person is not None and form.person.system not in options.person_systems:
        errors.append(FieldError("person.system", "not one of the configured identifier issuers"))
    unknown = [s for s in form.services_offered if s not in options.services]
    if unknown:
        errors.append(FieldError("services_offered", "not a configured service"))
    if form.referral is not None:
        if form.referral.destination not in options.destinations:
            errors.append(FieldError("referral.destination", "not a configured EHR destination"))
        if form.referral.service_type not in options.services:
            errors.append(FieldError("referral.service_type", "not a configured service"))
    if form.consent is not None and any(r not in options.destinations for r in form.consent.recipients):
        errors.append(
            FieldError("consent.recipients", "every recipient must be a configured EHR destination")
        )
    return errors


def validated(form: FormBody, options: IntakeSettings, custom: Definitions = EMPTY) -> None:
    """Raise :class:`FormInvalid` when :func:`check_form` finds problems."""
    errors = check_form(form, options, custom)
    if errors:
        raise FormInvalid(errors)
