"""The verdict of a faulted run: only wall-clock fields are normalized; anything else that
differs from the clean run counts."""

from __future__ import annotations

from hub.devtools.faults.compare import judge, open_sealed, table_differences


def fact(eid: str, etype: str, at: str, **data: object) -> dict[str, object]:
    return {"event_id": eid, "event_type": etype, "at": at, "recorded_at": at, "data": {"at": at, **data}}


def test_recording_and_delivery_times_are_normalized() -> None:
    clean = {
        "facts": [
            fact("e1", "referral.delivered.v1", "2026-01-01T10:00:00Z", attempts=1),
            fact("e2", "referral.accepted.v1", "2024-03-01T10:00:00Z"),
        ],
        "person_timeline": [{"person": "p", "event_id": "e1", "at": "2026-01-01T10:00:00Z"}],
    }
    faulted = {
        "facts": [
            fact("e1", "referral.delivered.v1", "2026-01-01T10:09:00Z", attempts=4),
            {
                **fact("e2", "referral.accepted.v1", "2024-03-01T10:00:00Z"),
                "recorded_at": "2026-01-01T11:00:00Z",
            },
        ],
        "person_timeline": [{"person": "p", "event_id": "e1", "at": "2026-01-01T10:09:00Z"}],
    }
    assert table_differences(clean, faulted) == {}


def test_a_clinical_time_or_a_missing_row_is_a_difference() -> None:
    clean = {
        "facts": [fact("e2", "referral.accepted.v1", "2024-03-01T10:00:00Z")],
        "referral_funnel": [{"referral_id": "r1", "status": "completed"}],
    }
    faulted = {"facts": [fact("e2", "referral.accepted.v1", "2024-03-02T10:00:00Z")], "referral_funnel": []}
    assert table_differences(clean, faulted) == {"facts": 2, "referral_funnel": 1}


def test_consumer_bookkeeping_is_not_compared() -> None:
    clean = {"projection_positions": [{"topic": "t", "partition": 0, "next_offset": 5}]}
    faulted = {"projection_positions": [{"topic": "t", "partition": 0, "next_offset": 9}]}
    assert table_differences(clean, faulted) == {}


def test_releases_are_compared_by_the_months_they_cover() -> None:
    def release(month: str, seq: int, at: str) -> dict[str, object]:
        return {"release_id": f"{month}.r{seq}", "period_start": f"{month}-01", "seq": seq, "released_at": at}

    clean = {"outcome_releases": [release("2024-03", 1, "2026-01-01T10:00:00Z")]}
    # a faulted run released the month later, and twice (it was idle and caught up twice)
    faulted = {"outcome_releases": [release("2024-03", 1, "2026-01-01T10:05:00Z"),
                                    release("2024-03", 2, "2026-01-01T10:06:00Z")]}
    assert table_differences(clean, faulted) == {}
    # a month the faulted run never released is a difference
    assert table_differences({"outcome_releases": [*clean["outcome_releases"], release("2024-04", 1, "x")]},
                             faulted) == {"outcome_releases": 1}


def test_sealed_payloads_are_compared_by_their_clear_content() -> None:
    sealed = {"alg": "A256GCM", "ciphertext": "x", "kid": "k1", "nonce": "n"}
    row = {"data": {"demographics": sealed, "list": [sealed]}}
    opened = open_sealed(row, lambda d: {"mpi": d["kid"]})
    assert opened == {
        "data": {"demographics": {"sealed": {"mpi": "k1"}}, "list": [{"sealed": {"mpi": "k1"}}]}
    }


def test_a_payload_sealed_in_columns_is_compared_by_its_clear_content() -> None:
    # person_demographics: one row per report, the sealed payload in kid/nonce/ciphertext columns
    row = {"person": "psn_1", "event_id": "e1", "kid": "k1", "nonce": "n", "ciphertext": "x"}
    assert open_sealed(row, lambda d: {"race": d["kid"], "alg": d["alg"]}) == {
        "person": "psn_1", "event_id": "e1", "sealed": {"race": "k1", "alg": "A256GCM"}
    }


def test_the_verdict_passes_only_when_every_number_is_zero() -> None:
    ok = judge({"a", "b"}, {"a", "b"}, 0, {}, {}, 0, [])
    assert ok.ok and ok.lines()[-1].endswith("PASS")
    lost = judge({"a", "b"}, {"a"}, 0, {}, {}, 0, [])
    assert (lost.lost, lost.ok) == (1, False)
    assert not judge({"a"}, {"a"}, 1, {}, {}, 0, []).ok
    assert not judge({"a"}, {"a"}, 0, {}, {}, 1, []).ok
    hung = judge({"a"}, {"a"}, 0, {}, {}, 0, ["projector"])
    assert (hung.hung, hung.ok) == (1, False)
