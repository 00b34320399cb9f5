"""The HL7 v2 channel of the delivery worker: REF^I12 over MLLP, answered by an ACK.

:func:`classify_ack` (pure) maps the receiver's answer to a verdict: ``AA`` delivered,
``AR`` rejected (final), ``AE`` retried; an answer that is unreadable or acknowledges
another control id is a protocol error and is retried on a fresh connection (the resend
carries the same MSH-10, so a receiver that did take the first copy discards the second).

Outcome unknown: a connection that could not be opened sent nothing (``retry``); a timeout, a
connection dropped after the frame left or an unreadable answer may have left the REF^I12
stored (``unknown``). :meth:`Hl7Transport.lookup` asks by resending the identical message
(same MSH-10): a receiver that stored it acknowledges the resend without storing it again.

Each destination has a small pool of MLLP connections (one exchange at a time on each), so
the worker's concurrent deliveries to one destination each have their own connection.
"""

from __future__ import annotations

import ssl

from pydantic import Field

from connectors.hl7v2.ack import AckInvalid, AckMismatch, parse_ack
from connectors.hl7v2.codec import decode_frame
from connectors.hl7v2.mllp import MllpClient, MllpConnectError, MllpError, MllpTimeout
from connectors.hl7v2.ref_i12 import build_ref_i12
from connectors.referrals.content import Disclosure
from connectors.referrals.worker import DestinationBase, Rendered, SendResult
from schemas.referral import ReferralRequested


class Hl7Destination(DestinationBase):
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    ca_file: str | None = None
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)


def classify_ack(answer: bytes, control_id: str) -> SendResult:
    try:
        ack = parse_ack(decode_frame(answer), control_id)
    except (AckMismatch, AckInvalid) as exc:  # the answer was lost: the message may have been taken
        return SendResult("unknown", "protocol", str(exc)[:200])
    detail = " ".join(p for p in (ack.error_code, ack.text) if p)
    if ack.code == "AA":
        return SendResult("accepted", "AA", detail, remote_id=control_id)
    if ack.code == "AR":
        return SendResult("rejected", "AR", detail or "rejected by the receiver")
    return SendResult("retry", "AE", detail or "application error at the receiver")


class Hl7Transport:
    channel = "hl7v2"

    def __init__(self, destinations: dict[str, Hl7Destination]) -> None:
        self.destinations = destinations
        self._idle: dict[str, list[MllpClient]] = {}
        self._all: list[MllpClient] = []

    def render(self, disclosure: Disclosure) -> Rendered:
        msg = build_ref_i12(disclosure)
        return Rendered(message_id=msg.control_id, payload=msg.encode())

    def _take(self, destination: str) -> MllpClient:
        """An idle connection of ``destination``'s pool, or a new one."""
        idle = self._idle.setdefault(destination, [])
        if idle:
            return idle.pop()
        d = self.destinations[destination]
        ctx = ssl.create_default_context(cafile=d.ca_file) if d.tls else None
        client = MllpClient(
            d.host, d.port, connect_timeout=d.connect_timeout_s, read_timeout=d.read_timeout_s,
            ssl_context=ctx,
        )
        self._all.append(client)
        return client

    async def send(self, destination: str, rendered: Rendered) -> SendResult:
        client = self._take(destination)
        try:
            try:
                answer = await client.exchange(rendered.payload)
            except MllpConnectError as exc:
                return SendResult("retry", "connection", str(exc)[:200])
            except MllpError as exc:  # timeout or dropped after sending: outcome unknown
                code = "timeout" if isinstance(exc, MllpTimeout) else "connection"
                return SendResult("unknown", code, str(exc)[:200])
            result = classify_ack(answer, rendered.message_id)
            if result.code == "protocol":  # never read a stray late answer as the next one's
                await client.close()
            return result
        finally:
            self._idle[destination].append(client)

    async def lookup(self, destination: str, rendered: Rendered, request: ReferralRequested) -> SendResult:
        """Ask by resending the identical message (same MSH-10): AA says the receiver has it,
        AR that it refused it, AE that it did not take it; no answer leaves it unknown."""
        result = await self.send(destination, rendered)
        if result.code == "AE":
            return SendResult("retry", "absent", f"AE: {result.detail}")
        if result.verdict == "retry":  # could not connect: could not ask
            return SendResult("unknown", f"lookup-{result.code}", result.detail)
        return result

    async def close(self) -> None:
        for client in self._all:
            await client.close()
        self._all.clear()
        self._idle.clear()
