"""How every ``hub`` command prints (:mod:`hub.kernel.output`): ``--json`` documents
byte-for-byte as before (indent 2, the object's key order or sorted keys, ASCII-only, one
trailing newline), JSON lines for long-running commands, errors as ``error: …`` on stderr
with a non-zero exit."""

from __future__ import annotations

import json

import pytest
import typer

from hub.kernel.output import emit_json, fail, json_text

DOC = {"report": "outcomes", "b": [1, 2.5, None, True], "a": {"z": "é", "y": []}}


def test_json_text_is_indented_in_key_order_and_ascii() -> None:
    assert json_text(DOC) == (
        "{\n"
        '  "report": "outcomes",\n'
        '  "b": [\n    1,\n    2.5,\n    null,\n    true\n  ],\n'
        '  "a": {\n    "z": "\\u00e9",\n    "y": []\n  }\n'
        "}"
    )
    assert json_text(DOC) == json.dumps(DOC, indent=2)  # what every command printed before


def test_json_text_sorted_and_compact_forms() -> None:
    assert json_text(DOC, sort_keys=True) == json.dumps(DOC, indent=2, sort_keys=True)
    assert json_text(DOC, sort_keys=True).index('"a"') < json_text(DOC, sort_keys=True).index('"b"')
    assert json_text({"started": "cad", "kind": "x"}, compact=True) == '{"started": "cad", "kind": "x"}'


def test_emit_json_writes_one_document_and_a_newline_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    emit_json(DOC)
    out, err = capsys.readouterr()
    assert out == json.dumps(DOC, indent=2) + "\n" and err == ""
    assert json.loads(out) == DOC


def test_fail_prints_error_on_stderr_and_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited:
        fail("no such incident")
    assert exited.value.exit_code == 1
    assert capsys.readouterr() == ("", "error: no such incident\n")
    with pytest.raises(typer.Exit) as usage:
        fail("--by must be month or area", 2)
    assert usage.value.exit_code == 2
    with pytest.raises(ValueError):
        fail("never exit 0 on an error", 0)
