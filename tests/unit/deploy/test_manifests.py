"""The production assets under deploy/ (compose + Kubernetes) cannot run here; this checks
that they agree with the code: the topic catalogue (RF 3, min ISR 2), a 3-broker KRaft
cluster with matching durability settings, only real Settings fields in HUB_* vars, and a
components file the connectors are started with that the registry loads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from connectors.registry import KINDS, check_principal, load_config
from hub.devtools.infra.deploy import (
    PRODUCTION_MIN_ISR,
    PRODUCTION_PARTITIONS,
    PRODUCTION_RF,
    settings_env_vars,
    topics_configmap,
    topics_document,
)
from hub.kernel.errors import ConfigError
from hub.kernel.kafka_acl import ADMIN, PRINCIPALS
from hub.kernel.settings import PROJECT_ROOT, Settings
from schemas.topics import catalogue

DEPLOY = PROJECT_ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_docs() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load_all(K8S / name)]


def by_kind(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in k8s_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}"
    return matches[0]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def env_of(container: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def containers() -> Iterator[dict[str, Any]]:
    for doc in k8s_docs():
        spec = doc.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        if template:
            yield from template["spec"]["containers"]


# ------------------------------------------------------------------ every file parses, kustomize complete


def test_all_kubernetes_files_are_listed_and_parse() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for doc in k8s_docs():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc


# ------------------------------------------------------------------ topic catalogue


def test_topics_configmap_is_the_generated_catalogue() -> None:
    committed = by_kind("ConfigMap", "hub-topics")
    expected = topics_configmap()
    assert yaml.safe_load(committed["data"]["topics.yaml"]) == yaml.safe_load(
        expected["data"]["topics.yaml"]
    ), (
        "deploy/k8s/topics-configmap.yaml is stale; regenerate it with "
        "python -m hub.devtools.infra.deploy > deploy/k8s/topics-configmap.yaml"
    )


def test_topics_configmap_lists_every_catalogue_topic_with_rf3_min_isr2() -> None:
    listed = yaml.safe_load(by_kind("ConfigMap", "hub-topics")["data"]["topics.yaml"])["topics"]
    specs = catalogue("hub", PRODUCTION_PARTITIONS, 3, 2)
    assert [t["name"] for t in listed] == [s.name for s in specs]
    for topic, spec in zip(listed, specs, strict=True):
        assert topic["replication_factor"] == 3
        assert topic["config"]["min.insync.replicas"] == "2"
        assert topic["config"] == spec.config and topic["partitions"] == spec.partitions
    assert topics_document()["topics"] == listed


def hub_env_k8s() -> dict[str, str]:
    return {k: str(v) for k, v in by_kind("ConfigMap", "hub-env")["data"].items()}


def hub_env_compose(service: str) -> dict[str, str]:
    env = compose()["services"][service]["environment"]
    return {k: str(v) for k, v in env.items()}


@pytest.mark.parametrize("source", ["k8s", "compose"])
def test_hub_settings_match_the_catalogue_durability(source: str) -> None:
    env = hub_env_k8s() if source == "k8s" else hub_env_compose("topics-init")
    assert int(env["HUB_KAFKA__REPLICATION_FACTOR"]) == PRODUCTION_RF == 3
    assert int(env["HUB_KAFKA__MIN_INSYNC_REPLICAS"]) == PRODUCTION_MIN_ISR == 2
    assert int(env["HUB_KAFKA__PARTITIONS"]) == PRODUCTION_PARTITIONS
    assert env["HUB_KAFKA__TOPIC_PREFIX"] == "hub"
    assert len(env["HUB_KAFKA__BOOTSTRAP"].split(",")) == 3
    assert env["HUB_ENVIRONMENT"] == "production"  # keys are mounted, never generated


def test_topics_init_applies_the_catalogue_before_workers_start() -> None:
    job = by_kind("Job", "hub-topics-init")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["infra", "topics"]
    services = compose()["services"]
    assert services["topics-init"]["command"][:2] == ["infra", "topics"]
    for worker in ("projections", *(f"connectors-{n}" for n in CONNECTOR_PROCESSES), "api"):
        assert services[worker]["depends_on"]["topics-init"]["condition"] == "service_completed_successfully"


# ------------------------------------------------------------------ 3-broker KRaft cluster


def test_k8s_kafka_is_three_kraft_nodes_with_rf3_min_isr2() -> None:
    sts = by_kind("StatefulSet", "kafka")
    assert sts["spec"]["replicas"] == 3
    env = env_of(sts["spec"]["template"]["spec"]["containers"][0])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert len(str(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]).split(",")) == 3
    check_broker_durability(env)
    check_broker_security(env)
    assert by_kind("PodDisruptionBudget", "kafka")["spec"]["minAvailable"] == 2
    assert hub_env_k8s()["HUB_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    for name, principal in (("hub-projections", "projector"), ("hub-api", "api")):
        (container,) = by_kind("Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert env_of(container)["HUB_KAFKA__PRINCIPAL"] == principal


def test_compose_kafka_is_three_kraft_nodes_with_rf3_min_isr2() -> None:
    services = compose()["services"]
    brokers = {name: s for name, s in services.items() if name.startswith("kafka-")}
    assert len(brokers) == 3
    node_ids = set()
    for name, service in brokers.items():
        env = {k: str(v) for k, v in service["environment"].items()}
        node_ids.add(env["KAFKA_NODE_ID"])
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert {v.split("@")[1].split(":")[0] for v in voters} == set(brokers)
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"SASL_SSL://{name}:9092"
        check_broker_durability(env)
        check_broker_security(env)
    assert node_ids == {"1", "2", "3"}


def check_broker_security(env: dict[str, Any]) -> None:
    """No PLAINTEXT listener, SCRAM-SHA-512 for clients, mutual TLS to the controllers, the
    authorizer on and no password inlined (the JAAS file and the keystores are mounted)."""
    protocols = dict(p.split(":") for p in str(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]).split(","))
    assert set(protocols.values()) <= {"SSL", "SASL_SSL"}
    assert str(env["KAFKA_SASL_ENABLED_MECHANISMS"]) == "SCRAM-SHA-512"
    assert str(env["KAFKA_LISTENER_NAME_CONTROLLER_SSL_CLIENT_AUTH"]) == "required"
    assert str(env["KAFKA_AUTHORIZER_CLASS_NAME"]).endswith("StandardAuthorizer")
    assert str(env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"]) == "false"
    assert "password" not in " ".join(f"{k}={v}" for k, v in env.items()).lower()


def test_compose_workers_authenticate_as_their_principals() -> None:
    services = compose()["services"]
    assert hub_env_compose("topics-init")["HUB_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert hub_env_compose("topics-init")["HUB_KAFKA__PRINCIPAL"] == "admin"
    assert hub_env_compose("projections")["HUB_KAFKA__PRINCIPAL"] == "projector"
    assert hub_env_compose("api")["HUB_KAFKA__PRINCIPAL"] == "api"
    creds = services["scram-init"]
    assert "./secrets/keys:/run/hub-keys:ro" in creds["volumes"]
    assert services["topics-init"]["depends_on"]["scram-init"]["condition"] == (
        "service_completed_successfully"
    )


def check_broker_durability(env: dict[str, Any]) -> None:
    assert str(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == "3"
    assert str(env["KAFKA_MIN_INSYNC_REPLICAS"]) == "2"
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "3"
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == "3"
    assert str(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == "2"
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]) == "false"
    assert str(env["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"]) == "false"


def test_postgres_and_scaled_workers_exist() -> None:
    assert by_kind("StatefulSet", "postgres")["spec"]["replicas"] == 1
    for worker, min_replicas in (("projections", 2), ("connectors-cad", 1), ("api", 2)):
        assert by_kind("Deployment", f"hub-{worker}")["spec"]["replicas"] >= min_replicas
    assert (
        by_kind("HorizontalPodAutoscaler", "hub-projections")["spec"]["maxReplicas"] <= PRODUCTION_PARTITIONS
    )
    services = compose()["services"]
    assert "postgres" in services and services["projections"]["deploy"]["replicas"] >= 2


# ------------------------------------------------------------------ HUB_* variables are real settings


def all_hub_vars() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in hub_env_k8s().items():
        found[name] = f"k8s ConfigMap hub-env: {value}"
    for container in containers():
        for name in env_of(container):
            found.setdefault(name, f"k8s container {container['name']}")
    for service, spec in compose()["services"].items():
        env = spec.get("environment", {})
        names = env if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        for name in names:
            found.setdefault(name, f"compose service {service}")
    return {k: v for k, v in found.items() if k.startswith("HUB_")}


def test_every_hub_variable_is_a_settings_field() -> None:
    known = settings_env_vars()
    hub_vars = all_hub_vars()
    assert len(hub_vars) >= 10
    unknown = {k: where for k, where in hub_vars.items() if k not in known}
    assert not unknown, f"HUB_* variables that hub.kernel.settings.Settings does not read: {unknown}"


def test_settings_env_vars_really_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_KAFKA__MIN_INSYNC_REPLICAS", "2")
    monkeypatch.setenv("HUB_POSTGRES__POOL_MAX", "7")
    monkeypatch.setenv("HUB_METRICS_PORT", "9999")
    s = Settings()
    assert (s.kafka.min_insync_replicas, s.postgres.pool_max, s.metrics_port) == (2, 7, 9999)
    assert "HUB_KAFKA__MIN_INSYNC_REPLICAS" in settings_env_vars()
    assert "HUB_KAFKA__NO_SUCH_FIELD" not in settings_env_vars()


def test_hub_config_files_parse_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    compose_file = DEPLOY / "compose" / "hub.yaml"
    k8s_file = yaml.safe_load(by_kind("ConfigMap", "hub-file")["data"]["hub.yaml"])
    assert yaml.safe_load(compose_file.read_text()) == k8s_file
    monkeypatch.setenv("HUB_CONFIG", str(compose_file))
    s = Settings()
    assert s.projections.small_cell_max == 10 and s.api.jwks_url.startswith("https://")
    fields = set(Settings.model_fields)
    assert set(k8s_file) <= fields


#: the connectors processes: components file → (Kafka principal, kinds in the example file)
CONNECTOR_PROCESSES = {
    "cad": ("connector-cad", {"cad-soql-poller"}),
    "cases": ("connector-cases", {"case-rest-poller"}),
    "ehr": ("connector-ehr", {"fhir-task-poller"}),
    "delivery": ("delivery", {"fhir-delivery"}),
}


@pytest.mark.parametrize("name", sorted(CONNECTOR_PROCESSES))
def test_connectors_run_one_process_per_principal_on_a_mounted_file_that_loads(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each connectors process (compose service / k8s Deployment) starts ``hub connectors
    run --config FILE`` on its own mounted file, authenticates as the one principal whose
    rights its components need (so ``check_principal`` accepts it), and the file is valid for
    the registry; compose and k8s carry the same file."""
    principal, kinds = CONNECTOR_PROCESSES[name]
    compose_file = DEPLOY / "compose" / "connectors" / f"{name}.yaml"
    k8s_text = by_kind("ConfigMap", "hub-connectors")["data"][f"{name}.yaml"]
    assert yaml.safe_load(compose_file.read_text()) == yaml.safe_load(k8s_text)
    monkeypatch.setenv("CASES_TOKEN", "from-the-secret")
    configs = load_config(compose_file)
    assert {c.kind for c in configs} == kinds
    check_principal(configs, principal, str(compose_file))

    service = compose()["services"][f"connectors-{name}"]
    command = service["command"]
    assert command[:2] == ["connectors", "run"]
    assert f"./connectors/{name}.yaml:{command[command.index('--config') + 1]}:ro" in service["volumes"]
    assert service["environment"]["HUB_KAFKA__PRINCIPAL"] == principal
    assert ("CASES_TOKEN" in service["environment"]) == (name == "cases")

    pod = by_kind("Deployment", f"hub-connectors-{name}")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = container["args"][container["args"].index("--config") + 1]
    (mount,) = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == "hub-connectors" and path.endswith(f"/{name}.yaml")
    assert env_of(container)["HUB_KAFKA__PRINCIPAL"] == principal
    assert ("CASES_TOKEN" in env_of(container)) == (name == "cases")


