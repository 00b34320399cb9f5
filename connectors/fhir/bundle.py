"""Referral → FHIR R4 transaction Bundle (pure: no I/O, no clock, no randomness).

The Bundle follows the closed-loop referral pattern of the HL7 SDOH Clinical Care and BSeR
guides: a ``ServiceRequest`` is the referral, a ``Task`` (``focus`` = the ServiceRequest,
``status`` ``requested``, ``intent`` ``order``) tracks it, the ``Patient`` carries only the
hub's pseudonymous identifier plus the demographics the destination may receive, and a
``Consent`` accompanies a 42 CFR Part 2 disclosure.

Invariants:

- every entry is a *conditional create* (``If-None-Exist`` on a business identifier), and
  every ``fullUrl`` is derived from the referral id, so the same referral always renders to
  the same bytes and a resend never creates a second resource at a conforming server;
- the output validates with ``fhir.resources`` R4B models (wire-compatible with R4 for
  these resources): :func:`build_referral_bundle` refuses to return an invalid Bundle.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

from fhir.resources.R4B.bundle import Bundle

from connectors.referrals.content import (
    CONSENT_SYSTEM,
    INCIDENT_SYSTEM,
    PERSON_SYSTEM,
    PROVIDER_SYSTEM,
    REFERRAL_SYSTEM,
    SERVICE_TYPE_SYSTEM,
    TASK_SYSTEM,
    Disclosure,
    Endpoint,
)
from hub.kernel.errors import PermanentError

_URN_NAMESPACE = uuid.UUID("0b7c2f4e-58a1-5f3e-a6b1-2f1f6c0d9e11")
SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
LOINC = "http://loinc.org"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PURPOSE_OF_USE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


class BundleInvalid(PermanentError, ValueError):
    """The rendered Bundle failed FHIR validation (a bug or an unrenderable referral)."""


def full_url(referral_id: str, resource_type: str) -> str:
    """Stable ``urn:uuid`` of one resource of one referral's Bundle."""
    return f"urn:uuid:{uuid.uuid5(_URN_NAMESPACE, resource_type + chr(31) + referral_id)}"


def search_token(system: str, value: str) -> str:
    """``system|value`` for a FHIR token search, escaped (FHIR ``\\``-escapes, then URL-encoded)."""
    escaped = value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")
    return f"identifier={quote(system, safe=':/')}|{quote(escaped, safe='')}"


def _logical(endpoint: Endpoint) -> dict[str, Any]:
    return {"identifier": {"system": PROVIDER_SYSTEM, "value": endpoint.id}, "display": endpoint.display}


def _entry(
    resource: dict[str, Any], referral_id: str, identifier_system: str, identifier: str
) -> dict[str, Any]:
    rtype = resource["resourceType"]
    return {
        "fullUrl": full_url(referral_id, rtype),
        "resource": resource,
        "request": {
            "method": "POST",
            "url": rtype,
            "ifNoneExist": search_token(identifier_system, identifier),
        },
    }


def _patient(d: Disclosure) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": PERSON_SYSTEM, "value": d.request.person}],
    }
    gender = d.demographic("gender")
    if gender:
        patient["gender"] = gender
    birth = d.birth_date()
    if birth is not None:
        patient["birthDate"] = birth.isoformat()
    else:
        year = d.demographic("birth_year")
        if year is not None:
            patient["birthDate"] = f"{year:04d}"
    postal = d.demographic("postal_code")
    if postal:
        patient["address"] = [{"postalCode": postal}]
    return patient


def _security(d: Disclosure) -> list[dict[str, Any]]:
    if not d.request.substance_use:
        return []
    return [
        {"system": CONFIDENTIALITY, "code": "R", "display": "restricted"},
        {"system": ACT_CODE, "code": "42CFRPart2", "display": "42 CFR Part2"},
        {"system": ACT_CODE, "code": "NORDSCLCD", "display": "no redisclosure without consent directive"},
    ]


