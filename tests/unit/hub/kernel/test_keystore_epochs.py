"""The pure parts of the epoch key store: a stored data key is bound to its key id AND its
epoch (a ciphertext moved to another row or relabelled with another epoch does not open),
epoch labels are per namespace, and every core schema has its own rotation lock."""

from __future__ import annotations

from hub.kernel.keystore import epoch_aad, rotation_lock_name
from hub.kernel.token import EPOCH_LABEL


def test_the_aad_binds_key_id_and_epoch() -> None:
    assert epoch_aad("k_1", 3) == b"k_1|3"
    assert len({epoch_aad("k_1", 3), epoch_aad("k_1", 4), epoch_aad("k_2", 3)}) == 3


def test_epoch_labels_name_their_namespace_and_number() -> None:
    m = EPOCH_LABEL.match("t0a1b2c3d/epoch/12")
    assert m is not None and (m["namespace"], int(m["epoch"])) == ("t0a1b2c3d", 12)
    for other in ("t0a1b2c3d/k_5f9e5b9ddb0a0e244c5fa4e8", "t0a1b2c3d/epoch/", "epoch/3", "x/epoch/3a"):
        assert EPOCH_LABEL.match(other) is None  # e.g. an object of the old per-person layout


def test_each_core_schema_has_its_own_rotation_lock() -> None:
    assert rotation_lock_name("hub_core") != rotation_lock_name("demo_core")