def test_every_component_kind_has_a_connector_principal_the_role_matrix_knows() -> None:
    assert {k.principal for k in KINDS.values()} <= set(PRINCIPALS) - {ADMIN, "analyst"}


def test_a_process_is_refused_components_its_principal_cannot_append_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CASES_TOKEN", "from-the-secret")
    cases = load_config(DEPLOY / "compose" / "connectors" / "cases.yaml")
    needs = r"'connector-cad'.*'county-cases' \(case-rest-poller: needs connector-cases\)"
    with pytest.raises(ConfigError, match=needs):
        check_principal(cases, "connector-cad", "cases.yaml")
    check_principal(cases, ADMIN, "cases.yaml")  # the super user runs anything (development)


def test_no_secrets_in_deploy_assets() -> None:
    for path in [*K8S.glob("*.yaml"), *DEPLOY.joinpath("compose").glob("*.yaml")]:
        text = path.read_text()
        assert not re.search(r"postgresql://[^:\s]+:(?!\$\{)[^@\s]+@", text), f"{path}: inline DB password"
        assert "BEGIN PRIVATE KEY" not in text and "BEGIN RSA PRIVATE KEY" not in text


# ------------------------------------------------------------------ database roles


INIT_ROLES = DEPLOY / "postgres" / "init-roles.sh"


