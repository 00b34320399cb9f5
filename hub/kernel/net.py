"""Network address helpers shared by every layer (pure)."""

from __future__ import annotations

import ipaddress


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
