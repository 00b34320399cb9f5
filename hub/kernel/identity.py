"""Person pseudonyms: keyed HMAC-SHA256 over a namespaced local identifier.

Invariant: the same (namespace, identifier) under the same key always gives the same
pseudonym, so facts from CAD, the case system and the EHR about one person join in the
log without any clear identifier entering it. Without the key a pseudonym cannot be
reversed or recomputed from a guessed identifier.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata


def normalize_identifier(value: str) -> str:
    """Case, width and white-space insensitive form of an identifier."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def pseudonymize(key: bytes, namespace: str, identifier: str) -> str:
    """``psn_`` + 32 hex digits. ``namespace`` is the identifier's issuer (e.g. a county
    master person index, or ``mrn:clinic-a``)."""
    if not identifier or not identifier.strip():
        raise ValueError("cannot pseudonymize an empty identifier")
    msg = f"{normalize_identifier(namespace)}\x1f{normalize_identifier(identifier)}".encode()
    return "psn_" + hmac.new(key, msg, hashlib.sha256).hexdigest()[:32]


def mask(value: str | None, keep: int = 2) -> str:
    """For logs and error messages: never the whole value."""
    if not value:
        return "∅"
    return value[:keep] + "…" + f"[{len(value)}]"
