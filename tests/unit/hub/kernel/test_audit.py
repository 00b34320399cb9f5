"""Comparing the audit tables with the audit topic (pure): a second record of a row is a
re-send when it has the same bytes (a retry, or a crash repair rebuilding the record from
the row) and a forgery when it differs."""

from __future__ import annotations

from hub.kernel.audit import compare_audit

ROW = b'{"id":1,"row":{},"table":"release_log"}'


def test_an_identical_second_record_is_a_re_send_not_a_break() -> None:
    table = {b"release_log:1": ROW}
    assert compare_audit(table, [(0, b"release_log:1", ROW), (5, b"release_log:1", ROW)]) == []


def test_a_different_second_record_is_forged() -> None:
    table = {b"release_log:1": ROW}
    (gap,) = compare_audit(table, [(0, b"release_log:1", ROW), (5, b"release_log:1", ROW + b" ")])
    assert (gap.kind, gap.offset) == ("forged", 5)


def test_a_row_never_on_the_topic_is_forged_and_a_deleted_one_missing() -> None:
    gaps = compare_audit({b"release_log:2": ROW}, [(0, b"release_log:1", ROW)])
    assert sorted((g.kind, g.key) for g in gaps) == [
        ("forged", "release_log:2"),
        ("missing", "release_log:1"),
    ]
