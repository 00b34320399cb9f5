"""The 42 CFR Part 2 consent gate (pure: no I/O, the clock is an argument).

A substance-use referral may be disclosed to ``destination`` only while the log holds a
:class:`~schemas.consent.ConsentGranted` for that person that

- has ``part2`` in its scope,
- names ``destination`` among its recipients (exact match: Part 2 consents name recipients),
- was granted at or before the decision time and has not expired (``expires_at`` in the future
  or ``None``),
- has not been revoked.

Any other referral needs no consent. :class:`ConsentBook` is the fold of the consent facts
(it tolerates a revocation read before its grant: a revoked id stays revoked), and
:func:`decide` is the gate. Revocation is sticky and monotonic: adding facts of revocation
never turns a hold into a disclosure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from schemas.base import EventData
from schemas.consent import ConsentGranted, ConsentRevoked
from schemas.referral import ReferralRequested

PART2 = "part2"


@dataclass(frozen=True)
class Allow:
    """Disclose. ``consent`` is the covering consent (``None`` when none was needed)."""

    consent: ConsentGranted | None = None


@dataclass(frozen=True)
class Hold:
    """Disclose nothing; ``reason`` is human-readable and free of PHI."""

    reason: str


GateDecision = Allow | Hold


@dataclass
class PersonConsents:
    granted: dict[str, ConsentGranted] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)

    def active(self) -> Iterable[ConsentGranted]:
        return (c for cid, c in self.granted.items() if cid not in self.revoked)


@dataclass
class ConsentBook:
    """Consent facts folded per person. ``version`` grows with every fact applied, so a
    caller can tell that the book changed; ``changed`` lists persons touched since the last
    :meth:`take_changed`."""

    persons: dict[str, PersonConsents] = field(default_factory=dict)
    version: int = 0
    changed: set[str] = field(default_factory=set)

    def apply(self, event: EventData) -> bool:
        """Fold one fact; returns whether it was a consent fact."""
        if isinstance(event, ConsentGranted):
            self.persons.setdefault(event.person, PersonConsents()).granted[event.consent_id] = event
        elif isinstance(event, ConsentRevoked):
            self.persons.setdefault(event.person, PersonConsents()).revoked.add(event.consent_id)
        else:
            return False
        self.version += 1
        self.changed.add(event.person)
        return True

    def of(self, person: str) -> list[ConsentGranted]:
        """The person's unrevoked consents (expired ones included; :func:`decide` checks)."""
        pc = self.persons.get(person)
        return list(pc.active()) if pc else []

    def take_changed(self) -> set[str]:
        out, self.changed = self.changed, set()
        return out


def covers(consent: ConsentGranted, destination: str, now: datetime) -> bool:
    """Whether one unrevoked consent permits a Part 2 disclosure to ``destination`` at ``now``."""
    return (
        PART2 in consent.scope
        and destination in consent.recipients
        and consent.at <= now
        and (consent.expires_at is None or consent.expires_at > now)
    )


def decide(referral: ReferralRequested, consents: Iterable[ConsentGranted], now: datetime) -> GateDecision:
    """The gate. ``consents`` are the person's unrevoked consents (see :meth:`ConsentBook.of`).

    Among several covering consents the one lasting longest is chosen (ties: the highest
    consent id), so the choice is deterministic whatever the order of ``consents``.
    """
    if not referral.substance_use:
        return Allow(None)
    covering = [c for c in consents if c.person == referral.person and covers(c, referral.destination, now)]
    if not covering:
        return Hold(
            f"42 CFR Part 2: no granted, unexpired, unrevoked part2 consent names recipient "
            f"{referral.destination!r}"
        )
    best = max(covering, key=lambda c: (c.expires_at is None, c.expires_at or c.at, c.consent_id))
    return Allow(best)
