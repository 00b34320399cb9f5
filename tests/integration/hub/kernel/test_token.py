"""The development token (SoftHSM2): ``ensure_dev_token`` initialises it once, keeps an
epoch-layout token as it is, and deletes and initialises again a token of the older
one-object-per-person layout (thousands of objects that made every operation slow)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hub.kernel.settings import Settings
from hub.kernel.token import LAYOUT, ensure_dev_token, softhsm_dir, softhsm_module
from tests.conftest import in_ci

pytestmark = pytest.mark.integration


def objects(settings: Settings) -> list[Path]:
    return sorted((softhsm_dir(settings) / "tokens").glob("*/*.object"))


def test_an_old_layout_dev_token_is_initialised_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if softhsm_module() is None or shutil.which("softhsm2-util") is None:
        if in_ci():
            pytest.fail("SoftHSM2 is not installed (.ci/run installs softhsm2)")
        pytest.skip("SoftHSM2 is not installed (hub infra setup)")
    monkeypatch.delenv("SOFTHSM2_CONF", raising=False)  # ensure_dev_token sets it: restored afterwards
    settings = Settings(state_dir=tmp_path)
    ensure_dev_token(settings)
    marker = softhsm_dir(settings) / f"{settings.keystore.token_label}.layout"
    assert marker.read_text().strip() == LAYOUT
    [token_dir] = {p.parent for p in objects(settings)}
    ensure_dev_token(settings)
    assert {p.parent for p in objects(settings)} == {token_dir}  # kept as it is

    for i in range(3):  # as the per-person layout left it (object files of no epoch key)
        (token_dir / f"old{i}.object").write_bytes(b"x")
    marker.unlink()
    ensure_dev_token(settings)
    assert marker.read_text().strip() == LAYOUT
    assert not token_dir.exists()  # the old token is gone, a fresh one replaces it
    assert [p.name for p in objects(settings)] == ["token.object"]
