"""The FHIR channel of the delivery worker: a transaction Bundle of conditional creates,
POSTed to the destination's base URL.

:func:`classify_response` (pure): a ``transaction-response`` whose entries all succeeded is
delivered (the ServiceRequest's location is the remote id). A 4xx is the server's final
rejection only when it is not transient (issue 13, finding 8: a validating server's 4xx lost
referrals it would have taken a moment later). Retried within the budget, after FHIR R4's
http page and the IssueType code system (http://hl7.org/fhir/issue-type):

- 408 request timeout, 409 conflict (a version conflict: a concurrent write the next attempt
  no longer meets), 423 locked, 425 too early, 429 too many requests, 5xx;
- any 4xx whose OperationOutcome's errors are all transient: the ``transient`` branch of
  IssueType (``transient``, ``lock-error``, ``no-store``, ``exception``, ``timeout``,
  ``incomplete``, ``throttled``), or ``conflict``.

Any other 4xx (400 or 422 with an error OperationOutcome: invalid, business rule, ...) is
final, recorded with the OperationOutcome's severity, code, location and diagnostics.
Resends are safe: every entry is an ``If-None-Exist`` conditional create, so a server that
already stored the referral returns it instead of creating a second one.

Rendering uses the fast builder (:func:`connectors.fhir.bundle.build_referral_bundle`); the
transport runs the builder's :func:`~connectors.fhir.bundle.self_check` once per process
and validates a deterministic sample of Bundles with the fhir.resources models as well.

Outcome unknown (:func:`classify_transport_error`): a connection that could not be opened
(or a token that could not be had) sent nothing; a read timeout, a connection dropped
mid-exchange, a 502/504 from a gateway or an unreadable 2xx may have left the referral
stored — the worker resends within its budget and, before recording a failure, asks
(:meth:`FhirTransport.lookup`: ``GET ServiceRequest?identifier=<system>|<referral id>``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import httpx

from connectors.fhir.bundle import build_referral_bundle, bundle_bytes, sampled, self_check, validate_bundle
from connectors.fhir.client import FhirClient, FhirEndpoint, TokenError
from connectors.referrals.content import REFERRAL_SYSTEM, Disclosure
from connectors.referrals.worker import DestinationBase, Rendered, SendResult
from schemas.referral import ReferralRequested


class FhirDestination(DestinationBase, FhirEndpoint):
    pass


#: HTTP statuses FHIR servers use for "not now" (FHIR R4 http: 409 is a version conflict)
TRANSIENT_STATUSES = frozenset({408, 409, 423, 425, 429})
#: IssueType codes of a condition that may clear by itself: the ``transient`` branch
#: (lock-error, no-store, exception, timeout, incomplete, throttled) and ``conflict``
TRANSIENT_ISSUES = frozenset(
    {"transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "conflict"}
)


def transient_outcome(body: Any) -> bool:
    """Whether an OperationOutcome reports only transient errors (pure): it has issues of
    severity ``error``/``fatal`` (or, with none, any issues) and every one of them has a
    transient IssueType code. A single non-transient error (invalid content, a business
    rule) makes the answer final."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return False
    issues = [i for i in body.get("issue") or [] if isinstance(i, dict)]
    errors = [i for i in issues if i.get("severity") in ("error", "fatal")] or issues
    return bool(errors) and all(str(i.get("code", "")).strip().lower() in TRANSIENT_ISSUES for i in errors)


