"""Settings precedence: environment over the YAML file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.kernel.settings import Settings


def test_defaults_are_a_local_development_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    s = Settings()
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.core_schema == "hub_core"
    assert s.is_development


def test_yaml_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("kafka:\n  bootstrap: kafka-0:9092\n  topic_prefix: county\npostgres:\n  schema: rm\n")
    monkeypatch.setenv("HUB_CONFIG", str(cfg))
    s = Settings()
    assert s.kafka.bootstrap == "kafka-0:9092"
    assert s.postgres.schema_ == "rm"
    assert s.core_schema == "county_core"
    monkeypatch.setenv("HUB_KAFKA__BOOTSTRAP", "kafka-1:9092")
    assert Settings().kafka.bootstrap == "kafka-1:9092"


def test_settings_file_must_be_a_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("- not a mapping\n")
    monkeypatch.setenv("HUB_CONFIG", str(cfg))
    with pytest.raises(ValueError, match="mapping"):
        Settings()
