"""The county's definitions file: every refusal names the file, the line, the metric and the
field; filters select exactly the calls they describe; values are read by type."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.kernel.custom_fields import (
    EMPTY,
    CustomDefinitionError,
    check_source_fields,
    load_definitions,
    parse_definitions,
)
from hub.kernel.errors import ConfigError

HEAD = """name: county
version: 1
fields:
  housing:
    type: enum
    values: [housed, sheltered, unsheltered]
    label: Housing status
    sources: [cad, intake]
  age:
    type: integer
    min: 0
    max: 120
    label: Age in years
    sources: [intake]
  veteran:
    type: boolean
    label: Veteran
    sources: [intake]
  first_seen:
    type: date
    label: First seen by the program
    sources: [intake]
  plan:
    type: boolean
    label: Safety plan
    sources: [intake]
    sensitive: true
metrics:
"""  # the metrics start on line 29


def refused(metrics: str, head: str = HEAD) -> str:
    with pytest.raises(CustomDefinitionError) as info:
        parse_definitions(head + metrics, "county.yaml")
    return str(info.value)


def test_a_valid_file_loads_with_its_label_and_digest() -> None:
    d = parse_definitions(
        HEAD
        + """  - id: holds_unsheltered
    label: Holds among unsheltered people
    grain: month
    denominator: {housing: unsheltered}
    numerator: {housing: unsheltered, outcome: involuntary_hold}
  - id: adults
    label: Adults
    denominator: {}
    numerator: {age: {min: 18}}
""",
        "county.yaml",
    )
    assert d.label == "county@1" and d.digest.startswith("sha256:")
    assert [m.id for m in d.metrics] == ["holds_unsheltered", "adults"]
    assert set(d.from_source("cad")) == {"housing"}
    assert d.metrics[1].describe()["numerator"] == {"age": {"min": 18, "max": None}}


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        (
            "  - id: m\n    label: M\n    denominator: {}\n    numerator: {houzing: housed}\n",
            "county.yaml:32: metric 'm': numerator: field 'houzing': unknown field",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {}\n    numerator: {housing: homeless}\n",
            "county.yaml:32: metric 'm': numerator: field 'housing': value 'homeless' is not allowed "
            "(allowed: housed, sheltered, unsheltered)",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {}\n    numerator: {veteran: maybe}\n",
            "county.yaml:32: metric 'm': numerator: field 'veteran': must be true or false",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {}\n    numerator: {age: {min: eighteen}}\n",
            "county.yaml:32: metric 'm': numerator: field 'age': must be a whole number",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {}\n    numerator: {outcome: jailed}\n",
            "county.yaml:32: metric 'm': numerator: field 'outcome': value 'jailed' is not allowed",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {housing: unsheltered}\n"
            "    numerator: {outcome: arrest_or_citation}\n",
            "county.yaml:32: metric 'm': numerator: field 'housing': the numerator is not a subset of the "
            "denominator",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {housing: [housed]}\n"
            "    numerator: {housing: [housed, sheltered]}\n",
            "county.yaml:32: metric 'm': numerator: field 'housing': the numerator is not a subset",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {age: {min: 18}}\n    numerator: {age: {min: 10}}\n",
            "county.yaml:32: metric 'm': numerator: field 'age': the numerator is not a subset",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {}\n    numerator: {plan: true}\n",
            "county.yaml:32: metric 'm': numerator: field 'plan': a sensitive field is never a metric",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {}\n    numerator: {}\n"
            "  - id: m\n    label: again\n    denominator: {}\n    numerator: {}\n",
            "county.yaml:33: metric 'm': duplicate id (first on line 29)",
        ),
        (
            "  - id: m\n    label: M\n    denominator: {bh: true}\n    numerator: {bh: true}\n",
            "county.yaml:31: metric 'm': denominator: field 'bh': every metric counts behavioral-health",
        ),
        (
            "  - id: m\n    label: M\n    grain: day\n    denominator: {}\n    numerator: {}\n",
            "county.yaml:31: metric 'm': grain: 'day' is not published",
        ),
        (
            "  - id: Bad-Id\n    label: M\n    denominator: {}\n    numerator: {}\n",
            "county.yaml:29: metric: id is lower-case letters",
        ),
        ("  - id: m\n    label: M\n    numerator: {}\n", "county.yaml:29: metric 'm': denominator: required"),
        (
            "  - id: m\n    label: M\n    denominator: {}\n"
            "    numerator: {first_seen: {from: 2024-02-01, to: 2024-01-01}}\n",
            "county.yaml:32: metric 'm': numerator: field 'first_seen': the range's min is above its max",
        ),
    ],
)
def test_a_metric_that_breaks_the_rules_is_refused_naming_file_line_metric_and_field(
    metrics: str, message: str
) -> None:
    assert message in refused(metrics)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            "  outcome:\n    type: boolean\n    label: O\n    sources: [cad]\n",
            "county.yaml:4: field 'outcome': the name of a built-in field",
        ),
        (
            "  x:\n    type: text\n    label: X\n    sources: [cad]\n",
            "county.yaml:5: field 'x': type must be one of enum, integer, boolean, date",
        ),
        ("  x:\n    type: enum\n    label: X\n    sources: [cad]\n", "county.yaml:4: field 'x': values:"),
        (
            "  x:\n    type: boolean\n    label: X\n    sources: [fax]\n",
            "county.yaml:7: field 'x': sources: unknown source 'fax' (cad, intake, case)",
        ),
        (
            "  x:\n    type: boolean\n    label: X\n    sources: [cad]\n    sensitive: true\n",
            "county.yaml:7: field 'x': a sensitive field comes from the intake or the case system only",
        ),
        (
            "  x:\n    type: boolean\n    label: X\n    sources: [cad]\n  x:\n    type: boolean\n",
            "county.yaml:8: fields: 'x' is given twice (first on line 4)",
        ),
        (
            "  x:\n    type: integer\n    min: 5\n    max: 1\n    label: X\n    sources: [intake]\n",
            "county.yaml:6: field 'x': min is above max",
        ),
    ],
)
def test_a_field_that_breaks_the_rules_is_refused(fields: str, message: str) -> None:
    assert message in refused("", head=f"name: county\nversion: 1\nfields:\n{fields}")


def test_a_file_without_name_or_version_is_refused() -> None:
    assert "name: required" in refused("", head="version: 1\n")
    assert "version: a whole number from 1" in refused("", head="name: x\nversion: one\n")
    assert "unknown key 'metric'" in refused("", head="name: x\nversion: 1\nmetric: []\n")


def test_filters_select_the_calls_they_describe() -> None:
    d = parse_definitions(
        HEAD
        + """  - id: m
    label: M
    denominator: {housing: [sheltered, unsheltered], age: {min: 18, max: 64}}
    numerator: {housing: unsheltered, age: {min: 18, max: 64}, first_seen: {from: 2024-01-01}, veteran: true}
