"""The registry of component kinds and re-drivers, and the mapper configurations components
record: kebab-case kinds (old snake_case files still load), every config validated when the
file is loaded with errors naming file, component and field, factories given the validated
model, and the content-addressed configuration a dead letter names (a CAD profile: base +
overrides, YAML paths; a case mapping: source, person namespace, agency)."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from connectors.cad.profile import load_profile, load_profile_file
from connectors.cad.used_profile import UsedProfile, resolve_profile
from connectors.cases.mapping import CaseMapping
from connectors.cases.redrive import resolve_mapping
from connectors.components import CadSoqlPollerConfig, HttpComponent, PollingComponent
from connectors.core.recorded import MapperConfig, is_config_ref
from connectors.registry import KINDS, REDRIVERS, build, load_config, parse_components
from hub.kernel.deadletters import ValueFreeError
from hub.kernel.errors import ConfigError
from hub.kernel.settings import PROJECT_ROOT, CustomSettings
from schemas.deadletter import DeadLetter

OLD_FILE = """\
components:
  - kind: cad_soql_poller
    name: county-cad
    url: http://127.0.0.1:8701/resource/calls.json
    profile: san_francisco
    overrides: {agency: COUNTY}
  - kind: cad_soql_poller
    name: county-cad-2
    url: http://127.0.0.1:8702/resource/calls.json
  - kind: case_rest_poller
    name: county-cases
    url: http://127.0.0.1:8703/api/v1/case-records
    token: ${CASES_TOKEN}
  - kind: mllp-listener
    name: mllp-in
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connectors.yaml"
    path.write_text(text)
    return path


def test_kinds_are_kebab_case_and_each_model_names_its_kind() -> None:
    assert set(KINDS) == {
        "cad-soql-poller", "cad-file-drop", "eido-receiver", "case-rest-poller", "case-webhook",
        "fhir-delivery", "hl7-delivery", "mllp-listener", "fhir-task-poller",
    }
    for name, kind in KINDS.items():
        assert kind.config.model_fields["kind"].default == name
    assert set(REDRIVERS) == {"cad", "cases"}


def test_an_old_snake_case_file_still_loads_with_one_warning_per_old_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CASES_TOKEN", "s3cret")
    path = write(tmp_path, OLD_FILE)
    with caplog.at_level(logging.WARNING, logger="connectors.registry"):
        configs = load_config(path)
    assert [(c.kind, c.name) for c in configs] == [
        ("cad-soql-poller", "county-cad"), ("cad-soql-poller", "county-cad-2"),
        ("case-rest-poller", "county-cases"), ("mllp-listener", "mllp-in"),
    ]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned  # cad_soql_poller twice, case_rest_poller once: one each
    assert "'cad_soql_poller' is deprecated; write 'cad-soql-poller'" in warned[0]
    assert "'case_rest_poller' is deprecated; write 'case-rest-poller'" in warned[1]
    assert str(path) in warned[0]
    assert configs[2].token == "s3cret"  # type: ignore[attr-defined]  # ${NAME} expansion stays