def _consent(d: Disclosure) -> dict[str, Any] | None:
    c = d.consent
    if c is None:
        return None
    provision: dict[str, Any] = {
        "type": "permit",
        "actor": [
            {
                "role": {
                    "coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]
                },
                "reference": _logical(d.performer),
            }
        ],
        "purpose": [{"system": PURPOSE_OF_USE, "code": "TREAT", "display": "treatment"}],
    }
    period: dict[str, str] = {"start": c.at.isoformat()}
    if c.expires_at is not None:
        period["end"] = c.expires_at.isoformat()
    provision["period"] = period
    return {
        "resourceType": "Consent",
        "identifier": [{"system": CONSENT_SYSTEM, "value": c.consent_id}],
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": full_url(d.request.referral_id, "Patient")},
        "dateTime": c.at.isoformat(),
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "42CFRPart2"}]},
        "provision": provision,
    }


def _service_request(d: Disclosure, consent_included: bool) -> dict[str, Any]:
    r = d.request
    rid = r.referral_id
    sr: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": REFERRAL_SYSTEM, "value": rid}],
        "status": "active",
        "intent": "order",
        "category": [
            {
                "coding": [{"system": SERVICE_TYPE_SYSTEM, "code": r.service_type}],
                "text": r.service_type.replace("_", " "),
            }
        ],
        "priority": r.priority,
        "code": {
            "coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}],
            "text": f"Referral: {r.service_type.replace('_', ' ')}",
        },
        "subject": {"reference": full_url(rid, "Patient")},
        "authoredOn": r.at.isoformat(),
        "requester": _logical(d.requester),
        "performer": [_logical(d.performer)],
    }
    security = _security(d)
    if security:
        sr["meta"] = {"security": security}
    reason = d.reason
    start = reason.occurrence_start if reason and reason.occurrence_start else r.at
    occurrence: dict[str, str] = {"start": start.isoformat()}
    if reason and reason.occurrence_end and reason.occurrence_end >= start:
        occurrence["end"] = reason.occurrence_end.isoformat()
    sr["occurrencePeriod"] = occurrence
    if reason is not None:
        concept: dict[str, Any] = {"text": reason.text}
        if reason.codes:
            concept["coding"] = [
                {"system": c.system, "code": c.code, **({"display": c.display} if c.display else {})}
                for c in reason.codes
            ]
        sr["reasonCode"] = [concept]
        if reason.note:
            sr["note"] = [{"text": reason.note}]
    supporting: list[dict[str, Any]] = []
    if r.incident_id:
        supporting.append(
            {
                "identifier": {"system": INCIDENT_SYSTEM, "value": r.incident_id},
                "display": "Co-responder crisis encounter",
            }
        )
    if consent_included:
        supporting.append({"reference": full_url(rid, "Consent"), "display": "42 CFR Part 2 consent"})
    if supporting:
        sr["supportingInfo"] = supporting
    return sr


def _task(d: Disclosure) -> dict[str, Any]:
    r = d.request
    rid = r.referral_id
    task: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [{"system": TASK_SYSTEM, "value": rid}],
        "status": "requested",
        "intent": "order",
        "priority": r.priority,
        "code": {
            "coding": [{"system": TASK_CODE, "code": "fulfill", "display": "Fulfill the focal request"}]
        },
        "focus": {"reference": full_url(rid, "ServiceRequest")},
        "for": {"reference": full_url(rid, "Patient")},
        "authoredOn": r.at.isoformat(),
        "requester": _logical(d.requester),
        "owner": _logical(d.performer),
    }
    security = _security(d)
    if security:
        task["meta"] = {"security": security}
    return task


def build_referral_bundle(d: Disclosure) -> dict[str, Any]:
    """The transaction Bundle (JSON form) for one referral; validated before it is returned.

    Raises :class:`BundleInvalid` when fhir.resources refuses it.
    """
    rid = d.request.referral_id
    entries = [_entry(_patient(d), rid, PERSON_SYSTEM, d.request.person)]
    consent = _consent(d)
    if consent is not None and d.consent is not None:
        entries.append(_entry(consent, rid, CONSENT_SYSTEM, d.consent.consent_id))
    entries.append(_entry(_service_request(d, consent is not None), rid, REFERRAL_SYSTEM, rid))
    entries.append(_entry(_task(d), rid, TASK_SYSTEM, rid))
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid5(_URN_NAMESPACE, "Bundle" + chr(31) + rid)),
        "type": "transaction",
        "entry": entries,
    }
    bundle = fhir_strings(bundle)
    validate_bundle(bundle)
    return bundle


