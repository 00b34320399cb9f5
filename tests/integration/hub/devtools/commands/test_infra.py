"""``hub infra`` as a user runs it (a subprocess) against the shared services, and topic
drift detection on a deliberately mis-configured topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from aiokafka.admin import NewTopic

from hub.devtools.infra import kafka
from hub.kernel.kafka import KafkaClients
from hub.kernel.namespace import Namespace
from hub.kernel.settings import PROJECT_ROOT, Settings
from hub.kernel.topics import TopicReport, catalogue_for, ensure_topics
from schemas.topics import deadletter_topic, fact_topic

pytestmark = pytest.mark.integration


def hub(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "HUB_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
        "HUB_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "hub.entry.cli", "infra", *args],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_up_twice_is_a_no_op(settings: Settings, topics: TopicReport) -> None:
    pid_before = (
        (kafka.KafkaLayout.of(settings).pid_file.read_text().strip()) if kafka.is_managed(settings) else ""
    )
    first = hub(settings, "up")
    second = hub(settings, "up")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    n = len(catalogue_for(settings))
    assert f"0 created, {n} matching the catalogue, 0 drifted" in second.stdout
    if kafka.is_managed(settings):
        assert kafka.KafkaLayout.of(settings).pid_file.read_text().strip() == pid_before  # not restarted


def test_status_healthy_exits_zero_with_stable_json(settings: Settings) -> None:
    result = hub(settings, "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["healthy"] is True
    assert data["kafka"]["healthy"] and data["kafka"]["brokers"] >= 1 and data["kafka"]["cluster_id"]
    assert data["postgres"]["healthy"] and data["postgres"]["server_version"]
    password_file = settings.keys_dir / "postgres.password"
    if password_file.exists():
        assert password_file.read_text().strip() not in result.stdout  # never printed


def test_status_unhealthy_exits_non_zero(settings: Settings) -> None:
    wrong = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"bootstrap": "127.0.0.1:1"})}
    )
    result = hub(wrong, "status", "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["healthy"] is False and data["kafka"]["healthy"] is False and data["kafka"]["error"]
    assert data["postgres"]["healthy"] is True
    text = hub(settings, "status", HUB_POSTGRES__DSN="postgresql://hub:wrong@127.0.0.1:1/hub")
    assert text.returncode == 1 and "postgres: DOWN" in text.stdout


async def test_drift_is_reported_not_accepted(settings: Settings) -> None:
    prefix = f"{settings.kafka.topic_prefix}_drift"
    drifting = Namespace(prefix, prefix).apply(settings)
    try:
        await _drift_is_reported(settings, drifting, prefix)
    finally:
        await Namespace.of(drifting).teardown(drifting)


async def _drift_is_reported(settings: Settings, drifting: Settings, prefix: str) -> None:
    dispatch = fact_topic(prefix, "dispatch")
    dead = deadletter_topic(prefix, "cad")
    admin = KafkaClients(settings.kafka).admin("test")
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    dispatch, 2, 1, topic_configs={"retention.ms": "604800000"}
                ),  # 7 days: facts would vanish
                NewTopic(dead, 1, 1, topic_configs={"cleanup.policy": "compact", "retention.ms": "-1"}),
            ]
        )
    finally:
        await admin.close()

    report = await ensure_topics(drifting)
    assert not report.ok
    found = {(d.topic, d.setting): (d.expected, d.actual) for d in report.drift}
    assert found[(dispatch, "retention.ms")] == ("-1", "604800000")
    assert found[(dispatch, "partitions")] == (str(settings.kafka.partitions), "2")
    assert found[(dead, "cleanup.policy")] == ("delete", "compact")
    assert {t for t, _ in found} == {dispatch, dead}
    assert set(report.created) == {s.name for s in catalogue_for(drifting)} - {dispatch, dead}

    again = await ensure_topics(drifting)  # still drifting: nothing was silently "fixed" or accepted
    assert again.drift == report.drift and again.created == []

    cli = hub(drifting, "topics", "--json")
    assert cli.returncode == 3
    data = json.loads(cli.stdout)
    assert data["ok"] is False and len(data["drift"]) == len(report.drift)
    up = hub(drifting, "up")
    assert up.returncode == 3 and "DRIFT" in up.stderr and "retention.ms" in up.stderr


async def test_check_mode_creates_nothing(settings: Settings) -> None:
    prefix = f"{settings.kafka.topic_prefix}_check"
    checking = Namespace(prefix, prefix).apply(settings)
    report = await ensure_topics(checking, create=False)
    assert not report.ok and report.created == []
    assert len(report.errors) == len(catalogue_for(checking))
