"""A scan of the whole token survives other processes: namespaces share one token, and an
object another process destroys between the scan finding it and reading its label (a
test namespace torn down meanwhile) is skipped, never an error of this process's start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pkcs11 import Attribute
from pkcs11.exceptions import ObjectHandleInvalid

from hub.kernel.token import Token, TokenConfig


class Obj:
    def __init__(self, label: str | None) -> None:
        self.label = label  # None: destroyed by another process after the scan found it
        self.destroyed = False

    def __getitem__(self, attribute: Attribute) -> str:
        assert attribute == Attribute.LABEL
        if self.label is None:
            raise ObjectHandleInvalid()
        return self.label

    def destroy(self) -> None:
        self.destroyed = True


class Session:
    def __init__(self, objects: list[Obj]) -> None:
        self.objects = objects

    def get_objects(self, query: dict[Any, Any]) -> list[Obj]:
        return list(self.objects)


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> tuple[Token, list[Obj]]:
    objects = [Obj("ns1/epoch/1"), Obj(None), Obj("ns2/epoch/4"), Obj("ns1/epoch/3")]
    t = Token(TokenConfig(Path("/nonexistent.so"), "hub", "0000", None), "ns1")
    t._open = True
    monkeypatch.setattr(t, "_session", lambda: Session(objects))
    return t, objects


def test_a_scan_skips_objects_destroyed_meanwhile(token: tuple[Token, list[Obj]]) -> None:
    t, objects = token
    assert [n for n, _ in t._namespace_objects()] == [1, 3]
    assert t.destroy_namespace() == ["ns1/epoch/1", "ns1/epoch/3"]
    assert [o.destroyed for o in objects] == [True, False, False, True]
