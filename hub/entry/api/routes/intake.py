"""The encounter intake: co-responders (roles clinician and case_manager, with a program
claim) submit and amend encounter forms and find the CAD incident to link them to.

- ``GET /v1/intake/options`` — what the form offers: the configured EHR destinations,
  identifier issuers and services, the vocabularies (modes, outcomes, use of force) and the
  county's custom fields (name, type, label, allowed values or range, sensitive);
- ``GET /v1/intake/incidents`` — imported CAD incidents by incident number, date and area
  (CAD attributes only, no persons);
- ``POST /v1/intake/encounters`` — a form: 201 with the receipt; the same
  ``submission_id`` and content again: 200 with the first receipt (``duplicate``, nothing
  appended); other content under a used id: 409; field errors: 422 with one message per
  field (never quoting a value); an unknown incident: 422 on ``incident_id``;
- ``POST /v1/intake/encounters/{submission_id}/amendments`` — an amendment (the corrected
  form): 201, a repeat 200, another program's form 403, an unknown form 404.

A submission is appended to the log before anything acts on it (:mod:`connectors.intake.service`);
the receipt says whether a requested referral goes out or is held for consent (42 CFR Part 2).
An outage answers 503 with ``Retry-After``: the form keeps its draft and retries.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from connectors.intake.form import FieldError, FormInvalid, parse_amendment, parse_form
from connectors.intake.mapping import Submitter
from connectors.intake.service import (
    IntakeService,
    NotYourSubmission,
    Receipt,
    SubmissionConflict,
    UnknownSubmission,
)
from hub.entry.api.deps import From, ReadModelsDep, State, To, requires
from hub.entry.api.roles import Family, Principal
from hub.kernel.crypto import KeyDestroyedError
from hub.kernel.errors import TransientError
from projections.queries import jsonable
from schemas.base import OUTCOMES
from schemas.encounter import ENCOUNTER_MODES, USE_OF_FORCE
from schemas.referral import Priority

router = APIRouter(tags=["intake"])

Clinician = Annotated[Principal, Depends(requires(Family.INTAKE))]
SUBMISSION_PATTERN = r"^[0-9a-fA-F-]{36}$"
RETRY_AFTER_SECONDS = 5


def intake_service(state: State) -> IntakeService:
    """The process's intake (the routes are only mounted when there is one)."""
    if state.intake is None:  # pragma: no cover - not mounted without it
        raise RuntimeError("the intake is not configured")
    return state.intake


Intake = Annotated[IntakeService, Depends(intake_service)]


def _invalid(errors: list[FieldError]) -> JSONResponse:
    return JSONResponse(
        {"detail": "the form has errors", "errors": [e.as_dict() for e in errors]}, status_code=422
    )


async def _body(request: Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FormInvalid([FieldError("<body>", "not a JSON document")]) from None


def _submitter(p: Principal) -> Submitter:
    assert p.program is not None  # requires(Family.INTAKE) refuses a program role without one
    return Submitter(program=p.program, clinician_id=p.sub)


async def _answer(run: Any) -> JSONResponse:
    """Run one submission or amendment and turn its outcome into the documented answer."""
    try:
        receipt: Receipt = await run
    except FormInvalid as exc:
        return _invalid(exc.errors)
    except KeyDestroyedError:
        return _invalid(
            [FieldError("person", "this person's records were erased; nothing can be sealed for them")]
        )
    except SubmissionConflict as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    except NotYourSubmission as exc:
        return JSONResponse({"detail": str(exc)}, status_code=403)
    except UnknownSubmission as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404)
    except TransientError:
        return JSONResponse(
            {"detail": "the hub cannot record forms right now; the form keeps the draft and retries"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return JSONResponse(receipt.as_dict(), status_code=200 if receipt.duplicate else 201)


@router.get("/v1/intake/options")
async def options(p: Clinician, state: State, intake: Intake) -> dict[str, Any]:
    """What the form offers this deployment's co-responders (with the county's custom fields
    declared for the intake, in the order of its definitions file)."""
    cfg = state.settings.intake
    return {
        "program": p.program,
        "sub": p.sub,
        "destinations": [
            {"name": name, "display": d.display, "channel": d.channel}
            for name, d in sorted(cfg.destinations.items())
        ],
        "person_systems": list(cfg.person_systems),
        "services": list(cfg.services),
        "modes": list(ENCOUNTER_MODES),
        "outcomes": list(OUTCOMES),
        "use_of_force": list(USE_OF_FORCE),
        "urgencies": list(get_args(Priority)),
        "custom_fields": [
            {"name": f.name, "type": f.type, "label": f.label, "values": list(f.values), "min": f.minimum,
             "max": f.maximum, "sensitive": f.sensitive}
            for f in intake.custom.from_source("intake").values()
        ],
    }


@router.get("/v1/intake/incidents")
async def incidents(
    _: Clinician,
    read_models: ReadModelsDep,
    q: Annotated[str | None, Query(max_length=64, description="part of the incident number")] = None,
    date_from: From = None,
    date_to: To = None,
    area: Annotated[
        str | None, Query(max_length=64, description="precinct, district, sector or beat")
    ] = None,
    behavioral_health: Annotated[bool | None, Query(alias="bh")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """Imported CAD incidents, newest first (CAD attributes only)."""
    rows = await read_models.search_incidents(
        text=q or None,
        date_from=date_from,
        date_to=date_to,
        area=area or None,
        behavioral_health=behavioral_health,
        limit=limit,
    )
    return {"incidents": jsonable(rows)}


@router.post("/v1/intake/encounters", status_code=201)
async def submit(p: Clinician, intake: Intake, request: Request) -> JSONResponse:
    """Submit an encounter form (idempotent by its ``submission_id``)."""

    async def run() -> Receipt:
        return await intake.submit(parse_form(await _body(request)), _submitter(p))

    return await _answer(run())


@router.post("/v1/intake/encounters/{submission_id}/amendments", status_code=201)
async def amend(
    p: Clinician,
    intake: Intake,
    request: Request,
    submission_id: Annotated[str, Path(pattern=SUBMISSION_PATTERN)],
) -> JSONResponse:
    """Amend a submitted form (idempotent by its ``amendment_id``)."""

    async def run() -> Receipt:
        return await intake.amend(submission_id.lower(), parse_amendment(await _body(request)), _submitter(p))

    return await _answer(run())