def test_init_script_creates_two_roles_neither_a_superuser() -> None:
    sql = INIT_ROLES.read_text()
    for role, pw in (("hub", "owner_pw"), ("hub_app", "runtime_pw")):
        assert f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'{pw}';" in sql
    assert "CREATE DATABASE hub OWNER hub;" in sql
    assert Settings().postgres.user == "hub" and Settings().postgres.runtime_user == "hub_app"


def test_no_hub_container_is_the_database_superuser_or_the_owner_except_the_migrate_job() -> None:
    k8s_pg = env_of(by_kind("StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0])
    assert k8s_pg["POSTGRES_USER"] == "postgres" and "POSTGRES_DB" not in k8s_pg
    compose_pg = compose()["services"]["postgres"]["environment"]
    assert compose_pg["POSTGRES_USER"] == "postgres" and "POSTGRES_DB" not in compose_pg
    owners = []
    for container in containers():
        env = env_of(container)
        if container["name"] == "postgres":
            continue
        if "HUB_POSTGRES__DSN" in env:
            owners.append(container["name"])
    assert owners == ["migrate"]
    for service, spec in compose()["services"].items():
        if "HUB_POSTGRES__DSN" in spec.get("environment", {}):
            assert service == "db-migrate", service
    assert hub_env_k8s()["HUB_POSTGRES__MIGRATIONS"] == "check"
    assert hub_env_compose("api")["HUB_POSTGRES__MIGRATIONS"] == "check"
    assert "hub_app:" in hub_env_compose("api")["HUB_POSTGRES__RUNTIME_DSN"]


def test_workers_use_the_runtime_url_and_wait_for_the_migrate_job() -> None:
    for name in ("hub-projections", *(f"hub-connectors-{n}" for n in CONNECTOR_PROCESSES), "hub-api"):
        (container,) = by_kind("Deployment", name)["spec"]["template"]["spec"]["containers"]
        env = container["env"]
        refs = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}).get("key") for e in env}
        assert refs.get("HUB_POSTGRES__RUNTIME_DSN") == "runtime-dsn", name
    job = by_kind("Job", "hub-db-migrate")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][:2] == ["db", "migrate"]
    services = compose()["services"]
    assert services["db-migrate"]["command"][:2] == ["db", "migrate"]
    for worker in ("projections", *(f"connectors-{n}" for n in CONNECTOR_PROCESSES), "api"):
        assert services[worker]["depends_on"]["db-migrate"]["condition"] == "service_completed_successfully"


