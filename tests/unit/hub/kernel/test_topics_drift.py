"""Drift detection between the catalogue and an existing topic (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hub.kernel.settings import KafkaSettings, Settings
from hub.kernel.topics import TopicDrift, TopicReport, append_problems, catalogue_for, diff_topic
from schemas.topics import TopicSpec, catalogue

SPECS = catalogue("p", partitions=6, replication_factor=3, min_insync_replicas=2)


def state_of(spec: TopicSpec) -> tuple[int, int, dict[str, str]]:
    # a real describe returns many more configs than the catalogue names
    return spec.partitions, spec.replication_factor, {**spec.config, "segment.bytes": "1073741824"}


@given(st.sampled_from(SPECS))
def test_a_topic_matching_its_spec_has_no_drift(spec: TopicSpec) -> None:
    assert diff_topic(spec, *state_of(spec)) == []


@given(st.sampled_from(SPECS), st.data())
def test_each_changed_config_is_reported_exactly(spec: TopicSpec, data: st.DataObject) -> None:
    partitions, rf, configs = state_of(spec)
    changed = data.draw(st.sets(st.sampled_from(sorted(spec.config)), min_size=1))
    for name in changed:
        configs[name] = configs[name] + "0"
    drift = diff_topic(spec, partitions, rf, configs)
    assert {d.setting for d in drift} == changed
    assert all(d.topic == spec.name and d.expected == spec.config[d.setting] for d in drift)


@given(st.sampled_from(SPECS), st.integers(1, 50), st.integers(1, 5))
def test_partition_and_replication_drift(spec: TopicSpec, partitions: int, rf: int) -> None:
    _, _, configs = state_of(spec)
    settings = {d.setting for d in diff_topic(spec, partitions, rf, configs)}
    assert ("partitions" in settings) == (partitions != spec.partitions)
    assert ("replication.factor" in settings) == (rf != spec.replication_factor)


def test_seven_day_retention_on_a_fact_topic_is_drift() -> None:
    spec = next(s for s in SPECS if s.name == "p.facts.dispatch")
    partitions, rf, configs = state_of(spec)
    configs["retention.ms"] = "604800000"
    del configs["cleanup.policy"]
    drift = diff_topic(spec, partitions, rf, configs)
    assert drift == [
        TopicDrift("p.facts.dispatch", "cleanup.policy", "delete", "<absent>"),
        TopicDrift("p.facts.dispatch", "retention.ms", "-1", "604800000"),
    ]
    assert "retention.ms is '604800000', the catalogue says '-1'" in str(drift[1])


def test_catalogue_for_uses_settings() -> None:
    s = Settings(
        kafka=KafkaSettings(topic_prefix="acme", partitions=12, replication_factor=3, min_insync_replicas=2)
    )
    specs = catalogue_for(s)
    assert all(t.name.startswith("acme.") and t.replication_factor == 3 for t in specs)
    assert all(t.config["min.insync.replicas"] == "2" for t in specs)
    assert {t.partitions for t in specs if t.kind == "fact"} == {12}


def test_report_ok_and_json_shape() -> None:
    report = TopicReport(bootstrap="b:9092", prefix="p", created=["p.a"], matching=["p.b"])
    assert report.ok
    report.drift.append(TopicDrift("p.c", "retention.ms", "-1", "1"))
    data = report.to_dict()
    assert data["ok"] is False
    assert data["drift"] == [{"topic": "p.c", "setting": "retention.ms", "expected": "-1", "actual": "1"}]
    assert set(data) == {"bootstrap", "prefix", "ok", "created", "matching", "drift", "errors", "acls"}


def _topic(name: str, *parts: tuple[int, int, list[int]], error: int = 0) -> dict:
    return {"topic": name, "error_code": error, "partitions": [
        {"partition": p, "leader": leader, "isr": isr, "error_code": 0, "replicas": [1, 2, 3]}
        for p, leader, isr in parts
    ]}


def test_append_problems_name_every_partition_that_would_block_appends() -> None:
    """Issue 13 item 4: what /healthz and `hub health` report with brokers down."""
    healthy = _topic("p.facts.call", (0, 1, [1, 2, 3]), (1, 2, [2, 3]))
    assert append_problems([healthy], min_insync=2) == []
    two_down = _topic("p.facts.call", (0, 1, [1]), (1, -1, []))
    assert append_problems([two_down], min_insync=2) == [
        "p.facts.call[0]: 1 in-sync replica(s), 2 required",
        "p.facts.call[1]: no leader",
    ]
    assert append_problems([_topic("p.facts.x", error=3)], 1) == ["p.facts.x: topic missing"]
    many = _topic("p.facts.call", *[(i, -1, []) for i in range(15)])
    problems = append_problems([many], 1, limit=10)
    assert len(problems) == 11 and problems[-1] == "… and 5 more"
