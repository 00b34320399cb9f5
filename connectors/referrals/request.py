"""The one way a ``referral.requested`` fact is made, whichever system the clinician uses
(the encounter intake, a case-management system): the request with its reason sealed
under the person's key, in the form the delivery workers open
(:class:`~connectors.referrals.content.ReferralReason`). Pure: the caller resolved the
person's key (a :class:`~hub.kernel.crypto.Keyring` snapshot)."""

from __future__ import annotations

from datetime import date, datetime

from connectors.referrals.content import Gender, ReferralReason
from hub.kernel.crypto import KeyDestroyedError, Keyring, seal
from schemas.referral import Channel, Priority, ReferralRequested


def referral_request(
    keys: Keyring | None,
    *,
    referral_id: str,
    person: str,
    at: datetime,
    destination: str,
    channel: Channel,
    service_type: str,
    requester: str,
    reason: str | None,
    context: str,
    priority: Priority = "routine",
    substance_use: bool = False,
    incident_id: str | None = None,
    gender: Gender | None = None,
    birth_date: date | None = None,
) -> ReferralRequested:
    """A :class:`ReferralRequested` whose ``reason`` (the clear text, and the demographics a
    destination may be allowed to receive) is sealed with ``person``'s key under ``context``
    (:func:`hub.kernel.crypto.seal_context` of the request: a retry seals the same bytes); without a reason
    or keys (or for an erased person) the request carries none — clear text never enters
    the log. A Part 2 request (``substance_use``) is held by the delivery workers until a
    consent covers it."""
    sealed = None
    if reason and keys is not None:
        clear = ReferralReason(text=reason, gender=gender, birth_date=birth_date)
        try:
            sealed = seal(keys, person, clear.model_dump(mode="json", exclude_none=True), context=context)
        except KeyDestroyedError:
            sealed = None
    return ReferralRequested(
        referral_id=referral_id,
        person=person,
        at=at,
        incident_id=incident_id,
        destination=destination,
        channel=channel,
        service_type=service_type,
        priority=priority,
        substance_use=substance_use,
        requester=requester,
        reason=sealed,
    )
