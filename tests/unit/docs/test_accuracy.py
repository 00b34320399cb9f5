"""The documentation names what the code has: every metric, every API route, every
component kind used in the operator guide, every hub command it tells people to run."""

from __future__ import annotations

import re

import pytest
from prometheus_client.metrics import MetricWrapperBase

from hub.kernel import metrics
from hub.kernel.settings import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"


def metric_names() -> set[str]:
    names = set()
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            family = next(iter(obj.describe()))
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def test_analyst_guide_defines_every_metric() -> None:
    text = (DOCS / "analysts.md").read_text()
    documented = set(re.findall(r"`(hub_[a-z0-9_]+)`", text))
    assert metric_names() <= documented, sorted(metric_names() - documented)
    assert documented <= metric_names(), sorted(documented - metric_names())


def test_api_doc_lists_every_route(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hub.entry.api.app import create_app
    from hub.entry.api.auth import DevIssuer, TokenVerifier
    from hub.kernel.settings import Settings

    settings = Settings(state_dir=tmp_path)
    issuer = DevIssuer.open(settings)
    # routes are registered at construction; no dependency is called
    app = create_app(settings, None, None, TokenVerifier(settings, jwks=issuer.jwks()), dev_issuer=issuer)  # type: ignore[arg-type]
    routes = app.openapi()["paths"]  # every /v1/ route, /healthz and /metrics are in the document
    paths = {p for p in routes if p.startswith("/v1/") or p in ("/healthz", "/metrics")}
    text = (DOCS / "api.md").read_text()
    missing = {p for p in paths if f"`GET {p.split('{')[0]}" not in text}
    assert len(paths) >= 12
    assert not missing, sorted(missing)


def test_operator_guide_component_examples_load() -> None:
    """Every ``components:`` example of the operator guide is a valid config file: its kinds
    are registered under the names it writes, and every option it shows is known and valid."""
    import yaml

    from connectors.registry import KINDS, expand_env, parse_components

    text = (DOCS / "operators.md").read_text()
    kinds = set(re.findall(r"kind: ([a-z0-9_-]+)", text))
    assert kinds and kinds <= set(KINDS), sorted(kinds - set(KINDS))
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if b.startswith("components:")]
    assert len(blocks) >= 2
    for block in blocks:
        env = {name: "x" for name in re.findall(r"\$\{([A-Z_]+)\}", block)}
        configs = parse_components(expand_env(yaml.safe_load(block), env)["components"], "operators.md")
        assert {c.kind for c in configs} <= set(KINDS)


@pytest.mark.parametrize("doc", ["operators.md", "analysts.md", "api.md"])
def test_hub_commands_in_docs_exist(doc: str) -> None:
    from typer.main import get_command

    from hub.entry.cli import app

    root = get_command(app)
    text = (DOCS / doc).read_text()
    for group in sorted(set(re.findall(r"^\s*(?:[A-Z_]+=\S+ )*hub ([a-z-]+)", text, re.M))):
        assert group in root.commands, f"{doc}: `hub {group}` is not a command"  # type: ignore[attr-defined]