def test_defaults_are_the_documented_ones() -> None:
    cad = parse_components([{"kind": "cad-soql-poller", "name": "c", "url": "u"}], "f")[0]
    assert isinstance(cad, CadSoqlPollerConfig)
    assert (cad.profile, cad.page_size, cad.interval, cad.overrides, cad.source) == (
        "san_francisco", 500, 5.0, None, None
    )
    drop, eido, rest, hook, mllp = parse_components([
        {"kind": "cad-file-drop", "name": "d", "directory": "/srv/drop", "profile": "seattle"},
        {"kind": "eido-receiver", "name": "e"},
        {"kind": "case-rest-poller", "name": "r", "url": "u"},
        {"kind": "case-webhook", "name": "w"},
        {"kind": "mllp-listener", "name": "m"},
    ], "f")
    assert (drop.settle, drop.pattern, drop.interval) == (2.0, None, 5.0)  # type: ignore[attr-defined]
    assert (eido.profile, eido.host, eido.port, eido.path, eido.auth_mode) == (  # type: ignore[attr-defined]
        "eido", "127.0.0.1", 8710, "/eido", "none"
    )
    assert (rest.namespace, rest.page_size, rest.agency) == ("mpi:county", 500, None)  # type: ignore[attr-defined]
    assert (hook.port, hook.path, hook.key_name, hook.tolerance_seconds) == (  # type: ignore[attr-defined]
        8711, "/webhooks/cases", "webhook.key", 300
    )
    assert (mllp.host, mllp.port, mllp.max_frame) == ("127.0.0.1", 2575, 1 << 20)  # type: ignore[attr-defined]
    unnamed = parse_components([{"kind": "eido-receiver"}, {"kind": "eido_receiver"}], "f")
    assert [c.name for c in unnamed] == ["eido-receiver-1", "eido-receiver-2"]


@pytest.mark.parametrize(
    ("component", "message"),
    [
        ({"url": "u", "pagesize": 10}, "component 'county-cad' (cad-soql-poller): pagesize: Extra inputs"),
        ({"url": "u", "page_size": 0}, "'county-cad' (cad-soql-poller): page_size: Input should be"),
        ({"url": "u", "interval": "soon"}, "(cad-soql-poller): interval: Input should be a valid number"),
        ({}, "component 'county-cad' (cad-soql-poller): url: Field required"),
        ({"url": "u", "profile": "seatle"}, "(cad-soql-poller): profile: unknown CAD profile 'seatle'"),
        ({"url": "u", "overrides": {"agency": 5}}, "(cad-soql-poller): overrides: agency: Input should be"),
        ({"url": "u", "overrides": {"agncy": "X"}}, "(cad-soql-poller): overrides: agncy: Extra inputs"),
        ({"url": "u", "overrides": {"dispositions": {"X": "arrest"}}},
         "overrides: dispositions moved to vocabulary files"),
    ],
)
def test_a_typo_or_a_bad_value_is_refused_naming_file_component_and_field(
    tmp_path: Path, component: dict[str, object], message: str
) -> None:
    path = write(tmp_path, yaml.safe_dump(
        {"components": [{"kind": "cad-soql-poller", "name": "county-cad", **component}]}
    ))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("components: []\n", "expected a non-empty 'components' list"),
        ("components:\n  - name: x\n", "component #1 has no 'kind'"),
        ("components:\n  - kind: cad-poller\n", "unknown component kind 'cad-poller'; known: cad-file-drop"),
        ("components:\n  - {kind: eido-receiver, name: a}\n  - {kind: case-webhook, name: a}\n",
         "component name 'a' used twice"),
        ("components: [\n", "not valid YAML"),
        ("components:\n  - {kind: case-webhook, token: '${NOT_SET_ANYWHERE}'}\n",
         "environment variable NOT_SET_ANYWHERE is not set"),
    ],
)
def test_a_malformed_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_validation_error_never_quotes_the_value() -> None:
    """A value may be a secret taken from the environment: errors name the field only."""
    with pytest.raises(ConfigError) as caught:
        parse_components([{"kind": "case-rest-poller", "name": "c", "url": "u", "page_size": "hunter2"}], "f")
    assert "page_size" in str(caught.value) and "hunter2" not in str(caught.value)


def fake_runtime() -> types.SimpleNamespace:
    settings = types.SimpleNamespace(core_schema="unused", is_development=True, custom=CustomSettings())
    return types.SimpleNamespace(settings=settings, pool=None, log=None, keyring=None,
                                 pseudonym_key=b"k" * 32, deadletter_sealer=None)


