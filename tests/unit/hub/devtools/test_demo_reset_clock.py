"""``hub demo`` options: --reset refuses the default prefix; the demo's delivery workers
stamp outcomes in the simulated month (``clock: relative``)."""

from __future__ import annotations

import pytest

from hub.devtools.demo import DemoOptions, check_resettable, component_configs, demo_settings
from hub.kernel.settings import Settings


def test_reset_refuses_the_default_prefix_and_is_off_by_default() -> None:
    assert DemoOptions().reset is False
    check_resettable(demo_settings(Settings(), "demo"))
    with pytest.raises(ValueError, match="default prefix"):
        check_resettable(demo_settings(Settings(), "hub"))


def test_demo_delivery_workers_use_the_relative_clock() -> None:
    from connectors.referrals.worker import WorkerConfig

    cfgs = component_configs(
        "http://x/cad", "http://x/cases", fhir_base="http://ehr/fhir", token_url="http://ehr/t", mllp_port=1
    )
    delivery = [c for c in cfgs if c["kind"] in ("fhir-delivery", "hl7-delivery")]
    assert len(delivery) == 2
    for c in delivery:
        own = {k: v for k, v in c.items() if k not in ("kind", "name", "destinations")}
        assert WorkerConfig.model_validate(own).clock == "relative"
