"""The HL7 v2 channel of the delivery worker: REF^I12 over MLLP, answered by an ACK.

:func:`classify_ack` (pure) maps the receiver's answer to a verdict: ``AA`` delivered,
``AR`` rejected (final), ``AE`` retried; an answer that is unreadable or acknowledges
another control id is a protocol error and is retried on a fresh connection (the resend
carries the same MSH-10, so a receiver that did take the first copy discards the second).

Rendering uses the fast builder (:func:`connectors.hl7v2.ref_i12.build_ref_i12`); the
transport runs the builder's :func:`~connectors.hl7v2.ref_i12.self_check` once per process
and parses a deterministic sample of messages back with hl7apy as well.
"""

from __future__ import annotations

import functools
import ssl

from pydantic import Field

from connectors.hl7v2.ack import AckInvalid, AckMismatch, parse_ack
from connectors.hl7v2.mllp import MllpClient, MllpError, MllpTimeout
from connectors.hl7v2.ref_i12 import build_ref_i12, check_ref_i12, sampled, self_check
from connectors.referrals.content import Disclosure
from connectors.referrals.worker import DestinationBase, Rendered, SendResult


class Hl7Destination(DestinationBase):
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    ca_file: str | None = None
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)


def classify_ack(answer: bytes, control_id: str) -> SendResult:
    try:
        ack = parse_ack(answer.decode("utf-8", errors="replace"), control_id)
    except AckMismatch as exc:
        return SendResult("retry", "protocol", str(exc)[:200])
    except AckInvalid as exc:
        return SendResult("retry", "protocol", str(exc)[:200])
    detail = " ".join(p for p in (ack.error_code, ack.text) if p)
    if ack.code == "AA":
        return SendResult("accepted", "AA", detail, remote_id=control_id)
    if ack.code == "AR":
        return SendResult("rejected", "AR", detail or "rejected by the receiver")
    return SendResult("retry", "AE", detail or "application error at the receiver")


@functools.cache
def checked_once() -> None:
    """The builder's self-check, once per process (it costs a few hl7apy round trips)."""
    self_check()


class Hl7Transport:
    channel = "hl7v2"

    def __init__(self, destinations: dict[str, Hl7Destination]) -> None:
        checked_once()
        self.destinations = destinations
        self._clients: dict[str, MllpClient] = {}

    def render(self, disclosure: Disclosure) -> Rendered:
        """The referral's REF^I12 bytes; a sampled message is also parsed back with hl7apy
        (:class:`~connectors.hl7v2.ref_i12.MessageInvalid` otherwise)."""
        msg = build_ref_i12(disclosure)
        if sampled(disclosure.event_id):
            check_ref_i12(msg.er7, msg.control_id)
        return Rendered(message_id=msg.control_id, payload=msg.encode())

    def client(self, destination: str) -> MllpClient:
        if destination not in self._clients:
            d = self.destinations[destination]
            ctx = ssl.create_default_context(cafile=d.ca_file) if d.tls else None
            self._clients[destination] = MllpClient(
                d.host,
                d.port,
                connect_timeout=d.connect_timeout_s,
                read_timeout=d.read_timeout_s,
                ssl_context=ctx,
            )
        return self._clients[destination]

    async def send(self, destination: str, rendered: Rendered) -> SendResult:
        try:
            answer = await self.client(destination).exchange(rendered.payload)
        except MllpTimeout as exc:
            return SendResult("retry", "timeout", str(exc)[:200])
        except MllpError as exc:
            return SendResult("retry", "connection", str(exc)[:200])
        result = classify_ack(answer, rendered.message_id)
        if result.code == "protocol":  # never read a stray late answer as the next one's
            await self.client(destination).close()
        return result

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
