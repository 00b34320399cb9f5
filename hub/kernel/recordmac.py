"""Record MACs: proof that a Kafka record was appended by the hub (pure, no I/O).

Every record the event log appends (facts and dead letters) carries two headers:

- ``hub_mac_kid``: the id of the key that made the MAC (keys rotate, see
  ``docs/operators.md``);
- ``hub_mac``: HMAC-SHA256 under that key over :func:`mac_input`, as 64 lower-case hex
  characters (ASCII: header values stay text for every Kafka tool and client).

The MAC input is a canonical encoding of everything a consumer acts on::

    b"hub-record-mac/v1"
    field(kid) field(topic) field(key) field(value)
    u32(number of headers) then field(name) field(value) for every header,
    sorted by (name, value) bytes

where ``field(b)`` is ``u32be(len(b)) || b`` and an absent key or value (``None``) is
``0xFFFFFFFF`` with no bytes (distinct from an empty one). Every header except the two
MAC headers themselves is covered, so header order does not matter but adding, removing
or changing any header (``ce_id``, ``ce_type``, ``dl_source`` …) breaks the MAC, as does
changing one byte of the value, the key or the topic. The partition and offset are not
covered (the producer does not know the offset); a byte-identical copy of a hub record is
a duplicate of the same event id, which every consumer already folds once.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from hub.kernel.errors import ConfigError

MAC_HEADER = "hub_mac"
KID_HEADER = "hub_mac_kid"
MAC_HEADERS = frozenset({MAC_HEADER, KID_HEADER})
DOMAIN = b"hub-record-mac/v1"
MIN_KEY_BYTES = 32
_NONE = b"\xff\xff\xff\xff"

Header = tuple[str, bytes]


_U32 = struct.Struct(">I").pack


def _field(data: bytes | None) -> bytes:
    if data is None:
        return _NONE
    return _U32(len(data)) + data


def mac_input(
    kid: str, topic: str, key: bytes | None, value: bytes | None, headers: Iterable[Header]
) -> bytes:
    """The canonical bytes a record MAC is computed over (see the module docstring).
    ``headers`` are the record's headers; the MAC headers among them are left out."""
    covered = sorted((name.encode(), v if type(v) is bytes else bytes(v or b""))
                     for name, v in headers if name not in MAC_HEADERS)
    parts = [DOMAIN, _field(kid.encode()), _field(topic.encode()), _field(key), _field(value),
             _U32(len(covered))]
    for name, v in covered:
        parts.append(_U32(len(name)))
        parts.append(name)
        parts.append(_U32(len(v)))
        parts.append(v)
    return b"".join(parts)


def compute_mac(
    secret: bytes, kid: str, topic: str, key: bytes | None, value: bytes | None, headers: Iterable[Header]
) -> bytes:
    # hmac.digest: OpenSSL's one-shot HMAC (the same bytes as hmac.new(...).digest(), a
    # fraction of its cost per record)
    return hmac.digest(secret, mac_input(kid, topic, key, value, headers), "sha256")


class RecordLike(Protocol):
    """What a MAC is checked on: an aiokafka ``ConsumerRecord`` (or a faust message as one)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class MacKeyError(ConfigError, ValueError):
    """The record-MAC key configuration is unusable (no current key, a short key)."""


@dataclass(frozen=True)
class MacKeys:
    """The keys a process MACs and verifies with: ``current`` signs; every id in ``keys``
    verifies (the current one and the older ones still accepted during a rotation). A key
    id that is not in ``keys`` (retired, or never known) does not verify."""

    current: str
    keys: Mapping[str, bytes]

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise MacKeyError(f"the current record-MAC key id {self.current!r} has no key")
        for kid, secret in self.keys.items():
            if not kid or len(secret) < MIN_KEY_BYTES:
                raise MacKeyError(f"record-MAC key {kid!r} is shorter than {MIN_KEY_BYTES} bytes")

    def sign(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Sequence[Header]
    ) -> list[Header]:
        """``headers`` plus the key id and MAC headers (any MAC headers already present are
        replaced)."""
        plain = [(n, v) for n, v in headers if n not in MAC_HEADERS]
        mac = compute_mac(self.keys[self.current], self.current, topic, key, value, plain)
        return [*plain, (KID_HEADER, self.current.encode()), (MAC_HEADER, mac.hex().encode())]

    def verify(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]]
    ) -> str | None:
        """None when the record carries a valid MAC under an accepted key, else the reason
        (PHI-free: names of headers and key ids only)."""
        hs = [(n, bytes(v or b"")) for n, v in headers or ()]
        macs = [v for n, v in hs if n == MAC_HEADER]
        kids = [v for n, v in hs if n == KID_HEADER]
        if not macs and not kids:
            return "missing MAC"
        if len(macs) != 1 or len(kids) != 1:
            return "malformed MAC headers"
        try:
            kid = kids[0].decode("ascii")
        except UnicodeDecodeError:
            return "malformed MAC key id"
        secret = self.keys.get(kid)
        if secret is None:
            return f"MAC key id {kid[:40]!r} is not accepted"
        expected = compute_mac(secret, kid, topic, key, value, hs).hex().encode()
        if not hmac.compare_digest(expected, macs[0]):
            return "invalid MAC"
        return None

    def verify_record(self, record: RecordLike) -> str | None:
        """:meth:`verify` for a consumed record."""
        return self.verify(record.topic, record.key, record.value, record.headers)
