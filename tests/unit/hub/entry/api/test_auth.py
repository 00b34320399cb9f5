"""Token validation: signature, algorithm, issuer, audience, expiry, role claims."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
import types
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hub.entry.api.app import create_app
from hub.entry.api.auth import (
    AuthError,
    DevIssuer,
    JwksCache,
    TokenVerifier,
    principal_from_claims,
    public_jwk,
)
from hub.entry.api.roles import Role
from hub.kernel.errors import ConfigError
from hub.kernel.settings import ApiSettings, Settings


@pytest.fixture(scope="module")
def dev_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(state_dir=tmp_path_factory.mktemp("state"), environment="development")


@pytest.fixture(scope="module")
def issuer(dev_settings: Settings) -> DevIssuer:
    return DevIssuer.open(dev_settings)


@pytest.fixture(scope="module")
def verifier(dev_settings: Settings, issuer: DevIssuer) -> TokenVerifier:
    return TokenVerifier(dev_settings, jwks=issuer.jwks())


def test_dev_key_is_private_and_stable(dev_settings: Settings, issuer: DevIssuer) -> None:
    path: Path = dev_settings.keys_dir / "jwt-dev.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    assert DevIssuer.open(dev_settings).jwk == issuer.jwk


def test_round_trip(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    p = verifier.verify(issuer.mint(sub="alice", role="clinician", program="coresp-1"))
    assert (p.sub, p.role, p.program) == ("alice", Role.CLINICIAN, "coresp-1")
    assert p.token_id


def test_expired_rejected(issuer: DevIssuer, verifier: TokenVerifier) -> None:
    token = issuer.mint(sub="a", role="analyst", ttl_seconds=60, now=time.time() - 3600)
    with pytest.raises(AuthError, match="expired"):
        verifier.verify(token)


def _forge(claims: dict, key: rsa.RSAPrivateKey, kid: str, alg: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _claims(settings: Settings, **over: object) -> dict:
    now = int(time.time())
    base = {
        "iss": settings.api.jwt_issuer,
        "aud": settings.api.jwt_audience,
        "sub": "x",
        "role": "admin",
        "iat": now,
        "exp": now + 300,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"iss": "https://evil.example"}, "(?i)issuer"),
        ({"aud": "someone-else"}, "(?i)audience"),
        ({"exp": None}, "exp"),
        ({"sub": None}, "sub"),
        ({"role": "superuser"}, "role"),
    ],
)
def test_bad_claims_rejected(
    dev_settings: Settings, issuer: DevIssuer, verifier: TokenVerifier, override: dict, match: str
) -> None:
    token = _forge(_claims(dev_settings, **override), issuer.key, issuer.jwk["kid"])
    with pytest.raises(AuthError, match=match):
        verifier.verify(token)


def test_other_key_rejected(dev_settings: Settings, issuer: DevIssuer, verifier: TokenVerifier) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError):
        verifier.verify(_forge(_claims(dev_settings), other, issuer.jwk["kid"]))
    with pytest.raises(AuthError, match="unknown key"):
        verifier.verify(_forge(_claims(dev_settings), other, public_jwk(other.public_key())["kid"]))


def test_symmetric_and_none_algorithms_rejected(dev_settings: Settings, verifier: TokenVerifier) -> None:
    hs = jwt.encode(_claims(dev_settings), "secret-secret-secret-secret-32b!", algorithm="HS256")
    with pytest.raises(AuthError, match="RS256"):
        verifier.verify(hs)
    with pytest.raises(AuthError):
        verifier.verify("not.a.token")


def test_roles_list_claim_accepted() -> None:
    p = principal_from_claims({"sub": "s", "roles": ["offline_access", "auditor"]})
    assert p.role == Role.AUDITOR


def test_production_never_generates_a_dev_key(tmp_path: Path) -> None:
    with pytest.raises(AuthError):
        DevIssuer.open(Settings(state_dir=tmp_path, environment="production"))


def test_production_without_jwks_refuses(tmp_path: Path) -> None:
    with pytest.raises(AuthError):
        TokenVerifier(Settings(state_dir=tmp_path, environment="production"))


def test_discovery_document(issuer: DevIssuer, dev_settings: Settings) -> None:
    doc = issuer.discovery("http://127.0.0.1:8080/")
    assert doc["issuer"] == dev_settings.api.jwt_issuer
    assert doc["jwks_uri"] == "http://127.0.0.1:8080/dev-issuer/jwks.json"
    assert issuer.jwks()["keys"][0]["kty"] == "RSA"


@pytest.mark.parametrize("sub", ["", "   ", 42])
def test_an_empty_or_non_string_sub_is_refused(
    dev_settings: Settings, issuer: DevIssuer, verifier: TokenVerifier, sub: object
) -> None:
    token = _forge(_claims(dev_settings, sub=sub), issuer.key, issuer.jwk["kid"])
    with pytest.raises(AuthError, match=r"(?i)sub"):
        verifier.verify(token)


def test_a_token_longer_lived_than_the_maximum_is_refused(
    dev_settings: Settings, issuer: DevIssuer, verifier: TokenVerifier
) -> None:
    limit = dev_settings.api.max_token_lifetime_seconds
    now = int(time.time())
    ok = _forge(_claims(dev_settings, iat=now, exp=now + limit), issuer.key, issuer.jwk["kid"])
    assert verifier.verify(ok).sub == "x"
    long = _forge(_claims(dev_settings, iat=now, exp=now + limit + 1), issuer.key, issuer.jwk["kid"])
    with pytest.raises(AuthError, match=f"exceeds the maximum of {limit}s"):
        verifier.verify(long)
    decade = issuer.mint(sub="a", role="analyst", ttl_seconds=10 * 365 * 86400)
    with pytest.raises(AuthError, match="lifetime"):
        verifier.verify(decade)


def test_production_refuses_a_plaintext_jwks_url(tmp_path: Path) -> None:
    for url in ("http://idp.example.org/jwks", "idp.example.org/jwks"):
        prod = Settings(state_dir=tmp_path, environment="production", api=ApiSettings(jwks_url=url))
        with pytest.raises(ConfigError, match=r"api\.jwks_url .* must be an https:// URL"):
            TokenVerifier(prod)
    prod = Settings(
        state_dir=tmp_path, environment="production", api=ApiSettings(jwks_url="https://idp.example.org/jwks")
    )
    assert TokenVerifier(prod)  # no fetch until a token needs a key


class _SlowJwks(http.server.BaseHTTPRequestHandler):
    """A slow identity provider: answers its JWKS after ``delay`` seconds."""

    delay = 1.5
    document: bytes = b""
    served = 0
    requested = threading.Event()

    def do_GET(self) -> None:
        self.requested.set()
        time.sleep(self.delay)
        type(self).served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.document)))
        self.end_headers()
        self.wfile.write(self.document)

    def log_message(self, *args: object) -> None:
        pass


async def test_a_slow_identity_provider_never_stalls_the_api(
    tmp_path: Path, dev_settings: Settings, issuer: DevIssuer
) -> None:
    """While the JWKS takes 1.5 s, another request is answered at once; the token request
    then succeeds and the keys are cached (the next token needs no fetch)."""
    _SlowJwks.document = json.dumps(issuer.jwks()).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowJwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        settings = dev_settings.model_copy(update={"api": ApiSettings(jwks_url=url)})
        verifier = TokenVerifier(settings)
        app = create_app(settings, types.SimpleNamespace(), types.SimpleNamespace(), verifier)
        token = issuer.mint(sub="alice", role="analyst")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            me = asyncio.create_task(client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}))
            assert await asyncio.to_thread(_SlowJwks.requested.wait, 5)  # the token request waits for it
            started = time.monotonic()
            page = await client.get("/dashboard/")
            assert page.status_code == 200 and time.monotonic() - started < 0.5
            assert not me.done()
            assert (await me).status_code == 200
            again = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert again.status_code == 200 and _SlowJwks.served == 1
    finally:
        server.shutdown()
        server.server_close()


async def test_jwks_cache_refetches_for_an_unknown_kid_at_most_every_interval(issuer: DevIssuer) -> None:
    now = [0.0]
    fetched: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(1)
        return httpx.Response(200, json=issuer.jwks())

    cache = JwksCache(
        "https://idp.example/jwks", ttl=300, min_refetch=30, clock=lambda: now[0],
        client=lambda: httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    assert await cache.key(issuer.jwk["kid"]) is not None and len(fetched) == 1
    for _ in range(5):
        with pytest.raises(AuthError, match="unknown key"):
            await cache.key("rotated-away")
    assert len(fetched) == 1  # inside min_refetch: no hammering of the IdP
    now[0] = 31
    with pytest.raises(AuthError, match="unknown key"):
        await cache.key("rotated-away")
    assert len(fetched) == 2
    now[0] = 400  # expired: refetched on the next use
    await cache.key(issuer.jwk["kid"])
    assert len(fetched) == 3
