"""FHIR REST client for referral delivery and Task polling (httpx, TLS verified by default).

Authentication, per destination:

- ``bearer``: a static token;
- ``client_credentials``: OAuth2 client credentials against the EHR's token endpoint, in the
  SMART Backend Services style — a signed JWT client assertion (``private_key_jwt``, RS384 by
  default) when a private key is configured, otherwise ``client_secret_basic``. The access
  token is cached until shortly before it expires and refreshed once on a 401.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, Field

from hub.kernel.errors import ConfigError, TransientError
from hub.kernel.net import https_only

FHIR_JSON = "application/fhir+json"


class AuthConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["none", "bearer", "client_credentials"] = "none"
    token: str | None = None  # bearer
    token_file: str | None = None  # bearer, read at start (mounted secret)
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    private_key_file: str | None = None  # PEM, for private_key_jwt
    key_id: str | None = None
    algorithm: str = "RS384"
    scope: str = "system/ServiceRequest.write system/Task.read system/Task.write system/Patient.write"


class TokenError(TransientError, RuntimeError):
    """The EHR's token endpoint failed or answered without a token: the delivery attempt
    counts as failed and is retried with back-off (a lasting refusal ends in
    ``referral.delivery_failed`` after the retry policy's attempts)."""


class TokenSource:
    """Produces the ``Authorization`` header value; caches client-credential tokens."""

    def __init__(self, cfg: AuthConfig, http: httpx.AsyncClient, *, skew_s: float = 30.0) -> None:
        self.cfg = cfg
        self.http = http
        self.skew_s = skew_s
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0
        if cfg.type == "bearer":
            token = cfg.token or (Path(cfg.token_file).read_text().strip() if cfg.token_file else None)
            if not token:
                raise ValueError("bearer auth needs token or token_file")
            self._token, self._expires = token, float("inf")
        elif cfg.type == "client_credentials" and not (cfg.token_url and cfg.client_id):
            raise ValueError("client_credentials auth needs token_url and client_id")

    def invalidate(self) -> None:
        if self.cfg.type == "client_credentials":
            self._token, self._expires = None, 0.0

    async def header(self) -> str | None:
        if self.cfg.type == "none":
            return None
        if self._token and time.monotonic() < self._expires:
            return f"Bearer {self._token}"
        async with self._lock:
            if not (self._token and time.monotonic() < self._expires):
                await self._fetch()
        return f"Bearer {self._token}"

    async def _fetch(self) -> None:
        cfg = self.cfg
        assert cfg.token_url and cfg.client_id
        form: dict[str, str] = {"grant_type": "client_credentials", "scope": cfg.scope}
        auth: httpx.Auth | None = None
        if cfg.private_key_file:
            now = int(time.time())
            assertion = jwt.encode(
                {
                    "iss": cfg.client_id,
                    "sub": cfg.client_id,
                    "aud": cfg.token_url,
                    "jti": str(uuid.uuid4()),
                    "iat": now,
                    "exp": now + 300,
                },
                Path(cfg.private_key_file).read_text(),
                algorithm=cfg.algorithm,
                headers={"kid": cfg.key_id} if cfg.key_id else None,
            )
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = assertion
        elif cfg.client_secret:
            auth = httpx.BasicAuth(cfg.client_id, cfg.client_secret)
        else:
            form["client_id"] = cfg.client_id
        resp = await self.http.post(
            cfg.token_url,
            data=form,
            auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
            headers={"Accept": "application/json"},
        )
        if resp.status_code != 200:
            raise TokenError(f"token endpoint answered {resp.status_code}")
        body = resp.json()
        token = body.get("access_token")
        if not token:
            raise TokenError("token endpoint answered without access_token")
        self._token = token
        self._expires = time.monotonic() + max(0.0, float(body.get("expires_in", 300)) - self.skew_s)
        self.fetches += 1


class FhirEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str
    auth: AuthConfig = AuthConfig()
    verify_tls: bool = True
    ca_file: str | None = None
    timeout_s: float = Field(30.0, gt=0)

    def check_transport(self, name: str, development: bool) -> None:
        """Outside development the FHIR base URL and the OAuth token endpoint must be
        ``https://`` and certificates verified (ConfigError naming the destination)."""
        https_only(self.base_url, f"destination {name}: base_url", development)
        if self.auth.token_url:
            https_only(self.auth.token_url, f"destination {name}: auth.token_url", development)
        if not development and not self.verify_tls:
            raise ConfigError(f"destination {name}: verify_tls: false is refused outside development")


class FhirClient:
    """One FHIR server. Methods return the raw :class:`httpx.Response`; transport failures
    raise :class:`httpx.TransportError` / :class:`TokenError`."""

    def __init__(self, endpoint: FhirEndpoint) -> None:
        self.endpoint = endpoint
        verify: Any = endpoint.ca_file if (endpoint.verify_tls and endpoint.ca_file) else endpoint.verify_tls
        self.http = httpx.AsyncClient(timeout=endpoint.timeout_s, verify=verify)
        self.tokens = TokenSource(endpoint.auth, self.http)
        self.base = endpoint.base_url.rstrip("/")

    async def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        extra = kw.pop("headers", {})
        for attempt in (1, 2):
            headers = {"Accept": FHIR_JSON, **extra}
            auth = await self.tokens.header()
            if auth:
                headers["Authorization"] = auth
            resp = await self.http.request(method, url, headers=headers, **kw)
            if resp.status_code == 401 and attempt == 1 and self.endpoint.auth.type == "client_credentials":
                self.tokens.invalidate()
                continue
            return resp
        return resp

    async def transaction(self, body: bytes) -> httpx.Response:
        return await self._request("POST", self.base + "/", content=body, headers={"Content-Type": FHIR_JSON})

    async def search(self, resource_type: str, params: dict[str, str]) -> httpx.Response:
        return await self._request("GET", f"{self.base}/{resource_type}", params=params)

    async def get_url(self, url: str) -> httpx.Response:
        return await self._request("GET", url)

    async def close(self) -> None:
        await self.http.aclose()
