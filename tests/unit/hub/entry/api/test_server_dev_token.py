"""The development issuer's routes (``/dashboard/dev-token`` hands out analyst tokens to any
caller) are served only when the API binds to a loopback address."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.entry.api.app import create_app
from hub.entry.api.auth import TokenVerifier
from hub.entry.api.roles import Role
from hub.entry.api.server import dev_issuer_for, is_loopback, routed_dev_issuer
from hub.kernel.settings import Settings

DEV_ROUTES = ("/dashboard/dev-token", "/dev-issuer/jwks.json", "/.well-known/openid-configuration")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LocalHost", True),
        ("::1", True), ("[::1]", True),
        ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("192.168.1.20", False),
        ("fe80::1", False), ("api.county.example", False), ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _client(tmp_path: Path, host: str) -> tuple[TestClient, str]:
    settings = Settings(state_dir=tmp_path, environment="development")
    issuer = dev_issuer_for(settings)
    assert issuer is not None
    app = create_app(  # no lifespan: only routing and token verification are exercised
        settings, None, None, TokenVerifier(settings, jwks=issuer.jwks()),  # type: ignore[arg-type]
        dev_issuer=routed_dev_issuer(issuer, host),
    )
    return TestClient(app), issuer.mint(sub="ops-1", role=Role.AUDITOR, ttl_seconds=600)


def test_wildcard_bind_in_development_disables_dev_token_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.entry.api.server"):
        client, token = _client(tmp_path, "0.0.0.0")
    assert any(
        "development issuer routes disabled" in r.getMessage() and "0.0.0.0" in r.getMessage()
        for r in caplog.records
    )
    for path in DEV_ROUTES:
        assert client.get(path).status_code == 404, path
    # tokens minted locally (`hub api token`, needs the key file) still verify
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["role"] == "auditor"


def test_loopback_bind_in_development_serves_dev_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.entry.api.server"):
        client, _ = _client(tmp_path, "127.0.0.1")
    assert not [r for r in caplog.records if r.name == "hub.entry.api.server"]
    for path in DEV_ROUTES:
        assert client.get(path).status_code == 200, path
    minted = client.get("/dashboard/dev-token").json()["token"]
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {minted}"})
    assert me.status_code == 200 and me.json()["role"] == "analyst"


def test_no_issuer_stays_none_on_any_host() -> None:
    assert routed_dev_issuer(None, "127.0.0.1") is None
    assert routed_dev_issuer(None, "0.0.0.0") is None
