"""``hub report`` (text): the demographics and use-of-force sections print the cells as
published — a withheld cell reads suppressed, never 0; a release without them says so."""

from __future__ import annotations

from hub.entry.commands.report import section_lines


def cell(v: int | None, share: float | None = None) -> dict:
    return {"value": v, "share": share, "suppressed": v is None, "measured": True}


def test_sections_print_withheld_cells_as_suppressed() -> None:
    doc = {
        "demographics": {
            "sources": ["intake", "ehr"],
            "total": {"calls": cell(40), "conflicting": cell(None)},
            "rows": [{"group_kind": "race", "group": "white", "metrics": {"calls": cell(30, 0.75)}},
                     {"group_kind": "race", "group": "asian", "metrics": {"calls": cell(None)}},
                     {"group_kind": "age_band", "group": "25_34", "metrics": {"calls": cell(0, 0.0)}}],
        },
        "use_of_force": {
            "total": {"calls": cell(40), "force_recorded": cell(30, 0.75), "no_force": cell(28, 0.9333),
                      "force_used": cell(None), "force.restraints": cell(None)},
            "by_outcome": [], "rows": [],
        },
    }
    text = "\n".join(section_lines(doc))
    assert "sources, authoritative first: intake, ehr" in text
    assert "[race] white 30  (75.0%); asian suppressed (1-10)" in text
    assert "sources disagree suppressed (1-10)" in text
    assert "[age band] 25 34 0  (0.0%)" in text  # a true zero is a zero
    assert "force used suppressed (1-10) (restraints suppressed (1-10))" in text


def test_a_release_without_the_sections_says_not_available() -> None:
    doc = {"demographics": {"sources": [], "total": {}, "rows": [], "reason": "not part of a release"},
           "use_of_force": {"total": {}, "by_outcome": [], "rows": [], "reason": "not part of a release"}}
    lines = section_lines(doc)
    assert lines.count("    not available: not part of a release") == 2
    assert not any(" 0" in line for line in lines)
