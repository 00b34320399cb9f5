"""Vocabulary files: bad files are refused naming the file, the line and the code, and
nothing of them is applied; good files mean what they say (aliases, the rule's fields,
hub outcome names, service types)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.kernel.errors import ConfigError
from hub.kernel.vocabulary import (
    VocabularyError,
    VocabularySet,
    load_vocabularies,
    load_vocabulary,
    load_vocabulary_file,
    parse_vocabulary,
    vocabulary_names,
)

HEAD = "name: county\nversion: 1\nagencies: [COUNTY]\n"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "county.yaml"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        # line numbers count from the file's first line (HEAD is 3 lines)
        ("dispositions:\n  ARR: arrest\n  HAN: no_enforcment\n", 6,
         ["'HAN'", "unknown outcome 'no_enforcment'"]),
        ("dispositions:\n  A: B\n  B: C\n  C: A\n", 5, ["'A'", "alias cycle A -> B -> C -> A"]),
        ("dispositions:\n  ARR: arrest\n  han: no_enforcement\n  HAN : citation\n", 7,
         ["'HAN'", "mapped twice", "first on line 6 as 'han'"]),
        ("dispositions:\n  ARR: arrest\n  ARR: citation\n", 6, ["'ARR'", "mapped twice"]),
        ("services:\n  behavioral_health: [outpatient_mh]\n  other: [housing, Outpatient-MH]\n", 6,
         ["'Outpatient-MH'", "listed twice"]),
        ("not_measured:\n  outcome.teleport: no such thing\n", 4, ["not_measured", "outcome.teleport"]),
    ],
    ids=["unknown-outcome", "cycle", "mapped-twice-after-normalizing", "mapped-twice", "service-twice",
         "unknown-metric"],
)
def test_bad_vocabulary_is_refused_with_file_line_and_code(
    tmp_path: Path, body: str, line: int, words: list[str]
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(VocabularyError) as caught:
        load_vocabulary_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    for w in words:
        assert w in message, message
    assert isinstance(caught.value, ConfigError)  # a command exits with the message, nothing applied


def test_a_bad_file_among_good_ones_applies_nothing(tmp_path: Path) -> None:
    bad = write(tmp_path, "dispositions:\n  X: nonsense\n")
    with pytest.raises(VocabularyError, match=r"county\.yaml:5"):
        load_vocabularies(["seattle", str(bad)])


def test_aliases_resolve_and_codes_normalize() -> None:
    body = "dispositions:\n  UNF: administrative\n  unfounded:  UNF\n  ' False   alarm ': unfounded\n"
    v = parse_vocabulary(HEAD + body, "t")
    assert v.dispositions == dict.fromkeys(("UNF", "UNFOUNDED", "FALSE ALARM"), "administrative")
    assert v.outcome(None, "false alarm") == ("administrative", True)
    assert v.outcome("nope", None) == ("unknown", False)
    assert v.outcome("ARREST", None) == ("arrest", True)  # the hub's own names are understood
    assert v.outcome(None, None) is None


def test_the_rule_looks_only_at_the_fields_it_names() -> None:
    final_only = parse_vocabulary(HEAD + "behavioral_health:\n  fields: [call_type_final]\n", "t")
    both = parse_vocabulary(HEAD, "t")
    welfare_then_theft = ("SERVICE - WELFARE CHECK", "--THEFT - CAR PROWL")
    assert both.is_behavioral_health(*welfare_then_theft)
    assert not final_only.is_behavioral_health(*welfare_then_theft)
    assert final_only.is_behavioral_health("TRESPASS", "--CRISIS COMPLAINT - GENERAL")


def test_service_types_housing_is_not_behavioral_health() -> None:
    generic = load_vocabulary("generic")
    assert generic.is_bh_service("outpatient_mh") and generic.is_bh_service("Substance-Use Treatment")
    for other in ("housing", "shelter", "benefits", "something new", None):
        assert not generic.is_bh_service(other)


def test_bundled_vocabularies_load_and_seattle_process_codes_are_administrative() -> None:
    vs = load_vocabularies()
    assert {v.name for v in vs.vocabularies} == set(vocabulary_names())
    assert vs.fallback.name == "generic"
    sea = vs.for_call(None, "SPD")
    assert sea.name == "seattle" and vs.for_call("seattle", "ANY") is sea
    assert vs.for_call("not-configured", "NOBODY") is vs.fallback
    for code in ("FALSE COMPLAINT/UNFOUNDED", "PRIORITY CALL HANDLING", "PROBLEM SOLVING PROJECT"):
        assert sea.outcome(None, code) == ("administrative", True)
    assert sea.outcome(None, "ORAL WARNING GIVEN") == ("no_enforcement", True)
    assert "ORAL WARNING GIVEN" in sea.footnotes
    assert set(sea.not_measured) >= {"outcome.voluntary_transport", "time_on_scene_seconds"}


def test_versions_and_digests_tell_vocabularies_apart(tmp_path: Path) -> None:
    a = parse_vocabulary(HEAD + "dispositions:\n  X: arrest\n", "a")
    b = parse_vocabulary(HEAD + "dispositions:\n  X: citation\n", "b")
    assert a.label == b.label == "county@1" and a.digest != b.digest
    with pytest.raises(VocabularyError, match="claimed by county too"):
        other = parse_vocabulary(HEAD.replace("county", "other"), "o")
        VocabularySet((a, other, load_vocabulary("generic")))
