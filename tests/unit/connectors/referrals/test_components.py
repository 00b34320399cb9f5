"""Referral component factories outside development: the MLLP listener refuses plaintext
unless TLS is terminated in front of it, and FHIR/OAuth endpoints must be https."""

from __future__ import annotations

import types
from typing import Any

import pytest

from connectors.registry import build, parse_components
from hub.kernel.errors import ConfigError


def _runtime(development: bool) -> Any:
    return types.SimpleNamespace(settings=types.SimpleNamespace(is_development=development))


def test_a_production_mllp_listener_needs_tls_or_tls_terminated_in_front() -> None:
    configs = parse_components([{"kind": "mllp-listener", "name": "m"}], "c.yaml")
    with pytest.raises(ConfigError, match=r"'m' \(mllp-listener\): refusing to listen in plaintext"):
        build(_runtime(False), configs)


@pytest.mark.parametrize(
    ("field", "url"),
    [("base_url", "http://ehr.example.org/fhir"), ("token_url", "http://ehr.example.org/token")],
)
def test_production_fhir_endpoints_must_be_https(field: str, url: str) -> None:
    auth = {"type": "client_credentials", "client_id": "c", "token_url": "https://ehr.example.org/token"}
    dest: dict[str, Any] = {"base_url": "https://ehr.example.org/fhir", "auth": auth}
    if field == "base_url":
        dest["base_url"] = url
    else:
        auth["token_url"] = url
    kinds = (
        ("fhir-delivery", {"requesters": {"t": "Team"}}, {"display": "Clinic"}),
        ("fhir-task-poller", {}, {}),
    )
    for kind, extra, display in kinds:
        item = {"kind": kind, "name": "f", "destinations": {"clinic": {**dest, **display}}, **extra}
        configs = parse_components([item], "c")
        with pytest.raises(ConfigError, match=rf"destination clinic: .*{field} must be an https:// URL"):
            build(_runtime(False), configs)
