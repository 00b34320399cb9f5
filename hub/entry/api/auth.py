"""Signed-token authentication: OIDC-compatible JWT validation and a development issuer.

Tokens are RS256 JWTs. Validation checks the signature against a JWKS (the operator's
identity provider at ``settings.api.jwks_url``, or — when that is empty and the hub runs in
development — the development issuer's own key), and requires ``iss``, ``aud``, ``exp``,
``iat`` and ``sub``. The hub's role comes from the ``role`` claim (or the first hub role in
a ``roles`` list, as several identity providers emit), the program from ``program``.

The development issuer's private key is ``jwt-dev.pem`` under ``settings.keys_dir``: generated
on first use in development, never committed, refused outside development.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hub.entry.api.roles import Principal, Role
from hub.kernel.errors import PermanentError
from hub.kernel.settings import Settings

DEV_KEY_FILE = "jwt-dev.pem"
ALGORITHM = "RS256"


class AuthError(PermanentError):
    """Missing, malformed, expired or untrusted token (HTTP 401)."""


class MissingToken(AuthError):
    """No bearer token at all (logged as ``no token``; any other :class:`AuthError` is a
    ``bad token``)."""


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """The RFC 7517 JWK of an RSA public key, with an RFC 7638 thumbprint as ``kid``."""
    numbers = public_key.public_numbers()
    e, n = _b64url_uint(numbers.e), _b64url_uint(numbers.n)
    thumb = hashlib.sha256(f'{{"e":"{e}","kty":"RSA","n":"{n}"}}'.encode()).digest()
    kid = base64.urlsafe_b64encode(thumb).rstrip(b"=").decode()
    return {"kty": "RSA", "use": "sig", "alg": ALGORITHM, "kid": kid, "n": n, "e": e}


def load_or_create_dev_key(settings: Settings) -> rsa.RSAPrivateKey:
    """The development issuer's RSA key (2048 bit), created 0600 on first use."""
    path = settings.keys_dir / DEV_KEY_FILE
    if not path.exists():
        if not settings.is_development:
            raise AuthError(f"{path} is missing; the development issuer only runs in development")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process won the race; read theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise AuthError(f"{path} does not hold an RSA private key")
    return loaded


@dataclass
class DevIssuer:
    """Mints tokens for local use and publishes its JWKS and OIDC discovery document."""

    settings: Settings
    key: rsa.RSAPrivateKey

    @classmethod
    def open(cls, settings: Settings) -> DevIssuer:
        return cls(settings, load_or_create_dev_key(settings))

    @property
    def jwk(self) -> dict[str, str]:
        return public_jwk(self.key.public_key())

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk]}

    def discovery(self, base_url: str) -> dict[str, Any]:
        """A minimal OpenID Provider Metadata document (issuer, jwks_uri, algorithms)."""
        return {
            "issuer": self.settings.api.jwt_issuer,
            "jwks_uri": base_url.rstrip("/") + "/dev-issuer/jwks.json",
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "role", "program", "iss", "aud", "exp", "iat"],
        }

    def mint(
        self,
        *,
        sub: str,
        role: Role | str,
        program: str | None = None,
        ttl_seconds: int = 8 * 3600,
        now: float | None = None,
    ) -> str:
        role = Role(role)
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.api.jwt_issuer,
            "aud": self.settings.api.jwt_audience,
            "sub": sub,
            "role": role.value,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_seconds,
            "jti": str(uuid.uuid4()),
        }
        if program:
            claims["program"] = program
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.jwk["kid"]})


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    """Map verified claims to a :class:`Principal` (pure)."""
    role_value = claims.get("role")
    if role_value is None and isinstance(claims.get("roles"), list):
        role_value = next((r for r in claims["roles"] if r in Role.__members__.values()), None)
    try:
        role = Role(str(role_value)) if role_value is not None else None
    except ValueError:
        role = None
    if role is None:
        raise AuthError("the token carries no hub role") from None
    program = claims.get("program")
    if program is not None and not isinstance(program, str):
        raise AuthError("the program claim must be a string")
    return Principal(
        sub=str(claims["sub"]),
        role=role,
        program=program or None,
        issuer=str(claims.get("iss", "")),
        token_id=claims.get("jti"),
    )


class TokenVerifier:
    """Validates bearer tokens against a fixed key set or a remote JWKS URL."""

    def __init__(self, settings: Settings, *, jwks: dict[str, Any] | None = None) -> None:
        self.issuer = settings.api.jwt_issuer
        self.audience = settings.api.jwt_audience
        self._client: jwt.PyJWKClient | None = None
        self._keys: dict[str, Any] = {}
        if jwks is not None:
            self._keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}
        elif settings.api.jwks_url:
            self._client = jwt.PyJWKClient(settings.api.jwks_url, cache_keys=True, lifespan=300)
        else:
            raise AuthError("no JWKS configured (set api.jwks_url or run in development)")

    def _key_for(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise AuthError(f"token algorithm must be {ALGORITHM}")
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWTError as exc:
                raise AuthError(f"no signing key: {exc}") from None
        kid = header.get("kid")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise AuthError("token signed by an unknown key")
        return self._keys[kid]

    def verify(self, token: str) -> Principal:
        """The principal of a valid token, else :class:`AuthError`."""
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return principal_from_claims(claims)
