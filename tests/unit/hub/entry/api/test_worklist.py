"""The worklist as a reader sees it (pure): open referrals only, Part 2 facts only under a
consent naming the reader's program, consent state from unexpired unrevoked consents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.entry.api.roles import Principal, Role
from hub.entry.api.worklist import worklist_entry

NOW = datetime(2026, 6, 1, tzinfo=UTC)
P = "psn_" + "b" * 32


def row(consents: list[dict]) -> dict:
    return {
        "person": P,
        "contacts": 4,
        "last_contact_at": NOW - timedelta(days=2),
        "last_incident_id": "sea:1",
        "referrals": [
            {
                "referral_id": "r-mh",
                "destination": "a",
                "service_type": "outpatient_mh",
                "status": "delivered",
                "requested_at": NOW,
                "substance_use": False,
            },
            {
                "referral_id": "r-done",
                "destination": "a",
                "service_type": "outpatient_mh",
                "status": "completed",
                "requested_at": NOW,
                "substance_use": False,
            },
            {
                "referral_id": "r-sud",
                "destination": "b",
                "service_type": "substance_use_treatment",
                "status": "held_for_consent",
                "requested_at": NOW,
                "substance_use": True,
            },
        ],
        "enrolments": [{"service_type": "substance_use_treatment", "at": NOW, "substance_use": True}],
        "consents": consents,
    }


def consent(recipients: tuple[str, ...], *, days: int = 30, revoked: bool = False) -> dict:
    return {
        "consent_id": "c1",
        "recipients": recipients,
        "scope": ("part2",),
        "granted_at": NOW - timedelta(days=9),
        "expires_at": NOW + timedelta(days=days),
        "revoked_at": NOW - timedelta(days=1) if revoked else None,
    }


CM = Principal(sub="cm", role=Role.CASE_MANAGER, program="coresp-1")


def test_part2_needs_a_consent_naming_the_program() -> None:
    for consents in (
        [],
        [consent(("coresp-2",))],
        [consent(("coresp-1",), revoked=True)],
        [consent(("coresp-1",), days=-1)],
    ):
        entry = worklist_entry(row(consents), CM, NOW)
        assert [r["referral_id"] for r in entry["open_referrals"]] == ["r-mh"]
        assert (
            entry["enrolled_in_services"] is False and entry["enrolments"] == []
        )  # its only enrolment is Part 2
        assert entry["consent"]["part2_for_program"] is False
    entry = worklist_entry(row([consent(("coresp-1",))]), CM, NOW)
    assert [r["referral_id"] for r in entry["open_referrals"]] == ["r-mh", "r-sud"]
    assert entry["enrolled_in_services"] is True
    assert entry["consent"] == {
        "general": False,
        "part2_for_program": True,
        "expires_at": NOW + timedelta(days=30),
    }
