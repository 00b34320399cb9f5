"""Transport security of the local broker: a development CA and broker certificate, and the
SCRAM-SHA-512 credentials of every hub principal (:data:`hub.kernel.kafka_acl.PRINCIPALS`).

Everything is generated at set-up under the state dir, never committed:

    keys/kafka-ca.pem                  the development CA's certificate (clients trust it)
    keys/kafka-<principal>.password    each principal's SCRAM password (0600)
    kafka/tls/ca.key                   the CA's private key (0600; signs the broker certificate)
    kafka/tls/broker.pem               the broker's private key + certificate chain (0600, PEM keystore)

The broker listens with SASL_SSL (SCRAM-SHA-512) for clients and with mutual TLS on the
controller listener: only a certificate of the development CA (the broker's own) gets in,
and its subject :data:`BROKER_SUBJECT` is a super user. That is also how the credentials
are (re)written: :func:`ensure_credentials` connects to the controller listener with the
broker's certificate and sends AlterUserScramCredentials for every principal — so a data
dir formatted before SASL existed, a new principal and a rotated password file are all
handled by the next ``hub infra up``, without a password on any command line.

Certificates are made with ``cryptography`` (pure functions of the keys and names given);
the I/O is writing them with mode 0600 and the one controller request.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.kernel.errors import InfraError
from hub.kernel.kafka_acl import PRINCIPALS
from hub.kernel.keys import secret_text
from hub.kernel.settings import KAFKA_CA_FILE, Settings, principal_password_file

BROKER_CN = "hub-kafka-broker"
#: the principal of the broker's certificate (controller listener, mutual TLS)
BROKER_SUBJECT = f"CN={BROKER_CN}"
CA_CN = "hub development Kafka CA"
SCRAM_MECHANISM = 2  # SCRAM-SHA-512 in AlterUserScramCredentials
SCRAM_ITERATIONS = 8192
CERT_DAYS = 825
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True)
class TlsLayout:
    """Where the broker's TLS material lives."""

    ca_cert: Path
    ca_key: Path
    broker_pem: Path

    @classmethod
    def of(cls, settings: Settings) -> TlsLayout:
        tls = settings.state_dir / "kafka" / "tls"
        return cls(
            ca_cert=settings.keys_dir / KAFKA_CA_FILE, ca_key=tls / "ca.key", broker_pem=tls / "broker.pem"
        )


# --------------------------------------------------------------------------- certificates (pure)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    """A self-signed CA certificate for ``key`` (may sign leaf certificates only)."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(CA_CN))
        .issuer_name(_name(CA_CN))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )


def san_entries(hosts: list[str]) -> list[x509.GeneralName]:
    """Subject alternative names for the broker's host names / addresses."""
    out: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def make_leaf(
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hosts: list[str],
    now: dt.datetime,
) -> x509.Certificate:
    """The broker's certificate: ``CN=hub-kafka-broker``, valid for ``hosts``, usable as a
    TLS server (client listener) and client (controller listener, mutual TLS)."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(BROKER_CN))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(san_entries(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def leaf_fits(cert: x509.Certificate, ca: x509.Certificate, hosts: list[str], now: dt.datetime) -> bool:
    """Whether ``cert`` was issued by ``ca``, names every host and is not about to expire."""
    if cert.issuer != ca.subject or cert.not_valid_after_utc - now < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return False
    try:
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # wrong signer, no SAN: issue a new one
        return False
    return set(san_entries(hosts)) <= set(names)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (directory 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def broker_hosts(settings: Settings) -> list[str]:
    host = settings.kafka.bootstrap.split(",")[0].rsplit(":", 1)[0].strip("[]")
    return [host, "127.0.0.1", "localhost"]


def ensure_tls(settings: Settings, now: dt.datetime | None = None) -> TlsLayout:
    """The development CA and the broker's certificate, created when absent and the broker
    certificate re-issued when it no longer fits (other host, near expiry). Idempotent."""
    now = now or dt.datetime.now(dt.UTC)
    layout = TlsLayout.of(settings)
    hosts = broker_hosts(settings)
    if layout.ca_key.exists() and layout.ca_cert.exists():
        ca_key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), None)
        ca = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise InfraError(f"{layout.ca_key} is not the development CA's EC key")
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = make_ca(ca_key, now)
        write_private(layout.ca_key, _pem_key(ca_key))
        write_private(layout.ca_cert, ca.public_bytes(serialization.Encoding.PEM))
        layout.broker_pem.unlink(missing_ok=True)
    if layout.broker_pem.exists():
        current = x509.load_pem_x509_certificates(layout.broker_pem.read_bytes())
        if current and leaf_fits(current[0], ca, hosts, now):
            return layout
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_leaf(key, ca, ca_key, hosts, now)
    write_private(
        layout.broker_pem,
        _pem_key(key)
        + leaf.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM),
    )
    return layout


def ensure_passwords(settings: Settings) -> dict[str, str]:
    """Every principal's SCRAM password (generated in development when absent)."""
    return {p: secret_text(settings, principal_password_file(p)) for p in PRINCIPALS}


