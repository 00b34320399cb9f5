"""Privacy guards found in the security review: error texts never quote input values (dead
letters, HTTP bodies, CLI stderr), case narrative never enters the log in clear, erased
persons' sealed fields show as erased, receivers authenticate, config secrets come from
the environment."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
import typer
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel, ValidationError, field_validator

from connectors.cad.eido import EidoMapper
from connectors.cad.profile import load_profile
from connectors.cad.receiver import eido_app
from connectors.cases.mapping import CLOSURE_REASONS, CaseMapper, closure_reason
from connectors.cases.webhook import signed_headers, webhook_app
from connectors.components import EidoReceiverConfig, eido_auth_key
from connectors.core.memory import MemoryDeliveryStore, MemoryLog, MemoryRevisionStore
from connectors.core.records import Mapped, RawRecord, Rejection
from connectors.core.runner import DeadLetterSink, ingest_batch, safe_map
from connectors.registry import expand_env, parse_components
from hub.entry.api.readmodels import mark_entries, mark_sealed, sealed_kids
from hub.entry.commands import run_or_exit
from hub.kernel.crypto import MemoryKeyring, seal
from hub.kernel.deadletters import ValueFreeError, describe_error, describe_failure, open_raw
from hub.kernel.erasure import ErasureError, erasure_event
from hub.kernel.errors import ConfigError
from hub.kernel.keystore import DeadLetterSealer
from hub.kernel.net import is_loopback
from hub.kernel.settings import Settings
from schemas.case import CaseClosed
from schemas.dispatch import CallReceived

NAME, DOB = "Jane Quimby", "1984-07-19"
PKEY, WKEY, DLKEY = b"p" * 32, b"w" * 32, bytes(32)


def no_phi(text: str) -> bool:
    return "Jane" not in text and "Quimby" not in text and "1984" not in text


# --------------------------------------------------------------------------- reasons


def test_validation_error_reason_names_fields_not_values() -> None:
    with pytest.raises(ValidationError) as err:
        CallReceived(
            incident_id=f"{NAME} DOB {DOB}",  # not <agency>:<number>
            agency="sea", cad_number=NAME, at=datetime(2024, 1, 1, tzinfo=UTC),
            source_timezone="UTC", priority=DOB, self_initiated=DOB,  # type: ignore[arg-type]
        )
    assert not no_phi(str(err.value))  # pydantic's own text quotes the input ...
    reason = describe_error(err.value)
    assert no_phi(reason) and "incident_id" in reason and "self_initiated" in reason  # ... ours does not


def test_custom_validator_messages_are_withheld() -> None:
    class Model(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def check(cls, v: str) -> str:
            raise ValueError(f"{v} is not allowed")

    with pytest.raises(ValidationError) as err:
        Model(name=NAME)
    assert no_phi(describe_error(err.value)) and "name:" in describe_error(err.value)


@pytest.mark.parametrize(
    "exc",
    [KeyError(NAME), ValueError(f"invalid literal for int(): '{DOB}'"), TypeError(f"{NAME} {DOB}")],
)
def test_other_exceptions_show_type_and_place_only(exc: Exception) -> None:
    try:
        raise exc
    except Exception as caught:
        reason = describe_error(caught)
    assert reason.startswith(type(exc).__name__ + " at tests/unit/test_privacy_guards.py:")
    assert no_phi(reason)


def test_value_free_errors_keep_their_message() -> None:
    assert describe_error(ValueFreeError("received_at: unparseable time")) == "received_at: unparseable time"
    # operational failures keep their text, except validation errors
    assert describe_failure(ConnectionError("feed: HTTP 503")) == "ConnectionError: feed: HTTP 503"


def test_cli_error_output_never_quotes_validation_input(capsys: pytest.CaptureFixture[str]) -> None:
    async def failing() -> None:
        CaseClosed(case_id="c", person=f"{NAME} {DOB}", at=datetime(2024, 1, 1, tzinfo=UTC), reason="x")

    with pytest.raises(typer.Exit):
        run_or_exit(failing(), "cannot do it")
    err = capsys.readouterr().err
    assert err.startswith("error: cannot do it: invalid event: person:") and no_phi(err)


# --------------------------------------------------------------------------- case records

BAD_CASE = {
    "record_id": "r9",
    "record_type": "case_opened",
    "case_id": "c9",
    "person": {"system": "mpi:county", "id": "MPI-9"},
    "occurred_at": "2024-03-02T10:00:00+00:00",
    "program": "coresp-1",
    "cad_incident_id": f"{NAME} DOB {DOB}:1",  # a name where the incident id belongs
}


def test_malformed_case_record_dead_letter_reason_has_no_phi() -> None:
    log = MemoryLog()
    keyring = MemoryKeyring()
    mapper = CaseMapper("cases/t", PKEY, keyring)
    raw = json.dumps(BAD_CASE).encode()
    counts = asyncio.run(
        ingest_batch([RawRecord("x:1", raw, BAD_CASE)], mapper, log, DeadLetterSink("cases/t", "cases",
                                                                                    DeadLetterSealer(DLKEY)))
    )
    assert counts.dead_lettered == 1
    (letter,) = log.letters.values()
    assert "incident_id" in letter.reason and no_phi(letter.reason)
    assert no_phi(letter.model_dump_json())  # raw payload sealed, reason value-free
    # the record names its person: sealed under their key, opened (not by the global key) with it
    assert letter.raw.kid == keyring.key_id(mapper.person_of(RawRecord("x:1", raw, BAD_CASE)))
    assert asyncio.run(open_raw(letter, DeadLetterSealer(DLKEY), keyring)) == raw


async def test_webhook_answer_and_dead_letter_carry_no_phi() -> None:
    log = MemoryLog()
    app = webhook_app(
        receiver="w", key=WKEY, mapper=CaseMapper("cases/t", PKEY, MemoryKeyring()), log_port=log,
        sink=DeadLetterSink("cases/t", "cases", DeadLetterSealer(DLKEY)), deliveries=MemoryDeliveryStore(),
    )
    body = json.dumps(BAD_CASE).encode()
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/webhooks/cases", data=body, headers=signed_headers(WKEY, "d1", body))
        text = await resp.text()
        assert resp.status == 202 and json.loads(text)["dead_lettered"] == 1 and no_phi(text)
        odd = dict(signed_headers(WKEY, "d2", body))
        odd["X-Hub-Signature"] = "sha256=" + "é" * 64  # non-ASCII: refused, not a crash
        assert (await client.post("/webhooks/cases", data=body, headers=odd)).status == 401
        big = b"{" + b" " * (5 * 1024 * 1024) + b"}"
        too_big = await client.post("/webhooks/cases", data=big, headers=signed_headers(WKEY, "d3", big))
        assert too_big.status == 413
    assert all(no_phi(d.reason) for d in log.letters.values())


def test_closure_reason_narrative_never_enters_the_log() -> None:
    mapper = CaseMapper("cases/t", PKEY, MemoryKeyring())
    rec = {**BAD_CASE, "record_type": "case_closed", "reason": f"{NAME} moved to inpatient detox"}
    rec.pop("cad_incident_id")
    result = mapper.map(RawRecord("x", b"", rec))
    assert isinstance(result, Mapped) and result.events[0].data["reason"] == "other"
    assert closure_reason("Goals met") == "goals_met" and closure_reason("lost-contact") == "lost_contact"
    assert all(closure_reason(code) == code for code in CLOSURE_REASONS)


def test_contact_note_of_an_erased_person_is_dropped_not_dead_lettered() -> None:
    keyring = MemoryKeyring()
    mapper = CaseMapper("cases/t", PKEY, keyring)
    rec = {**BAD_CASE, "record_type": "contact_logged", "note": f"{NAME} said ..."}
    rec.pop("cad_incident_id")
    first = mapper.map(RawRecord("x", b"", rec))
    assert isinstance(first, Mapped) and first.events[0].data["note"] is not None
    keyring.destroy(first.events[0].data["person"])
    after = safe_map(mapper, RawRecord("x", b"", {**rec, "record_id": "r10"}), None)
    assert isinstance(after, Mapped) and after.events[0].data["note"] is None


# --------------------------------------------------------------------------- EIDO receiver

def _eido(number: str) -> bytes:
    return json.dumps({
        "eidoVersion": "1.0",
        "incidentTrackingIdentifier": f"urn:emergency:uid:incidentid:{number}:psap.example",
        "lastUpdateTimeStamp": "2024-03-01T10:00:00+00:00",
    }).encode()


async def test_eido_receiver_400_body_has_no_phi_and_signatures_are_enforced() -> None:
    log = MemoryLog()
    mapper = EidoMapper(load_profile("eido"))
    app = eido_app(
        mapper=mapper, log_port=log, sink=DeadLetterSink(mapper.source, "cad", DeadLetterSealer(DLKEY)),
        revisions=MemoryRevisionStore(), key=WKEY,
    )
    bad = _eido(f"{NAME} DOB {DOB} " * 8)  # an incident number too long to be one (> 128)
    good = _eido("2024-000123")
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/eido", data=good)).status == 401  # unsigned
        forged = dict(signed_headers(b"x" * 32, "e0", good))
        assert (await client.post("/eido", data=good, headers=forged)).status == 401
        assert log.events == [] and log.letters == {}
        resp = await client.post("/eido", data=bad, headers=signed_headers(WKEY, "e1", bad))
        text = await resp.text()
        assert resp.status == 400 and json.loads(text)["dead_letter"] is True and no_phi(text)
        ok = await client.post("/eido", data=good, headers=signed_headers(WKEY, "e2", good))
        assert ok.status == 202 and (await ok.json())["appended"] == 1
    (letter,) = log.letters.values()
    assert no_phi(letter.model_dump_json())


def test_eido_receiver_refuses_to_listen_openly_without_a_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Rt:
        settings = Settings(state_dir=tmp_path)

    def eido(**cfg: object) -> EidoReceiverConfig:
        (config,) = parse_components([{"kind": "eido-receiver", "name": "e", **cfg}], "c.yaml")
        assert isinstance(config, EidoReceiverConfig)
        return config

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
    assert eido_auth_key(Rt(), eido(host="127.0.0.1")) is None
    with pytest.raises(ConfigError, match=r"c\.yaml: component 'e' \(eido-receiver\): auth: .*key_name"):
        eido(host="0.0.0.0")
    assert eido_auth_key(Rt(), eido(host="0.0.0.0", auth="none")) is None  # explicit: proxy auth
    with pytest.raises(ConfigError, match="auth"):
        eido(host="0.0.0.0", auth="basic")
    key = eido_auth_key(Rt(), eido(host="0.0.0.0", key_name="eido.key"))
    assert key is not None and len(key) == 32
    assert (tmp_path / "keys" / "eido.key").stat().st_mode & 0o777 == 0o600
    assert eido_auth_key(Rt(), eido(host="0.0.0.0", auth="HMAC")) == key  # default key file eido.key


# --------------------------------------------------------------------------- erasure


def test_sealed_fields_are_marked_and_erased_ones_flagged() -> None:
    keyring = MemoryKeyring()
    a, b = "psn_" + "a" * 32, "psn_" + "b" * 32
    sealed_a = seal(keyring, a, {"note": NAME}, context="test/fact/note").model_dump(mode="json")
    sealed_b = seal(keyring, b, {"note": DOB}, context="test/fact/note").model_dump(mode="json")
    entries = [
        {"event_id": "1", "data": {"person": a, "note": sealed_a}},
        {"event_id": "2", "data": {"person": b, "nested": [{"reason": sealed_b}]}},
        {"event_id": "3", "data": {"person": a}},
    ]
    assert sealed_kids(entries[1]["data"]) == {sealed_b["kid"]}
    out = mark_entries(entries, {sealed_a["kid"]})
    assert out[0]["data"]["note"] == {"sealed": True, "erased": True} and out[0]["erased"] is True
    assert out[1]["data"]["nested"] == [{"reason": {"sealed": True, "erased": False}}]
    assert out[1]["erased"] is False and out[2]["erased"] is False
    assert "ciphertext" not in json.dumps(out) and mark_sealed(5, set()) == 5


def test_erasure_event_is_validated_and_deterministic() -> None:
    person = "psn_" + "c" * 32
    a = erasure_event(person, basis="RR-1", requested_by="jdoe")
    b = erasure_event(person, basis="RR-1 (again)", requested_by="other")
    assert a.id == b.id and a.type == "erasure.person.erased.v1" and a.partitionkey == person
    for bad in ({"person": NAME}, {"basis": " "}, {"requested_by": ""}):
        kwargs = {"person": person, "basis": "RR-1", "requested_by": "jdoe", **bad}
        with pytest.raises(ErasureError):
            erasure_event(kwargs.pop("person"), **kwargs)


# --------------------------------------------------------------------------- config secrets


def test_components_config_takes_secrets_from_the_environment() -> None:
    cfg = {"components": [{"kind": "x", "token": "${CASES_TOKEN}", "n": 3, "l": ["a$${B}"]}]}
    out = expand_env(cfg, {"CASES_TOKEN": "s3cret"})
    assert out["components"][0] == {"kind": "x", "token": "s3cret", "n": 3, "l": ["a${B}"]}
    with pytest.raises(ConfigError, match="CASES_TOKEN"):
        expand_env(cfg, {})


def test_rejection_reasons_of_bundled_mappers_are_value_free() -> None:
    """A CAD row whose time column holds a name and DOB: the reason names the column only."""
    from connectors.cad.mapping import CadMapper

    profile = load_profile("seattle")
    row = {c: "" for c in profile.columns}
    row[profile.fields["cad_number"]] = "2024-1"
    row[profile.fields["received_at"]] = f"{NAME} {DOB}"
    result = CadMapper(profile).map(RawRecord("f.csv:2", b"", row))
    assert isinstance(result, Rejection) and no_phi(result.reason)


def test_receiver_free_text_is_masked_before_it_enters_the_log() -> None:
    from connectors.referrals.worker import event_detail

    text = f"error/invalid @Patient.birthDate: Invalid date '{DOB}'; '{NAME}' MRN 12345678 tel 555-0100"
    masked = event_detail(text)
    assert no_phi(masked) and "12345678" not in masked and "555-0100" not in masked
    assert masked.startswith("error/invalid @Patient.birthDate: Invalid date '…'")
    assert event_detail("207 application error (HTTP 503)") == "207 application error (HTTP 503)"


# --------------------------------------------------------------------------- read API


@pytest.mark.parametrize(
    ("environment", "jwks_url", "issuer_routes"),
    [("development", "", True), ("development", "https://idp.example/certs", False),
     ("production", "https://idp.example/certs", False), ("staging", "https://idp.example/certs", False)],
)
def test_dev_issuer_and_dev_token_exist_only_in_development(
    tmp_path, environment: str, jwks_url: str, issuer_routes: bool  # type: ignore[no-untyped-def]
) -> None:
    from fastapi.testclient import TestClient as ApiClient

    from hub.entry.api.app import create_app
    from hub.entry.api.auth import DevIssuer, TokenVerifier
    from hub.entry.api.server import dev_issuer_for
    from hub.kernel.settings import ApiSettings

    settings = Settings(state_dir=tmp_path, environment=environment, api=ApiSettings(jwks_url=jwks_url))
    issuer = dev_issuer_for(settings)
    assert (issuer is not None) == issuer_routes
    keys = (issuer or DevIssuer.open(Settings(state_dir=tmp_path / "other"))).jwks()
    app = create_app(settings, None, None, TokenVerifier(settings, jwks=keys), dev_issuer=issuer)  # type: ignore[arg-type]
    client = ApiClient(app)  # no lifespan: only routing is exercised
    for path in ("/dashboard/dev-token", "/dev-issuer/jwks.json", "/.well-known/openid-configuration"):
        assert (client.get(path).status_code == 200) == issuer_routes, path
    assert not (tmp_path / "keys" / "jwt-dev.pem").exists() or environment == "development"
    # no CORS: a cross-origin browser gets no Access-Control-Allow-Origin
    resp = client.get("/v1/me", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 401 and "access-control-allow-origin" not in resp.headers
    assert Settings().api.host == "127.0.0.1"


# --------------------------------------------------------------------------- MLLP listener


async def test_mllp_listener_closes_connections_from_outside_allow_from() -> None:
    import types

    from connectors.hl7v2.listener import MllpListener
    from connectors.hl7v2.mllp import frame

    deps = types.SimpleNamespace(pool=None, core_schema="unused")
    handled: list[bytes] = []

    async def handle(payload: bytes, ref: str) -> bytes:
        handled.append(payload)
        return b"MSH|^~\\&|ACK"

    for allow, admitted in ((["10.20.0.0/24"], False), (["127.0.0.0/8", "10.20.0.0/24"], True)):
        listener = MllpListener(deps, host="127.0.0.1", port=0, allow_from=allow)
        listener.handle = handle  # type: ignore[method-assign]
        await listener.serve()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
            try:
                writer.write(frame(b"MSH|^~\\&|EHR|CLINIC|||20240301||RRI^I12|c1|P|2.5.1"))
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(4096), 2)
            except ConnectionResetError:  # closed by the listener before or while we wrote
                answer = b""
            writer.close()
            assert bool(answer) == admitted and listener.counts["refused"] == (0 if admitted else 1)
        finally:
            await listener.stop()
    assert len(handled) == 1
    assert MllpListener(deps, allow_from=["10.0.0.0/8"]).admits("::ffff:10.1.2.3")
    assert not MllpListener(deps, allow_from=["10.0.0.0/8"]).admits("peer")


def test_mllp_listener_component_needs_allow_from_off_loopback() -> None:
    def listener(**cfg: object) -> object:
        return parse_components([{"kind": "mllp-listener", "name": "m", **cfg}], "c.yaml")

    with pytest.raises(ConfigError, match=r"'m' \(mllp-listener\): allow_from: listening on 0\.0\.0\.0"):
        listener(host="0.0.0.0")
    with pytest.raises(ConfigError, match="allow_from: must be a non-empty list"):
        listener(host="0.0.0.0", allow_from=[])
    with pytest.raises(ConfigError, match="allow_from: 'lan' is not an IP network"):
        listener(host="0.0.0.0", allow_from=["lan"])
    assert listener(host="0.0.0.0", allow_from=["10.20.0.0/24"])
    assert listener()  # loopback: no allow_from needed
