"""Record MACs (hub.kernel.recordmac): a record verifies only when every covered byte is the
one the hub signed; header order does not matter; rotation keeps old keys while accepted."""

from __future__ import annotations

import hashlib
import hmac
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.kernel.errors import ConfigError, PermanentError
from hub.kernel.keys import record_mac_keys
from hub.kernel.recordmac import KID_HEADER, MAC_HEADER, MacKeyError, MacKeys, mac_input
from hub.kernel.settings import RecordMacSettings, Settings

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
KEYS = MacKeys("k1", {"k1": K1})

names = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12).filter(
    lambda n: n not in {MAC_HEADER, KID_HEADER}
)
headers_st = st.lists(st.tuples(names, st.binary(max_size=40)), max_size=6)
records = st.tuples(
    st.text(min_size=1, max_size=30),  # topic
    st.one_of(st.none(), st.binary(max_size=40)),  # key
    st.one_of(st.none(), st.binary(max_size=200)),  # value
    headers_st,
)


@given(records)
def test_a_signed_record_verifies(rec: tuple) -> None:
    topic, key, value, headers = rec
    assert KEYS.verify(topic, key, value, KEYS.sign(topic, key, value, headers)) is None


@given(records, st.randoms(use_true_random=False))
def test_header_order_does_not_matter(rec: tuple, rnd: random.Random) -> None:
    topic, key, value, headers = rec
    signed = KEYS.sign(topic, key, value, headers)
    rnd.shuffle(signed)
    assert KEYS.verify(topic, key, value, signed) is None


def _flip(data: bytes, i: int) -> bytes:
    i %= len(data)
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


@settings(max_examples=300)
@given(records, st.integers(min_value=0), st.sampled_from(["topic", "key", "value", "header", "add", "drop"]))
def test_any_change_to_a_covered_byte_fails(rec: tuple, i: int, what: str) -> None:
    topic, key, value, headers = rec
    signed = KEYS.sign(topic, key, value, headers)
    plain = [h for h in signed if h[0] not in {MAC_HEADER, KID_HEADER}]
    macs = [h for h in signed if h[0] in {MAC_HEADER, KID_HEADER}]
    if what == "topic":
        topic = topic + "x"
    elif what == "key":
        key = _flip(key, i) if key else (b"" if key is None else None)
    elif what == "value":
        value = _flip(value, i) if value else (b"" if value is None else None)
    elif what == "header":
        if not plain:
            plain = [("ce_id", b"e")]
        else:
            n, v = plain[i % len(plain)]
            plain[i % len(plain)] = (n, _flip(v, i) if v else b"\x00")
    elif what == "add":
        plain.append(("ce_type", b"consent.granted"))
    elif what == "drop":
        if not plain:
            return
        plain.pop(i % len(plain))
    assert KEYS.verify(topic, key, value, plain + macs) is not None


@given(records, st.integers(min_value=0, max_value=31))
def test_a_changed_mac_or_key_id_fails(rec: tuple, i: int) -> None:
    topic, key, value, headers = rec
    signed = dict(KEYS.sign(topic, key, value, headers)[-2:])
    base = KEYS.sign(topic, key, value, headers)[:-2]
    bad_mac = _flip(signed[MAC_HEADER], i)
    assert KEYS.verify(topic, key, value, [*base, (KID_HEADER, b"k1"), (MAC_HEADER, bad_mac)])
    assert KEYS.verify(topic, key, value, [*base, (KID_HEADER, b"k2"), (MAC_HEADER, signed[MAC_HEADER])])


def test_reasons_name_what_is_wrong() -> None:
    signed = KEYS.sign("t", b"k", b"v", [("ce_id", b"1")])
    assert KEYS.verify("t", b"k", b"v", [("ce_id", b"1")]) == "missing MAC"
    assert KEYS.verify("t", b"k", b"v", [*signed, (MAC_HEADER, b"x")]) == "malformed MAC headers"
    assert KEYS.verify("t", b"k", b"other", signed) == "invalid MAC"
    other = MacKeys("k2", {"k2": K2})
    assert other.verify("t", b"k", b"v", signed) == "MAC key id 'k1' is not accepted"


