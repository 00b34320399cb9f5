"""The FHIR channel of the delivery worker: a transaction Bundle of conditional creates,
POSTed to the destination's base URL.

:func:`classify_response` (pure): a ``transaction-response`` whose entries all succeeded is
delivered (the ServiceRequest's location is the remote id); 4xx other than 408/429 is a
rejection, described by the OperationOutcome's issues; 408, 429, 5xx, transport errors and
unreadable answers are retried. Resends are safe: every entry is an ``If-None-Exist``
conditional create, so a server that already stored the referral returns it instead of
creating a second one.

Outcome unknown (:func:`classify_transport_error`): a connection that could not be opened
(or a token that could not be had) sent nothing; a read timeout, a connection dropped
mid-exchange, a 502/504 from a gateway or an unreadable 2xx may have left the referral
stored — the worker resends within its budget and, before recording a failure, asks
(:meth:`FhirTransport.lookup`: ``GET ServiceRequest?identifier=<system>|<referral id>``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from connectors.fhir.bundle import build_referral_bundle, bundle_bytes
from connectors.fhir.client import FhirClient, FhirEndpoint, TokenError
from connectors.referrals.content import REFERRAL_SYSTEM, Disclosure
from connectors.referrals.worker import DestinationBase, Rendered, SendResult
from schemas.referral import ReferralRequested


class FhirDestination(DestinationBase, FhirEndpoint):
    pass


def outcome_summary(body: Any) -> str:
    """``severity/code: text`` of each OperationOutcome issue (at most five, 500 characters)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return "no OperationOutcome"
    parts = []
    for issue in (body.get("issue") or [])[:5]:
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
    if status in (408, 429) or status >= 500:
        return SendResult("retry", code, outcome_summary(body))
    if 400 <= status < 500:
        return SendResult("rejected", code, outcome_summary(body))
    return SendResult("retry", code, "unexpected status")


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
        self.destinations = destinations
        self._clients: dict[str, FhirClient] = {}

    def render(self, disclosure: Disclosure) -> Rendered:
        bundle = build_referral_bundle(disclosure)
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