def test_the_factory_gets_the_model_and_its_dead_letters_name_the_used_profile() -> None:
    (cfg,) = parse_components([{
        "kind": "cad-soql-poller", "name": "county-cad", "url": "http://x/calls.json",
        "overrides": {"agency": "COUNTY"}, "page_size": 50, "interval": 0.5,
    }], "f")
    (component,) = build(fake_runtime(), [cfg])
    assert isinstance(component, PollingComponent)
    runner = component.runner
    assert runner.interval == 0.5 and runner.source.page_size == 50  # type: ignore[attr-defined]
    assert runner.mapper.profile.agency == "COUNTY"  # type: ignore[attr-defined]
    used = component.mapper_config
    assert isinstance(used, UsedProfile)
    assert used is not None and used.overrides == {"agency": "COUNTY"} and used.origin == "san_francisco"
    assert runner.sink.profile == used.ref and used.ref.startswith("san_francisco@sha256:")


def test_hub_connectors_kinds_lists_every_kind_and_its_fields() -> None:
    from hub.entry.cli import app

    plain = CliRunner().invoke(app, ["connectors", "kinds"])
    assert plain.exit_code == 0 and plain.stdout.split() == sorted(KINDS)
    fields = CliRunner().invoke(app, ["connectors", "kinds", "--fields"])
    assert fields.exit_code == 0
    soql = fields.stdout.split("cad-soql-poller\n", 1)[1].split("\ncase-rest-poller")[0]
    assert "    page_size: int = 500" in soql and "    url: str (required)" in soql


