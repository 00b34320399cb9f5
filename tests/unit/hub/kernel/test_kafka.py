"""The client factory's connection (pure): TLS + SCRAM for every client, the principal's
own password file, no caller override of the connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.kernel.errors import ConfigError
from hub.kernel.kafka import KafkaClients
from hub.kernel.settings import KafkaSettings, Settings


def make(tmp_path: Path, **kafka: object) -> Settings:
    return Settings(state_dir=tmp_path, kafka=KafkaSettings(**kafka))


def test_default_connection_is_sasl_ssl_as_the_configured_principal(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "kafka-projector.password").write_text("p-secret\n")
    clients = KafkaClients(make(tmp_path, principal="projector").kafka)
    opts = clients.connection("outcomes")
    assert opts["security_protocol"] == "SASL_SSL" and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (opts["sasl_plain_username"], opts["sasl_plain_password"]) == ("projector", "p-secret")
    assert opts["client_id"] == "coresponder-hub-outcomes"
    faust = clients.faust_options("projector")["broker_credentials"]
    assert (faust.username, faust.password, faust.mechanism.value) == (
        "projector",
        "p-secret",
        "SCRAM-SHA-512",
    )
    assert faust.ssl_context is not None


def test_as_principal_switches_to_that_principals_password_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "kafka-admin.password").write_text("a")
    (keys / "kafka-analyst.password").write_text("b")
    clients = KafkaClients(make(tmp_path).kafka)
    assert clients.is_admin and clients.connection("x")["sasl_plain_password"] == "a"
    analyst = clients.as_principal("analyst")
    assert not analyst.is_admin
    assert analyst.connection("x")["sasl_plain_username"] == "analyst"
    assert analyst.connection("x")["sasl_plain_password"] == "b"


def test_a_missing_or_empty_password_file_is_a_clear_error(tmp_path: Path) -> None:
    clients = KafkaClients(make(tmp_path, principal="delivery").kafka)
    with pytest.raises(ConfigError, match=r"principal 'delivery'.*kafka-delivery\.password"):
        clients.connection("x")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "kafka-delivery.password").write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        clients.connection("x")


def test_the_connection_cannot_be_overridden_by_callers(tmp_path: Path) -> None:
    clients = KafkaClients(make(tmp_path, security_protocol="PLAINTEXT").kafka)
    with pytest.raises(ValueError, match="set by the client factory"):
        clients.producer("x", security_protocol="PLAINTEXT")
    with pytest.raises(ValueError, match="set by the client factory"):
        clients.consumer("x", sasl_plain_password="guess")


def test_the_development_ca_is_trusted_when_present(tmp_path: Path) -> None:
    s = make(tmp_path).kafka
    assert s.cafile() is None  # no development CA yet: the system store
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "kafka-ca.pem").write_text("x")
    assert s.cafile() == tmp_path / "keys" / "kafka-ca.pem"
    assert make(tmp_path, ssl_cafile=tmp_path / "ops.pem").kafka.cafile() == tmp_path / "ops.pem"