# ------------------------------------------------------------------ commands parse; probes (issue 13 item 6)


def hub_commands() -> Iterator[tuple[str, list[str]]]:
    """(where, argv) of every container / service running the hub image."""
    for doc in k8s_docs():
        spec = doc.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get("template")
        for c in (template or {}).get("spec", {}).get("containers", []):
            if str(c.get("image", "")).startswith("coresponder-hub"):
                yield f"k8s {doc['metadata']['name']}/{c['name']}", list(c.get("args") or [])
    for name, service in compose()["services"].items():
        if str(service.get("image", "")).startswith("coresponder-hub"):
            yield f"compose {name}", list(service.get("command") or [])


def parse_hub_command(argv: list[str]) -> Any:
    """Parse ``hub ARGV`` as the CLI would, down to the leaf command, without running it:
    a missing required option (``connectors run`` without ``--config``) or an unknown
    command raises the CLI's usage error (typer's click: ``MissingParameter``,
    ``UsageError``, …, each with ``format_message()``)."""
    from hub.entry.cli import app

    cmd: Any = typer.main.get_command(app)
    ctx = cmd.make_context("hub", list(argv))
    while hasattr(cmd, "resolve_command"):  # a group: descend into the named sub-command
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        name, sub, args = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, args, parent=ctx)
        cmd = sub
    return ctx


