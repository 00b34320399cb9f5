"""Token validation: signature, algorithm, issuer, audience, expiry, role claims."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hub.entry.api.auth import AuthError, DevIssuer, TokenVerifier, principal_from_claims, public_jwk
from hub.entry.api.roles import Role
from hub.kernel.settings import Settings


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
