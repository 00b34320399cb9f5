"""The seal record: one link of the hash chain over a fact partition's records (the value of
the seal topic and a row of the core schema's ``seals`` table). :mod:`hub.kernel.seal` makes
them; :mod:`hub.kernel.verify` checks them."""

from __future__ import annotations

import hashlib

from pydantic import AwareDatetime

from schemas.base import Frozen


class SealRecord(Frozen):
    """One seal: the chain over ``first_offset..last_offset`` of one partition."""

    topic: str
    partition: int
    seq: int
    first_offset: int
    last_offset: int
    record_count: int
    log_start_offset: int
    head_hash: str
    prev_seal_hash: str
    sealed_at: AwareDatetime
    seal_hash: str = ""

    def computed_hash(self) -> str:
        fields = self.model_dump(mode="json", exclude={"seal_hash"})
        canon = "\x1f".join(f"{k}={fields[k]}" for k in sorted(fields))
        return hashlib.sha256(b"hub-seal-v1" + canon.encode()).hexdigest()

    def sealed(self) -> SealRecord:
        return self.model_copy(update={"seal_hash": self.computed_hash()})

    @property
    def key(self) -> str:
        return f"{self.topic}|{self.partition}"
