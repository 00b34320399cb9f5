"""TLS for the inbound receivers (the HTTP receivers and the MLLP listener).

Every receiver kind has the same two settings:

- ``tls: {certfile, keyfile, client_cafile}``: the receiver serves TLS 1.2+ with this
  certificate; with ``client_cafile`` it also requires a client certificate signed by that
  CA (mutual TLS);
- ``tls_terminated_in_front: true``: a proxy or load balancer in front of the receiver
  terminates TLS, so the receiver itself listens in plaintext (on loopback or a private
  interface only the proxy reaches).

Outside development a receiver with neither is refused when it is built
(:func:`server_context` raises :class:`hub.kernel.errors.ConfigError`): PHI and the
signed requests that carry it never cross a network in clear by default.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from hub.kernel.errors import ConfigError


class TlsFiles(BaseModel):
    """The server certificate (PEM chain), its private key and, for mutual TLS, the CA
    that signs the clients' certificates."""

    model_config = ConfigDict(extra="forbid")

    certfile: Path
    keyfile: Path
    client_cafile: Path | None = None


class TlsServerConfig(BaseModel):
    """The TLS settings every receiver config has (see the module docstring)."""

    tls: TlsFiles | None = None
    tls_terminated_in_front: bool = Field(
        False, description="TLS is terminated by a proxy in front of the receiver (it listens in plaintext)"
    )


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context for ``files`` (TLS 1.2 at least; client certificates required when
    ``client_cafile`` is given). Unreadable or mismatched files raise ConfigError naming them."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(files.certfile), str(files.keyfile))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"tls: cannot load certificate {files.certfile} with key {files.keyfile}: "
            f"{getattr(exc, 'strerror', None) or type(exc).__name__}"
        ) from None
    if files.client_cafile is not None:
        try:
            ctx.load_verify_locations(cafile=str(files.client_cafile))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"tls: cannot load client CA {files.client_cafile}: "
                f"{getattr(exc, 'strerror', None) or type(exc).__name__}"
            ) from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(config: TlsServerConfig, *, name: str, development: bool) -> ssl.SSLContext | None:
    """The SSL context a receiver serves with, or None for plaintext — which outside
    development needs ``tls_terminated_in_front: true`` (else ConfigError naming ``name``)."""
    if config.tls is not None:
        return tls_context(config.tls)
    if development or config.tls_terminated_in_front:
        return None
    raise ConfigError(
        f"{name}: refusing to listen in plaintext outside development: set tls "
        "(certfile, keyfile) or, when a proxy in front of it terminates TLS, tls_terminated_in_front: true"
    )
