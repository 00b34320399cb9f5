"""The hub's contract: event types (frozen pydantic models), the envelope, the topic
catalogue and upcasters. Importing this package registers every event type."""

from schemas import case, consent, dispatch, encounter, erasure, identity, referral  # noqa: F401
from schemas.base import EVENT_TYPES, EventData, event_class
from schemas.envelope import Envelope, deterministic_id, new_event

__all__ = ["EVENT_TYPES", "Envelope", "EventData", "deterministic_id", "event_class", "new_event"]
