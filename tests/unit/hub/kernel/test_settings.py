"""Settings precedence: environment over the YAML file over defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from hub.kernel.errors import ConfigError
from hub.kernel.settings import PROJECT_ROOT, Settings, get_settings


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


# ------------------------------------------------- names PostgreSQL cannot use fail up front

PREFIX_RULE = "use lower-case letters, digits and _"


def test_a_topic_prefix_that_cannot_name_a_schema_is_refused_naming_field_and_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    with pytest.raises(ValidationError) as caught:
        Settings(kafka={"topic_prefix": "County-A"})
    text = str(caught.value)
    assert "kafka.topic_prefix" in text and "County-A_core" in text and PREFIX_RULE in text

    monkeypatch.setenv("HUB_KAFKA__TOPIC_PREFIX", "County-A")
    with pytest.raises(ValidationError) as from_env:
        Settings()
    assert "kafka.topic_prefix" in str(from_env.value) and PREFIX_RULE in str(from_env.value)
    # the process-wide settings: one line naming the field, its variable and the rule
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as config:
            get_settings()
    finally:
        get_settings.cache_clear()
    message = str(config.value)
    assert "\n" not in message
    assert message.startswith("invalid settings: kafka.topic_prefix (HUB_KAFKA__TOPIC_PREFIX): topic_prefix")
    assert PREFIX_RULE in message and "Value error" not in message


@pytest.mark.parametrize("prefix", ["county_a", "_x", "a" * 58])
def test_usable_prefixes_pass(prefix: str) -> None:
    assert Settings(kafka={"topic_prefix": prefix}).core_schema == f"{prefix}_core"


@pytest.mark.parametrize("prefix", ["County-A", "1county", "a.b", "", "a" * 59])
def test_unusable_prefixes_fail(prefix: str) -> None:
    with pytest.raises(ValidationError, match=r"kafka\.topic_prefix"):
        Settings(kafka={"topic_prefix": prefix})


def test_a_schema_name_postgres_cannot_use_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_POSTGRES__SCHEMA", "Read-Models")
    with pytest.raises(ValidationError, match=r"postgres\.schema(.|\n)*lower-case letters"):
        Settings()
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"postgres\.schema \(HUB_POSTGRES__SCHEMA\): postgres\.schema"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_cli_reports_invalid_settings_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_KAFKA__TOPIC_PREFIX="County-A", HUB_STATE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "hub.entry.cli", "infra", "status"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    head = "error: ConfigError: invalid settings: kafka.topic_prefix (HUB_KAFKA__TOPIC_PREFIX): "
    assert lines[0].startswith(head)
    assert PREFIX_RULE in lines[0] and done.stdout == ""


def test_production_refuses_kafka_without_tls_unless_overridden(tmp_path: Path) -> None:
    for protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        with pytest.raises(ValidationError, match="allow_plaintext"):
            Settings(state_dir=tmp_path, environment="production", kafka={"security_protocol": protocol})
        s = Settings(state_dir=tmp_path, environment="production",
                     kafka={"security_protocol": protocol, "allow_plaintext": True})
        assert s.kafka.security_protocol == protocol
    assert Settings(state_dir=tmp_path, kafka={"security_protocol": "PLAINTEXT"}).is_development  # dev may
    assert Settings(state_dir=tmp_path, environment="production").kafka.security_protocol == "SASL_SSL"


def test_a_cross_field_rule_reads_as_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("HUB_ENVIRONMENT", "production")
    monkeypatch.setenv("HUB_KAFKA__SECURITY_PROTOCOL", "PLAINTEXT")
    try:
        rule = r"^invalid settings: kafka.security_protocol PLAINTEXT has no TLS"
        with pytest.raises(ConfigError, match=rule):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_areas_name_one_map_per_grain(tmp_path: Path) -> None:
    one = {"grain": "beat", "geojson": str(tmp_path / "b.geojson"), "id_property": "beat"}
    with pytest.raises(ValidationError, match="at most one map per grain"):
        Settings(state_dir=tmp_path, areas={"maps": [one, one]})
    with pytest.raises(ValidationError, match="grain"):
        Settings(state_dir=tmp_path, areas={"maps": [{**one, "grain": "ward"}]})
    assert Settings(state_dir=tmp_path, areas={"maps": [one]}).areas.maps[0].id_property == "beat"
