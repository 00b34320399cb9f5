"""Pure parts of the local broker: config rendering, listeners, command line, jar stamp."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.devtools.infra import InfraError, kafka
from hub.kernel.settings import KafkaSettings, Settings


def make(tmp_path: Path, **kafka_overrides: object) -> Settings:
    return Settings(
        state_dir=tmp_path / "var", cache_dir=tmp_path / "cache", kafka=KafkaSettings(**kafka_overrides)
    )


def parse(properties: str) -> dict[str, str]:
    out = {}
    for line in properties.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in out, f"duplicate key {key}"
            out[key] = value
    return out


def test_single_node_kraft_combined_mode(tmp_path: Path) -> None:
    s = make(tmp_path)
    layout = kafka.KafkaLayout.of(s)
    props = parse(kafka.render_server_properties(s, layout, "pw"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:9092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert "controller.quorum.voters" not in props  # --standalone formatting forbids it
    assert props["log.dirs"] == str(tmp_path / "var" / "kafka" / "data")
    # single-node durability and hygiene
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "min.insync.replicas",
        "default.replication.factor",
    ):
        assert props[key] == "1"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["unclean.leader.election.enable"] == "false"


def test_ports_follow_settings(tmp_path: Path) -> None:
    s = make(tmp_path, bootstrap="localhost:19092", controller_port=19093)
    props = parse(kafka.render_server_properties(s, kafka.KafkaLayout.of(s), "pw"))
    assert props["listeners"] == "SASL_SSL://localhost:19092,CONTROLLER://localhost:19093"
    assert props["controller.quorum.bootstrap.servers"] == "localhost:19093"


def test_no_plaintext_listener_and_only_admin_and_the_broker_are_super_users(tmp_path: Path) -> None:
    """Clients need TLS + SCRAM-SHA-512, the controller listener a certificate of the
    development CA; everyone but the two super users needs an ACL."""
    s = make(tmp_path)
    props = parse(kafka.render_server_properties(s, kafka.KafkaLayout.of(s), "s3cret"))
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    assert protocols == {"CONTROLLER": "SSL", "SASL_SSL": "SASL_SSL"}
    assert "PLAINTEXT" not in props["listeners"].replace("SASL_SSL", "")
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:CN=hub-kafka-broker"
    jaas = props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert 'username="admin" password="s3cret"' in jaas
    assert props["ssl.truststore.location"] == str(tmp_path / "var" / "keys" / "kafka-ca.pem")


def test_same_client_and_controller_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="controller_port"):
        kafka.Listeners.of(make(tmp_path, bootstrap="127.0.0.1:9093", controller_port=9093))


@pytest.mark.parametrize(
    ("bootstrap", "managed"),
    [
        ("127.0.0.1:9092", True),
        ("localhost:9092", True),
        ("127.0.0.1:19092,127.0.0.1:19094", True),
        ("kafka-0.kafka:9092,kafka-1.kafka:9092", False),
        ("10.0.0.5:9092", False),
    ],
)
def test_only_loopback_brokers_are_managed(tmp_path: Path, bootstrap: str, managed: bool) -> None:
    assert kafka.is_managed(make(tmp_path, bootstrap=bootstrap)) is managed


def test_java_command_uses_settings_heap_classpath_and_log_config(tmp_path: Path) -> None:
    s = make(tmp_path, heap="384m")
    layout = kafka.KafkaLayout.of(s)
    cmd = kafka.java_command(s, layout, "/usr/bin/java")
    assert cmd[0] == "/usr/bin/java"
    assert "-Xmx384m" in cmd
    assert cmd[cmd.index("-cp") + 1] == f"{tmp_path / 'cache' / 'kafka' / 'libs'}/*"
    assert f"-Dlog4j2.configurationFile={layout.log4j2}" in cmd
    assert cmd[-2:] == ["kafka.Kafka", str(layout.properties)]


def test_log4j2_writes_server_log(tmp_path: Path) -> None:
    layout = kafka.KafkaLayout.of(make(tmp_path))
    text = kafka.render_log4j2(layout)
    assert f"appender.file.fileName = {layout.server_log}" in text
    assert "rootLogger.appenderRef.file.ref = file" in text


def test_fetch_stamp_tracks_version(tmp_path: Path) -> None:
    a = kafka.fetch_stamp(make(tmp_path))
    b = kafka.fetch_stamp(make(tmp_path, version="4.0.0"))
    assert a != b and "kafka=4.1.1" in a


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InfraError, match="java was not found"):
        kafka.require_java()


def test_missing_jars_and_maven_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InfraError, match="mvn was not found"):
        kafka.ensure_jars(make(tmp_path))


def test_jars_with_current_stamp_are_not_refetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make(tmp_path)
    layout = kafka.KafkaLayout.of(s)
    layout.libs.mkdir(parents=True)
    (layout.libs / "kafka_2.13-4.1.1.jar").write_bytes(b"")
    layout.stamp.write_text(kafka.fetch_stamp(s) + "\n")
    monkeypatch.setenv("PATH", "/nonexistent")  # mvn would be needed if it refetched
    assert kafka.ensure_jars(s) == layout.libs
