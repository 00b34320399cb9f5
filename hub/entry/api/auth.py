"""Signed-token authentication: OIDC-compatible JWT validation and a development issuer.

Tokens are RS256 JWTs. Validation checks the signature against a JWKS (the operator's
identity provider at ``settings.api.jwks_url``, or — when that is empty and the hub runs in
development — the development issuer's own key), and requires ``iss``, ``aud``, ``exp``,
``iat`` and a non-empty ``sub``; a token whose lifetime (``exp - iat``) exceeds
``api.max_token_lifetime_seconds`` is refused. The hub's role comes from the ``role`` claim
(or the first hub role in a ``roles`` list, as several identity providers emit), the program
from ``program``.

The identity provider's JWKS is fetched asynchronously (:class:`JwksCache`: httpx, a time
limit, one fetch at a time, cached for ``api.jwks_cache_seconds``, refetched early only for
an unknown ``kid`` and at most every :data:`MIN_REFETCH_S` seconds), so a slow identity
provider delays only the requests that need a key it has not served yet — never the event
loop. Outside development the JWKS URL must be ``https://`` (ConfigError otherwise).

The development issuer's private key is ``jwt-dev.pem`` under ``settings.keys_dir``: generated
on first use in development, never committed, refused outside development.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hub.entry.api.roles import Principal, Role
from hub.kernel.errors import PermanentError
from hub.kernel.net import https_only
from hub.kernel.settings import Settings

DEV_KEY_FILE = "jwt-dev.pem"
ALGORITHM = "RS256"
#: the shortest interval between two JWKS fetches caused by unknown key ids
MIN_REFETCH_S = 30.0


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
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise AuthError("the token's sub claim must be a non-empty string")
    return Principal(
        sub=sub,
        role=role,
        program=program or None,
        issuer=str(claims.get("iss", "")),
        token_id=claims.get("jti"),
    )


class JwksCache:
    """The signing keys of a remote JWKS, fetched asynchronously (see the module docstring).

    Invariants: at most one fetch is in flight (concurrent callers wait for it, the event
    loop keeps serving others); keys are trusted for ``ttl`` seconds after a fetch; an
    unknown ``kid`` causes a refetch at most every ``min_refetch`` seconds; a failed fetch
    keeps serving the keys of the last good one until they expire."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        timeout: float = 5.0,
        min_refetch: float = MIN_REFETCH_S,
        client: Callable[[], httpx.AsyncClient] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl, self.timeout, self.min_refetch = ttl, timeout, min_refetch
        self._client = client or (lambda: httpx.AsyncClient(timeout=timeout, follow_redirects=False))
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self.ttl

    async def key(self, kid: str | None) -> Any:
        """The key for ``kid`` (the only key when the token names none), else AuthError."""
        found = self._lookup(kid) if self._fresh() else None
        if found is not None:
            return found
        async with self._lock:
            found = self._lookup(kid) if self._fresh() else None
            if found is None and self._may_fetch():
                await self._fetch()
                found = self._lookup(kid)
        if found is None:
            raise AuthError("token signed by an unknown key")
        return found

    def _may_fetch(self) -> bool:
        return not self._fresh() or self._clock() - (self._fetched_at or 0.0) >= self.min_refetch

    def _lookup(self, kid: str | None) -> Any:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with self._client() as client:
                response = await asyncio.wait_for(client.get(self.url), self.timeout)
                response.raise_for_status()
                keys = jwks_keys(response.json())
        except (httpx.HTTPError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            if self._keys and self._fresh():
                return  # keep the last good keys until they expire
            raise AuthError(
                f"the identity provider's signing keys are unavailable ({type(exc).__name__})"
            ) from None
        self._keys, self._fetched_at = keys, self._clock()


def jwks_keys(document: Any) -> dict[str, Any]:
    """``kid`` → public key of a JWKS document's RS256 signing keys (ValueError if none)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, Any] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
            continue
        keys[str(jwk.get("kid", ""))] = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
    if not keys:
        raise ValueError("the JWKS holds no RS256 signing key")
    return keys


class TokenVerifier:
    """Validates bearer tokens against a fixed key set or a remote JWKS URL
    (:class:`JwksCache`). :meth:`authenticate` is what the API awaits; :meth:`verify` checks
    a token against a fixed key set without I/O."""

    def __init__(
        self,
        settings: Settings,
        *,
        jwks: dict[str, Any] | None = None,
        client: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        api = settings.api
        self.issuer = api.jwt_issuer
        self.audience = api.jwt_audience
        self.max_lifetime = api.max_token_lifetime_seconds
        self._remote: JwksCache | None = None
        self._keys: dict[str, Any] = {}
        if jwks is not None:
            self._keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}
        elif api.jwks_url:
            url = https_only(api.jwks_url, "api.jwks_url (HUB_API__JWKS_URL)", settings.is_development)
            self._remote = JwksCache(
                url, ttl=api.jwks_cache_seconds, timeout=api.jwks_timeout_seconds, client=client
            )
        else:
            raise AuthError("no JWKS configured (set api.jwks_url or run in development)")

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        if header.get("alg") != ALGORITHM:
            raise AuthError(f"token algorithm must be {ALGORITHM}")
        return header

    def _fixed_key(self, kid: Any) -> Any:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid not in self._keys:
            raise AuthError("token signed by an unknown key")
        return self._keys[kid]

    async def authenticate(self, token: str) -> Principal:
        """The principal of a valid token, else :class:`AuthError`; a remote key is
        fetched (or taken from the cache) without blocking the event loop."""
        header = self._header(token)
        kid = header.get("kid")
        if self._remote is not None:
            key = await self._remote.key(kid if isinstance(kid, str) else None)
        else:
            key = self._fixed_key(kid)
        return self._decode(token, key)

    def verify(self, token: str) -> Principal:
        """:meth:`authenticate` for a fixed key set (no I/O; a remote JWKS needs
        :meth:`authenticate`)."""
        if self._remote is not None:
            raise AuthError("a remote JWKS is verified with authenticate()")
        return self._decode(token, self._fixed_key(self._header(token).get("kid")))

    def _decode(self, token: str, key: Any) -> Principal:
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
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > self.max_lifetime:
            raise AuthError(
                f"token lifetime {int(lifetime)}s exceeds the maximum of {self.max_lifetime}s"
            )
        return principal_from_claims(claims)