def test_a_mac_copied_from_another_record_fails() -> None:
    a = KEYS.sign("t", b"p1", b'{"id":"a"}', [("ce_id", b"a")])
    macs = [h for h in a if h[0] in {MAC_HEADER, KID_HEADER}]
    assert KEYS.verify("t", b"p1", b'{"id":"b"}', [("ce_id", b"b"), *macs]) == "invalid MAC"


def test_the_encoding_separates_fields_and_absent_from_empty() -> None:
    assert mac_input("k", "ab", b"c", None, []) != mac_input("k", "a", b"bc", None, [])
    assert mac_input("k", "t", None, b"", []) != mac_input("k", "t", b"", b"", [])
    assert mac_input("k", "t", None, None, [("a", b"b")]) != mac_input("k", "t", None, None, [("ab", b"")])


@given(records)
def test_rotation_old_key_verifies_while_accepted_and_not_after(rec: tuple) -> None:
    topic, key, value, headers = rec
    old = MacKeys("k1", {"k1": K1}).sign(topic, key, value, headers)
    rotating = MacKeys("k2", {"k2": K2, "k1": K1})
    assert rotating.verify(topic, key, value, old) is None
    new = rotating.sign(topic, key, value, headers)
    assert dict(new)[KID_HEADER] == b"k2"
    retired = MacKeys("k2", {"k2": K2})
    assert retired.verify(topic, key, value, new) is None
    assert retired.verify(topic, key, value, old) == "MAC key id 'k1' is not accepted"


def test_short_or_absent_keys_are_refused() -> None:
    with pytest.raises(MacKeyError):
        MacKeys("k1", {"k1": b"short"})
    with pytest.raises(MacKeyError):
        MacKeys("k2", {"k1": K1})
    assert issubclass(MacKeyError, ConfigError) and issubclass(MacKeyError, PermanentError)


def test_development_generates_the_current_key_production_refuses_missing_or_short(tmp_path: Path) -> None:
    dev = Settings(state_dir=tmp_path, environment="development")
    keys = record_mac_keys(dev)
    assert keys.current == "k1" and len(keys.keys["k1"]) == 32
    assert (tmp_path / "keys" / "record-mac.k1.key").stat().st_mode & 0o077 == 0

    prod = Settings(state_dir=tmp_path, environment="production",
                    record_mac=RecordMacSettings(key_id="k2", accepted_key_ids=["k1"]))
    with pytest.raises(PermanentError, match=r"record-mac\.k2\.key is missing"):
        record_mac_keys(prod)
    (tmp_path / "keys" / "record-mac.k2.key").write_text("ab" * 16)  # 16 bytes
    (tmp_path / "keys" / "record-mac.k2.key").chmod(0o600)
    with pytest.raises(PermanentError, match="at least 32"):
        record_mac_keys(prod)
    (tmp_path / "keys" / "record-mac.k2.key").write_text("")
    with pytest.raises(PermanentError, match="is empty"):
        record_mac_keys(prod)
    (tmp_path / "keys" / "record-mac.k2.key").write_text(K2.hex())
    rotating = record_mac_keys(prod)
    assert rotating.current == "k2" and set(rotating.keys) == {"k1", "k2"}


def reference_mac(secret: bytes, kid: str, topic: str, key: bytes | None, value: bytes | None,
                  headers: list[tuple[str, bytes]]) -> bytes:
    """The MAC as the module docstring defines it, written plainly (hmac.new, field by
    field): the fast encoding must give these exact bytes, or every stored record fails."""

    def field(b: bytes | None) -> bytes:
        return b"\xff\xff\xff\xff" if b is None else len(b).to_bytes(4, "big") + b

    covered = sorted((n.encode(), v) for n, v in headers if n not in {MAC_HEADER, KID_HEADER})
    msg = b"hub-record-mac/v1" + field(kid.encode()) + field(topic.encode()) + field(key) + field(value)
    msg += len(covered).to_bytes(4, "big") + b"".join(field(n) + field(v) for n, v in covered)
    return hmac.new(secret, msg, hashlib.sha256).digest()


@given(records)
def test_the_mac_is_the_documented_hmac_over_the_documented_encoding(rec: tuple) -> None:
    topic, key, value, headers = rec
    signed = dict(KEYS.sign(topic, key, value, headers))
    assert signed[MAC_HEADER] == reference_mac(K1, "k1", topic, key, value, headers).hex().encode()
    assert signed[KID_HEADER] == b"k1"
