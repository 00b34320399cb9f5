"""The local broker's generated TLS material and SCRAM credentials (pure parts and files)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from pathlib import Path

from cryptography import x509

from hub.devtools.infra import kafka_security as ks
from hub.kernel.kafka_acl import PRINCIPALS
from hub.kernel.settings import KafkaSettings, Settings

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def make(tmp_path: Path, bootstrap: str = "127.0.0.1:19092") -> Settings:
    return Settings(state_dir=tmp_path, kafka=KafkaSettings(bootstrap=bootstrap))


def test_ca_and_broker_certificate_are_made_once_private_and_verify(tmp_path: Path) -> None:
    s = make(tmp_path)
    layout = ks.ensure_tls(s, NOW)
    for secret in (layout.ca_key, layout.broker_pem):
        assert secret.stat().st_mode & 0o077 == 0
    before = layout.broker_pem.read_bytes()
    assert ks.ensure_tls(s, NOW).broker_pem.read_bytes() == before  # idempotent
    ca = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    leaf = x509.load_pem_x509_certificates(before)[0]
    leaf.verify_directly_issued_by(ca)
    assert leaf.subject.rfc4514_string() == ks.BROKER_SUBJECT
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    ctx = ssl.create_default_context(cafile=str(layout.ca_cert))  # clients trust the CA file
    ctx.load_cert_chain(str(layout.broker_pem))  # and the keystore is a usable key + chain


def test_broker_certificate_is_reissued_for_another_host_or_near_expiry(tmp_path: Path) -> None:
    layout = ks.ensure_tls(make(tmp_path), NOW)
    first = layout.broker_pem.read_bytes()
    moved = ks.ensure_tls(make(tmp_path, "broker.example.internal:9092"), NOW).broker_pem.read_bytes()
    assert moved != first
    leaf = x509.load_pem_x509_certificates(moved)[0]
    ca = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    assert ks.leaf_fits(leaf, ca, ["broker.example.internal"], NOW)
    assert not ks.leaf_fits(leaf, ca, ["other.example"], NOW)
    late = NOW + dt.timedelta(days=ks.CERT_DAYS - ks.RENEW_BEFORE_DAYS + 1)
    assert not ks.leaf_fits(leaf, ca, ["broker.example.internal"], late)


def test_every_principal_gets_a_private_password_and_the_stamp_follows_them(tmp_path: Path) -> None:
    s = make(tmp_path)
    passwords = ks.ensure_passwords(s)
    assert set(passwords) == set(PRINCIPALS) and len(set(passwords.values())) == len(PRINCIPALS)
    for p in PRINCIPALS:
        assert (tmp_path / "keys" / f"kafka-{p}.password").stat().st_mode & 0o077 == 0
    assert ks.ensure_passwords(s) == passwords
    stamp = ks.credentials_stamp(passwords)
    assert ks.credentials_stamp({**passwords, "analyst": "rotated"}) != stamp
    assert all(pw not in stamp for pw in passwords.values())


def test_scram_upsertion_carries_rfc5802_salted_password() -> None:
    name, mechanism, iterations, _salt, salted, _ = ks.scram_upsertion("projector", "pw", b"salt" * 8)
    assert (name, mechanism, iterations) == ("projector", 2, ks.SCRAM_ITERATIONS)
    assert salted == hashlib.pbkdf2_hmac("sha512", b"pw", b"salt" * 8, ks.SCRAM_ITERATIONS)
    assert len(salted) == 64
