"""The private 3-node cluster's rendered config: a 3-voter quorum, RF 3 / min ISR 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.devtools.infra.kafka_cluster import (
    ClusterSpec,
    initial_controllers,
    kafka_uuid,
    render_node_properties,
)


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_every_node_is_broker_and_controller_of_one_three_voter_quorum(tmp_path: Path) -> None:
    spec = ClusterSpec(home=tmp_path, libs=tmp_path / "libs", base_port=20000)
    rendered = [props(render_node_properties(spec, n)) for n in (1, 2, 3)]
    assert [p["node.id"] for p in rendered] == ["1", "2", "3"]
    assert {p["controller.quorum.bootstrap.servers"] for p in rendered} == {
        "127.0.0.1:20010,127.0.0.1:20011,127.0.0.1:20012"
    }
    for p in rendered:
        assert p["process.roles"] == "broker,controller"
        assert (p["default.replication.factor"], p["min.insync.replicas"]) == ("3", "2")
        assert p["unclean.leader.election.enable"] == "false"
    assert len({p["log.dirs"] for p in rendered}) == 3
    assert spec.bootstrap == "127.0.0.1:20000,127.0.0.1:20001,127.0.0.1:20002"
    assert spec.kafka_settings().min_insync_replicas == 2


def test_initial_controllers_name_each_voter_with_its_directory_id(tmp_path: Path) -> None:
    spec = ClusterSpec(home=tmp_path, libs=tmp_path, base_port=20000)
    ids = {1: kafka_uuid(), 2: kafka_uuid(), 3: kafka_uuid()}
    assert initial_controllers(spec, ids) == (
        f"1@127.0.0.1:20010:{ids[1]},2@127.0.0.1:20011:{ids[2]},3@127.0.0.1:20012:{ids[3]}"
    )
    assert len(ids[1]) == 22 and len(set(ids.values())) == 3


def test_an_unknown_node_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="node 4"):
        render_node_properties(ClusterSpec(home=tmp_path, libs=tmp_path), 4)