def test_kind_modules_do_not_import_the_registry() -> None:
    """No import circle: the kinds and re-drivers are imported by the registry, never the reverse."""
    code = (
        "import sys, connectors.components, connectors.referrals.components, connectors.cad.redrive, "
        "connectors.cases.redrive; "
        "assert 'connectors.registry' not in sys.modules, 'a kind module imports the registry'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, check=True)


# --------------------------------------------------------------------------- used profiles


def county_file(tmp_path: Path, agency: str = "YAMLCO", **extra: object) -> Path:
    base = load_profile("seattle").model_dump(mode="json")
    data = {**base, "name": "our_county", "agency": agency, **extra}
    path = tmp_path / "our-county.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_used_profile_is_content_addressed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = UsedProfile.of("san_francisco", {"agency": "COUNTY"})
    assert a.profile.agency == "COUNTY" and a.ref == UsedProfile.of("san_francisco", {"agency": "COUNTY"}).ref
    others = {UsedProfile.of("san_francisco").ref, UsedProfile.of("san_francisco", {"agency": "X"}).ref}
    assert len(others) == 2 and a.ref not in others
    assert is_config_ref(a.ref) and not is_config_ref("san_francisco")
    assert UsedProfile.model_validate_json(a.model_dump_json()).ref == a.ref  # stable through storage

    path = county_file(tmp_path)
    used = UsedProfile.of(str(path))
    assert used.origin == str(path.resolve()) and used.profile.name == "our_county"
    assert used.ref.startswith("our_county@sha256:")
    monkeypatch.chdir(tmp_path)  # a relative path is recorded as the absolute path it named
    assert UsedProfile.of("our-county.yaml").ref == used.ref


def test_current_reads_the_fixed_base_keeps_the_overrides_and_falls_back_when_gone(tmp_path: Path) -> None:
    path = county_file(tmp_path, time_formats=["%Y"])
    used = UsedProfile.of(str(path), {"agency": "COUNTY"})
    assert used.current().time_formats == ["%Y"] and used.current().agency == "COUNTY"
    county_file(tmp_path, time_formats=["iso", "%m/%d/%Y %I:%M:%S %p"])  # the fix
    assert load_profile_file(path).time_formats == ["iso", "%m/%d/%Y %I:%M:%S %p"]
    fixed = used.current()
    assert fixed.time_formats == ["iso", "%m/%d/%Y %I:%M:%S %p"] and fixed.agency == "COUNTY"
    path.unlink()  # not reachable where the retry runs: the profile as recorded
    assert used.current() == used.profile


class Store:
    """An in-memory :class:`connectors.core.recorded.MapperConfigStore` (refs of one kind only)."""

    def __init__(self, *configs: MapperConfig) -> None:
        self.rows = {c.ref: c for c in configs}

    async def get(self, model: type[MapperConfig], ref: str) -> MapperConfig | None:
        found = self.rows.get(ref)
        return found if isinstance(found, model) else None


async def test_resolve_profile_by_ref_and_by_legacy_name() -> None:
    used = UsedProfile.of("san_francisco", {"agency": "COUNTY"})
    assert (await resolve_profile(Store(used), used.ref)).agency == "COUNTY"  # type: ignore[arg-type]
    assert (await resolve_profile(Store(), "san_francisco")).agency == "SFPD"  # type: ignore[arg-type]
    with pytest.raises(ValueFreeError, match="not recorded in this deployment"):
        await resolve_profile(Store(), used.ref)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- case mappings


CASE_FILE = """\
components:
  - kind: case-rest-poller
    name: county-cases
    url: http://127.0.0.1:8703/api/v1/case-records
    namespace: mpi:other
    agency: X
  - kind: case-webhook
    name: county-hook
    source: cases/county-cases
    namespace: mpi:other
    agency: X
"""


def test_case_components_record_their_mapping_and_their_dead_letters_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both case kinds map with, record and name the same configured mapping (namespace and
    agency included), so a re-drive can map as they do."""
    monkeypatch.setattr("connectors.components.secret_bytes", lambda settings, name: b"w" * 32)
    poller, hook = build(fake_runtime(), load_config(write(tmp_path, CASE_FILE)))
    assert isinstance(poller, PollingComponent) and isinstance(hook, HttpComponent)
    expected = CaseMapping(source="cases/county-cases", namespace="mpi:other", agency="X")
    assert poller.mapper_config == expected and hook.mapper_config == expected
    mapper = poller.runner.mapper
    assert (mapper.source, mapper.default_namespace, mapper.default_agency) == (  # type: ignore[attr-defined]
        "cases/county-cases", "mpi:other", "X",
    )
    assert poller.runner.sink.profile == expected.ref and expected.ref.startswith("cases@sha256:")
    assert is_config_ref(expected.ref)


def test_a_case_mapping_ref_covers_every_field() -> None:
    base = CaseMapping(source="cases/a")
    variants = [base, base.model_copy(update={"namespace": "mpi:other"}),
                base.model_copy(update={"agency": "X"}), CaseMapping(source="cases/b")]
    assert len({v.ref for v in variants}) == len(variants)
    assert CaseMapping.model_validate_json(base.model_dump_json()).ref == base.ref


def case_letter(profile: str | None) -> DeadLetter:
    return DeadLetter(id="dl_1", source="cases/live", source_family="cases", record_ref="r", stage="validate",
                      reason="x", profile=profile, at="2024-03-02T10:00:00+00:00")  # type: ignore[arg-type]


async def test_resolve_mapping_by_ref_and_without_one() -> None:
    mapping = CaseMapping(source="cases/live", namespace="mpi:other", agency="X")
    assert await resolve_mapping(Store(mapping), case_letter(mapping.ref)) == mapping  # type: ignore[arg-type]
    # a dead letter written before refs: today's defaults under its source
    assert await resolve_mapping(Store(), case_letter(None)) == CaseMapping(source="cases/live")  # type: ignore[arg-type]
    with pytest.raises(ValueFreeError, match="not recorded in this deployment"):
        await resolve_mapping(Store(), case_letter(mapping.ref))  # type: ignore[arg-type]
    cad = UsedProfile.of("san_francisco")
    with pytest.raises(ValueFreeError, match="not recorded"):  # a ref of another kind is not a mapping
        await resolve_mapping(Store(cad), case_letter(cad.ref))  # type: ignore[arg-type]
