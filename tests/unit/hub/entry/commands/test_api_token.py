"""``hub api token`` never mints a token the API would refuse for its lifetime."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.entry.cli import app
from hub.kernel.settings import get_settings


def test_a_ttl_beyond_the_maximum_token_lifetime_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("HUB_API__MAX_TOKEN_LIFETIME_SECONDS", "3600")
    get_settings.cache_clear()
    try:
        mint = ["api", "token", "--role", "analyst", "--sub", "a", "--ttl"]
        refused = CliRunner().invoke(app, [*mint, "7200"])
        assert refused.exit_code != 0
        assert "exceeds api.max_token_lifetime_seconds (3600)" in refused.output
        ok = CliRunner().invoke(app, [*mint, "3600"])
        assert ok.exit_code == 0 and ok.output.count(".") == 2
    finally:
        get_settings.cache_clear()