def test_every_manifest_command_parses() -> None:
    """Finding 7: workers.yaml and compose.yaml started `connectors run` without its
    required --config and would have crash-looped. Every hub command they start parses."""
    seen = list(hub_commands())
    assert {w.split()[0] for w, _ in seen} == {"k8s", "compose"} and len(seen) >= 8
    for where, argv in seen:
        assert argv, f"{where} runs the image's default (--help)"
        try:
            parse_hub_command(argv)
        except Exception as exc:  # pragma: no cover - the failure message
            pytest.fail(f"{where}: hub {' '.join(argv)}: {type(exc).__name__}: {exc}")
    with pytest.raises(Exception) as caught:  # the check itself catches the old bug
        parse_hub_command(["connectors", "run"])
    assert type(caught.value).__name__ == "MissingParameter"
    with pytest.raises(Exception) as unknown:
        parse_hub_command(["connectors", "runn", "--config", "x.yaml"])
    assert type(unknown.value).__name__ == "UsageError"


def test_long_running_workers_have_probes_on_the_metrics_port() -> None:
    for name in ("hub-projections", *(f"hub-connectors-{n}" for n in CONNECTOR_PROCESSES)):
        pod = by_kind("Deployment", name)["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9464}
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    env = by_kind("ConfigMap", "hub-env")["data"]
    assert (env["HUB_METRICS_PORT"], env["HUB_METRICS_HOST"]) == ("9464", "0.0.0.0")
    api = by_kind("Deployment", "hub-api")["spec"]["template"]
    (container,) = api["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["metadata"]["annotations"]["prometheus.io/port"] == "8080"  # the API serves /metrics itself
    for name in ("projections", *(f"connectors-{n}" for n in CONNECTOR_PROCESSES)):
        assert "/livez" in " ".join(compose()["services"][name]["healthcheck"]["test"])