def outcome_summary(body: Any) -> str:
    """``severity/code: text`` of each OperationOutcome issue (at most five, 500 characters)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return "no OperationOutcome"
    parts = []
    for issue in [i for i in body.get("issue") or [] if isinstance(i, dict)][:5]:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        where = ",".join(issue.get("expression") or issue.get("location") or [])
        parts.append(
            f"{issue.get('severity', '?')}/{issue.get('code', '?')}{' @' + where if where else ''}: {text}"
        )
    return "; ".join(parts)[:500] or "OperationOutcome without issues"


#: not sent at all: the connection or the token could not be had
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, TokenError,
)


def classify_transport_error(exc: Exception) -> SendResult:
    """A failed exchange (pure): ``retry`` when nothing was sent, ``unknown`` when the
    request may have reached the server (it may have stored the referral)."""
    if isinstance(exc, _NOT_SENT):
        return SendResult("retry", "connection", f"{type(exc).__name__}: {str(exc)[:150]}")
    if isinstance(exc, httpx.TimeoutException):
        return SendResult("unknown", "timeout", type(exc).__name__)
    return SendResult("unknown", "connection", f"{type(exc).__name__}: {str(exc)[:150]}")


def classify_response(status: int, body: Any) -> SendResult:
    code = str(status)
    if 200 <= status < 300:
        if not isinstance(body, dict) or body.get("type") != "transaction-response":
            return SendResult("unknown", "protocol", "answer is not a transaction-response Bundle")
        remote_id = None
        for entry in body.get("entry") or []:
            resp = entry.get("response") or {}
            if not str(resp.get("status", "")).startswith("2"):
                return SendResult("unknown", "protocol", f"entry answered {resp.get('status')!r}")
            location = resp.get("location") or ""
            if location.startswith("ServiceRequest/"):
                remote_id = "/".join(location.split("/")[:2])
        return SendResult("accepted", code, "", remote_id=remote_id)
    if status in (502, 504):  # a gateway lost the answer: the server may have stored it
        return SendResult("unknown", code, outcome_summary(body))
    if status in TRANSIENT_STATUSES or status >= 500:
        return SendResult("retry", code, outcome_summary(body))
    if 400 <= status < 500:
        if transient_outcome(body):
            return SendResult("retry", code, outcome_summary(body))
        return SendResult("rejected", code, outcome_summary(body))
    return SendResult("retry", code, "unexpected status")


@functools.cache
def checked_once() -> None:
    """The builder's self-check, once per process (it costs a few model validations)."""
    self_check()

def classify_lookup(status: int, body: Any) -> SendResult:
    """The answer to a ServiceRequest search by business identifier (pure): ``accepted``
    with its ``ServiceRequest/<id>`` when the searchset has a match, ``retry``/``absent``
    when it has none, ``unknown`` for any other answer."""
    if status != 200 or not isinstance(body, dict) or body.get("type") != "searchset":
        return SendResult("unknown", f"lookup-{status}", "no searchset")
    for entry in body.get("entry") or []:
        res = entry.get("resource") or {}
        if res.get("resourceType") == "ServiceRequest" and res.get("id"):
            return SendResult("accepted", "found", "", remote_id=f"ServiceRequest/{res['id']}")
    return SendResult("retry", "absent", "the EHR has no ServiceRequest with the referral's identifier")


class FhirTransport:
    channel = "fhir"

    def __init__(self, destinations: dict[str, FhirDestination]) -> None:
        checked_once()
        self.destinations = destinations
        self._clients: dict[str, FhirClient] = {}

    def render(self, disclosure: Disclosure) -> Rendered:
        """The referral's Bundle bytes; a sampled referral's Bundle also passes the models
        (:class:`~connectors.fhir.bundle.BundleInvalid` otherwise, like any invalid Bundle)."""
        bundle = build_referral_bundle(disclosure)
        if sampled(disclosure.request.referral_id):
            validate_bundle(bundle)
        return Rendered(message_id=bundle["id"], payload=bundle_bytes(bundle))

    def client(self, destination: str) -> FhirClient:
        if destination not in self._clients:
            self._clients[destination] = FhirClient(self.destinations[destination])
        return self._clients[destination]

    async def send(self, destination: str, rendered: Rendered) -> SendResult:
        try:
            resp = await self.client(destination).transaction(rendered.payload)
        except (httpx.TransportError, TokenError) as exc:
            return classify_transport_error(exc)
        try:
            body = resp.json()
        except (json.JSONDecodeError, ValueError):
            body = None
        return classify_response(resp.status_code, body)

    async def lookup(self, destination: str, rendered: Rendered, request: ReferralRequested) -> SendResult:
        """Does the EHR have the referral? A search of ServiceRequest by the referral's
        business identifier (what the conditional create keys on)."""
        try:
            resp = await self.client(destination).search(
                "ServiceRequest", {"identifier": f"{REFERRAL_SYSTEM}|{request.referral_id}"}
            )
        except (httpx.TransportError, TokenError) as exc:
            return SendResult("unknown", "lookup-" + classify_transport_error(exc).code, type(exc).__name__)
        try:
            body = resp.json()
        except (json.JSONDecodeError, ValueError):
            body = None
        return classify_lookup(resp.status_code, body)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
