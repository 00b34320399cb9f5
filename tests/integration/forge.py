"""An attacker's writes to a fact topic: well-formed envelopes produced straight to Kafka
with a plain producer (the client factory's connection settings, so it gets past whatever
transport security the broker has — a credentialed insider — but not through the event
log), with no record MAC, a wrong one, one copied from another record or one under a key
the hub does not accept."""

from __future__ import annotations

import hashlib
import os
from typing import Literal

from hub.kernel.kafka import KafkaClients
from hub.kernel.recordmac import KID_HEADER, MAC_HEADER, compute_mac
from hub.kernel.runtime import Runtime
from schemas.envelope import Envelope

Forgery = Literal["none", "wrong", "copied", "unknown-key"]


async def produce_forged(
    rt: Runtime,
    topic: str,
    envelope: Envelope,
    forgery: Forgery,
    *,
    copy_from: list[tuple[str, bytes]] | None = None,
    clients: KafkaClients | None = None,
) -> tuple[int, int]:
    """Produce ``envelope`` to ``topic`` as an attacker would (with ``clients``' principal;
    default the runtime's); returns (partition, offset)."""
    key = envelope.partitionkey.encode()
    value = envelope.to_bytes()
    headers = [("ce_id", envelope.id.encode()), ("ce_type", envelope.type.encode())]
    if forgery == "wrong":
        wrong = os.urandom(32).hex().encode()
        headers += [(KID_HEADER, rt.log.mac_keys.current.encode()), (MAC_HEADER, wrong)]
    elif forgery == "copied":
        assert copy_from is not None
        headers += [(n, v) for n, v in copy_from if n in (KID_HEADER, MAC_HEADER)]
    elif forgery == "unknown-key":
        secret = hashlib.sha256(b"attacker").digest()
        mac = compute_mac(secret, "k9", topic, key, value, headers).hex().encode()
        headers += [(KID_HEADER, b"k9"), (MAC_HEADER, mac)]
    producer = (clients or KafkaClients(rt.settings.kafka)).producer("forger")
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()
    return meta.partition, meta.offset