#: characters a FHIR ``string`` may not hold (its regex is ``[ \r\n\t\S]+``): the C0
#: controls but tab, CR and LF, and DEL
_NOT_FHIR_STRING = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def fhir_strings(node: Any) -> Any:
    """``node`` with every string cleared of the control characters a FHIR ``string`` may
    not contain (form feed, backspace, … in free text: issue 13, finding 8 — HAPI's validator
    refused such Bundles). A string left empty is dropped (FHIR has no empty strings), and
    so is an element or list left empty by that (a note of control characters only).
    Pure; text without them is returned unchanged."""
    if isinstance(node, str):
        return _NOT_FHIR_STRING.sub("", node)
    if isinstance(node, dict):
        return {k: c for k, v in node.items() if not _emptied(v, c := fhir_strings(v))}
    if isinstance(node, list):
        return [c for v in node if not _emptied(v, c := fhir_strings(v))]
    return node


def _emptied(before: Any, after: Any) -> bool:
    """Whether cleaning left ``after`` empty ("", {} or []) where ``before`` was not."""
    return isinstance(after, str | dict | list) and not after and before != after


def validate_bundle(bundle: dict[str, Any]) -> Bundle:
    """Validate a Bundle's JSON with the R4B models (every entry resource included)."""
    try:
        model = Bundle.model_validate(bundle)
    except Exception as exc:  # pydantic ValidationError or fhir_core errors
        raise BundleInvalid(_short_error(exc)) from exc
    problems = list(required_code_problems(bundle))
    if problems:
        raise BundleInvalid("; ".join(problems[:5]))
    return model


# Required bindings that the models do not enforce (they type codes as strings).
_REQUIRED_CODES: dict[tuple[str, str], frozenset[str]] = {
    ("Bundle", "type"): frozenset(
        {
            "document",
            "message",
            "transaction",
            "transaction-response",
            "batch",
            "batch-response",
            "history",
            "searchset",
            "collection",
        }
    ),
    ("ServiceRequest", "status"): frozenset(
        {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
    ),
    ("ServiceRequest", "intent"): frozenset(
        {
            "proposal",
            "plan",
            "directive",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        }
    ),
    ("ServiceRequest", "priority"): frozenset({"routine", "urgent", "asap", "stat"}),
    ("Task", "status"): frozenset(
        {
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        }
    ),
    ("Task", "intent"): frozenset(
        {
            "unknown",
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        }
    ),
    ("Task", "priority"): frozenset({"routine", "urgent", "asap", "stat"}),
    ("Consent", "status"): frozenset(
        {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
    ),
    ("Patient", "gender"): frozenset({"male", "female", "other", "unknown"}),
}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})


def required_code_problems(bundle: dict[str, Any]) -> Any:
    """Yield a message for each code outside its required value set (Bundle and entries)."""
    resources = [bundle] + [e.get("resource") or {} for e in bundle.get("entry") or []]
    for res in resources:
        rtype = res.get("resourceType", "")
        for (t, fld), allowed in _REQUIRED_CODES.items():
            if t == rtype and fld in res and res[fld] not in allowed:
                yield f"{rtype}.{fld}: code not in the required value set"
    for i, e in enumerate(bundle.get("entry") or []):
        req = e.get("request")
        if req is not None and req.get("method") not in _METHODS:
            yield f"entry.{i}.request.method: code not in the required value set"


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    """Canonical JSON bytes (sorted keys): identical for identical referrals."""
    return json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _short_error(exc: Exception) -> str:
    """An error summary naming locations and messages, never input values (they may be PHI)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            items = errors(include_input=False)
        except TypeError:
            items = errors()
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in items[:5]]
        return "; ".join(parts) or type(exc).__name__
    if isinstance(exc, KeyError):  # fhir_core: unknown resourceType (a type name, not data)
        return f"unknown resource type {exc}"
    return type(exc).__name__