# --------------------------------------------------------------------------- SCRAM credentials


class AlterUserScramCredentialsResponse_v0(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentialsRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class AlterUserScramCredentials(Request[AlterUserScramCredentialsRequest_v0]):
    """The request (aiokafka has no call for it); v0 is its only version."""

    API_KEY = 51
    ALLOW_UNKNOWN_API_VERSION = True

    def __init__(self, upsertions: list[tuple[Any, ...]]):
        self._upsertions = upsertions

    def build(
        self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]
    ) -> AlterUserScramCredentialsRequest_v0:
        return request_struct_class([], self._upsertions, {})


def scram_upsertion(
    name: str, password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS
) -> tuple[Any, ...]:
    """One SCRAM-SHA-512 upsertion: the salted password is Hi(password, salt, i) of RFC 5802
    (PBKDF2 with HMAC-SHA-512), which is what the broker stores keys from."""
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (name, SCRAM_MECHANISM, iterations, salt, salted, {})


def credentials_stamp(passwords: dict[str, str]) -> str:
    """What the broker's credentials were last written from (a digest, not the passwords)."""
    return hashlib.sha256(repr(sorted(passwords.items())).encode()).hexdigest()


def controller_ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS as the broker itself: the controller listener accepts only the CA's certificates."""
    layout = TlsLayout.of(settings)
    ctx = ssl.create_default_context(cafile=str(layout.ca_cert))
    ctx.load_cert_chain(str(layout.broker_pem))
    return ctx


#: NOT_CONTROLLER: the quorum has not settled its active controller yet (a node just started)
NOT_CONTROLLER = 41


async def write_credentials(
    settings: Settings, passwords: dict[str, str], timeout_ms: int = 20000, wait_s: float = 30.0
) -> None:
    """Upsert every principal's SCRAM-SHA-512 credential through the controller listener
    (mutual TLS with the broker's certificate), asking again while the just-started node
    answers NOT_CONTROLLER (for at most ``wait_s``). Raises :class:`InfraError` on a refusal."""
    deadline = time.monotonic() + wait_s
    while not await _write_credentials_once(settings, passwords, timeout_ms):
        if time.monotonic() >= deadline:
            raise InfraError(f"writing the SCRAM credentials: no active controller after {wait_s:.0f} s")
        await asyncio.sleep(0.5)


async def _write_credentials_once(settings: Settings, passwords: dict[str, str], timeout_ms: int) -> bool:
    """One upsert of every credential: True when written, False when the node answered
    NOT_CONTROLLER for all of them (ask again); :class:`InfraError` on any other refusal."""
    host = broker_hosts(settings)[0]
    conn = await create_conn(
        host,
        settings.kafka.controller_port,
        client_id=f"{settings.kafka.client_id}-infra",
        request_timeout_ms=timeout_ms,
        ssl_context=controller_ssl_context(settings),
        security_protocol="SSL",
    )
    try:
        upserts = [scram_upsertion(n, p, secrets.token_bytes(32)) for n, p in sorted(passwords.items())]
        response = await conn.send(AlterUserScramCredentials(upserts))
    finally:
        conn.close()
    failed = [(user, code, msg) for user, code, msg, _ in response.results if code]
    if failed and all(code == NOT_CONTROLLER for _, code, _ in failed):
        return False
    if failed:
        user, code, msg = failed[0]
        raise InfraError(
            f"writing the SCRAM credential of Kafka principal {user!r} failed: error {code} {msg or ''}"
        )
    return True


async def ensure_credentials(settings: Settings, stamp_file: Path) -> bool:
    """Write the principals' credentials to the broker unless ``stamp_file`` says the current
    password files were written already. Returns whether anything was written."""
    passwords = ensure_passwords(settings)
    stamp = credentials_stamp(passwords)
    if stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        return False
    await write_credentials(settings, passwords)
    write_private(stamp_file, (stamp + "\n").encode())
    return True
