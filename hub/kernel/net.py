"""Network address helpers shared by every layer (pure): loopback addresses, https-only URLs."""

from __future__ import annotations

import ipaddress

from hub.kernel.errors import ConfigError


def is_loopback(host: str) -> bool:
    """``host`` can only mean this machine: ``localhost``/``ip6-localhost``, ``127.0.0.0/8``
    or ``::1`` (brackets allowed). Wildcards (``0.0.0.0``, ``::``), other addresses and other
    host names are not: they may be reachable from the network."""
    name = host.strip().strip("[]").lower()
    if name in {"localhost", "ip6-localhost"}:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def https_only(url: str, what: str, development: bool) -> str:
    """``url``, which outside development must be an ``https://`` URL: identity-provider
    keys, OAuth token endpoints and EHR APIs are never trusted over plaintext in production
    (ConfigError naming ``what``, never the URL, which may carry credentials)."""
    if not development and not url.strip().lower().startswith("https://"):
        scheme = url.split(":", 1)[0].lower() if ":" in url else "scheme-less"
        raise ConfigError(f"{what} must be an https:// URL outside development (got a {scheme} URL)")
    return url