""",
        "county.yaml",
    )
    m = d.metrics[0]

    def row(**custom: object) -> dict[str, object]:
        return {"outcome": None, "custom": custom}

    assert d.matches(m.denominator, row(housing="sheltered", age=40))
    assert not d.matches(m.denominator, row(housing="housed", age=40))
    assert not d.matches(m.denominator, row(housing="sheltered", age=70))
    assert not d.matches(m.denominator, row(housing="sheltered"))  # not recorded: never matches
    assert d.matches(m.numerator, row(housing="unsheltered", age=18, first_seen="2024-03-02", veteran=True))
    assert not d.matches(
        m.numerator, row(housing="unsheltered", age=18, first_seen="2023-12-31", veteran=True)
    )
    # the source's words, as a CAD column gives them, are read by the field's type
    assert d.matches(
        m.numerator, row(housing=" UNSHELTERED ", age="18", first_seen="2024-01-01", veteran="Y")
    )
    assert d.value(row(housing="homeless"), "housing") is None
    assert d.value({"custom": '{"first_seen": "2024-05-06"}'}, "first_seen") == date(2024, 5, 6)  # jsonb text


def test_intake_values_are_checked_by_type_without_quoting_them() -> None:
    d = parse_definitions(HEAD, "county.yaml")
    age, housing, first = d.fields["age"], d.fields["housing"], d.fields["first_seen"]
    assert age.check(121) == "must be at most 120" and age.check("12") == "must be a whole number"
    assert age.check(True) == "must be a whole number" and age.check(30) is None
    assert housing.check("homeless") == "must be one of housed, sheltered, unsheltered"
    assert first.check("2024-13-01") == "must be a date (YYYY-MM-DD)"


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["housed", "sheltered", "unsheltered", None]),
            st.one_of(st.none(), st.integers(0, 120)),
        ),
        max_size=40,
    )
)
def test_a_numerator_never_exceeds_its_denominator(people: list[tuple[str | None, int | None]]) -> None:
    d = parse_definitions(
        HEAD
        + """  - id: m
    label: M
    denominator: {age: {min: 18}}
    numerator: {age: {min: 18, max: 64}, housing: [sheltered, unsheltered]}
""",
        "county.yaml",
    )
    m = d.metrics[0]
    rows = [{"custom": {k: v for k, v in (("housing", h), ("age", a)) if v is not None}} for h, a in people]
    num = sum(d.matches(m.numerator, r) for r in rows)
    den = sum(d.matches(m.denominator, r) for r in rows)
    assert num <= den
    assert num == sum(
        1 for h, a in people if a is not None and 18 <= a <= 64 and h in ("sheltered", "unsheltered")
    )


def test_loading_follows_the_file_and_profiles_are_checked(tmp_path: Path) -> None:
    assert load_definitions(None) is EMPTY
    path = tmp_path / "defs.yaml"
    path.write_text(HEAD)
    assert load_definitions(path).version == 1
    path.write_text(
        HEAD.replace("version: 1", "version: 2") + "  - id: x\n    label: X\n    denominator: {}\n"
        "    numerator: {}\n"
    )
    assert load_definitions(path).version == 2  # re-read when the file changes
    with pytest.raises(CustomDefinitionError, match="no such definitions file"):
        load_definitions(tmp_path / "missing.yaml")
    check_source_fields(load_definitions(path), "cad", ["housing"], "profile p")
    with pytest.raises(ConfigError, match="custom field 'age' does not list cad"):
        check_source_fields(load_definitions(path), "cad", ["age"], "profile p")
    with pytest.raises(ConfigError, match="custom field 'nope' is not declared"):
        check_source_fields(load_definitions(path), "cad", ["nope"], "profile p")
