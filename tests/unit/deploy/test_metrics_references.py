"""Every metric the Prometheus rules and the Grafana dashboard reference is exposed by
hub/kernel/metrics.py (so a rename cannot silently blind an alert)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from hub.kernel import metrics
from hub.kernel.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
METRIC_RE = re.compile(r"\bhub_[a-z0-9_]+\b")


def exposed_names() -> set[str]:
    """Sample names the module's metrics expose (counter _total, histogram _bucket/_sum/_count)."""
    names: set[str] = set()
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names


def alert_exprs() -> list[str]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "coresponder-hub.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def referenced(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC_RE.findall(e)}


def test_alert_rules_reference_defined_metrics() -> None:
    missing = referenced(alert_exprs()) - exposed_names()
    assert not missing, f"alerts reference metrics not in hub/kernel/metrics.py: {sorted(missing)}"


def test_dashboard_references_defined_metrics() -> None:
    missing = referenced(dashboard_exprs()) - exposed_names()
    assert not missing, f"dashboard references metrics not in hub/kernel/metrics.py: {sorted(missing)}"


def test_required_alerts_present() -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    names = {rule["alert"] for group in doc["groups"] for rule in group["rules"]}
    assert {
        "HubProjectionLagHigh",
        "HubDeadLetterGrowth",
        "HubDeliveryFailures",
        "HubVerificationFailed",
    } <= names
    for group in doc["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


def test_every_metric_is_shown_somewhere() -> None:
    """The operator can see every metric family on the dashboard or is alerted on it."""
    shown = referenced(dashboard_exprs()) | referenced(alert_exprs())
    families = {n.removesuffix("_bucket") for n in shown}
    for name in exposed_names():
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in shown or base in families, f"{name} appears on no dashboard panel and in no alert"


def test_prometheus_config_loads_the_rules() -> None:
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert "alerts.yml" in cfg["rule_files"]
    assert Path(DEPLOY / "prometheus" / cfg["rule_files"][0]).exists()
