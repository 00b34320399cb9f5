"""The one registry of the connector packages: every component kind of
``hub connectors run --config FILE.yaml`` (:data:`KINDS`) and every dead-letter re-driver
of ``hub deadletters retry`` (:data:`REDRIVERS`), listed explicitly in plain dicts. Adding
a kind or a re-driver means adding a line here; nothing is found by scanning, nothing
registers itself on import, and no kind module imports this one.

Config file::

    components:
      - kind: cad-soql-poller
        name: county-cad
        url: http://127.0.0.1:8701/resource/calls.json
        profile: san_francisco
        overrides: {agency: COUNTY}
        app_token: ${SOCRATA_APP_TOKEN}   # ${NAME}: taken from the environment

Kinds are kebab-case. A file written with the old snake_case names (``cad_soql_poller``)
still loads: ``_`` is read as ``-`` and one deprecation warning is logged per old name.

Every component is validated when the file is loaded, against its kind's config model
(unknown keys refused, defaults as documented); an error is a
:class:`hub.kernel.errors.ConfigError` naming the file, the component and the field. The
factory of a kind receives the validated model, never a dict.

Secrets stay out of the file: every ``${NAME}`` in a string value is replaced by the
environment variable ``NAME`` when the file is loaded (a missing variable is an error,
never an empty secret); ``$${`` stands for a literal ``${``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from connectors.cad.redrive import redrive_cad
from connectors.cases.redrive import redrive_case
from connectors.components import (
    CadFileDropConfig,
    CadSoqlPollerConfig,
    CaseRestPollerConfig,
    CaseWebhookConfig,
    EidoReceiverConfig,
    cad_file_drop,
    cad_soql_poller,
    case_rest_poller,
    case_webhook,
    eido_receiver,
)
from connectors.core.component import Component, ComponentConfig, describe_validation
from connectors.referrals.components import (
    FhirDeliveryConfig,
    FhirTaskPollerConfig,
    Hl7DeliveryConfig,
    MllpListenerConfig,
    fhir_delivery,
    fhir_task_poller,
    hl7_delivery,
    mllp_listener,
)
from hub.kernel.deadletters import Redriver
from hub.kernel.errors import ConfigError
from hub.kernel.kafka_acl import ADMIN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    """One component kind: its config model, the factory ``(runtime, config) -> component``
    and the Kafka principal whose rights its appends need (:mod:`hub.kernel.kafka_acl`)."""

    config: type[ComponentConfig]
    factory: Callable[[Any, Any], Component]
    principal: str


#: every component kind, by its kebab-case name
KINDS: dict[str, Kind] = {
    "cad-soql-poller": Kind(CadSoqlPollerConfig, cad_soql_poller, "connector-cad"),
    "cad-file-drop": Kind(CadFileDropConfig, cad_file_drop, "connector-cad"),
    "eido-receiver": Kind(EidoReceiverConfig, eido_receiver, "connector-cad"),
    "case-rest-poller": Kind(CaseRestPollerConfig, case_rest_poller, "connector-cases"),
    "case-webhook": Kind(CaseWebhookConfig, case_webhook, "connector-cases"),
    "fhir-delivery": Kind(FhirDeliveryConfig, fhir_delivery, "delivery"),
    "hl7-delivery": Kind(Hl7DeliveryConfig, hl7_delivery, "delivery"),
    "mllp-listener": Kind(MllpListenerConfig, mllp_listener, "connector-ehr"),
    "fhir-task-poller": Kind(FhirTaskPollerConfig, fhir_task_poller, "connector-ehr"),
}

#: every dead-letter re-driver, by source family (a source ``cad/<name>``, ``<family>/<profile>``
#: or a profile name may be added for a more specific one; see
#: :func:`hub.kernel.deadletters.find_redriver`)
REDRIVERS: dict[str, Redriver] = {
    "cad": redrive_cad,
    "cases": redrive_case,
}


# --------------------------------------------------------------------------- environment


_ENV_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any, environ: Mapping[str, str] | None = None, where: str = "config") -> Any:
    """``value`` with ``${NAME}`` in every nested string replaced by ``environ[NAME]``
    (pure given ``environ``; default ``os.environ``). Raises :class:`ConfigError` naming the
    missing variable (never its would-be value)."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1):  # $${NAME}: a literal ${NAME}
                return "${" + m.group(2) + "}"
            if m.group(2) not in env:
                raise ConfigError(f"{where}: environment variable {m.group(2)} is not set")
            return str(env[m.group(2)])

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, where) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, where) for v in value]
    return value


# --------------------------------------------------------------------------- validation


def kind_name(kind: str) -> str:
    """The kebab-case name of a kind written either way (``cad_soql_poller`` → ``cad-soql-poller``)."""
    return kind.replace("_", "-")


def parse_components(items: Any, where: str) -> list[ComponentConfig]:
    """The validated configs of a ``components`` list (pure but for the deprecation log):
    known kinds, unique names (default ``<kind>-<position>``), every field valid. ``where``
    names the file in errors."""
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}: expected a non-empty 'components' list")
    configs: list[ComponentConfig] = []
    names: set[str] = set()
    deprecated: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("kind"), str):
            raise ConfigError(f"{where}: component #{i + 1} has no 'kind'")
        written = item["kind"]
        kind = kind_name(written)
        if kind not in KINDS:
            known = ", ".join(sorted(KINDS))
            raise ConfigError(f"{where}: unknown component kind {written!r}; known: {known}")
        if written != kind and written not in deprecated:
            deprecated.add(written)
            log.warning("%s: component kind %r is deprecated; write %r", where, written, kind)
        name = str(item.get("name") or f"{kind}-{i + 1}")
        if name in names:
            raise ConfigError(f"{where}: component name {name!r} used twice")
        names.add(name)
        try:
            configs.append(KINDS[kind].config.model_validate({**item, "kind": kind, "name": name}))
        except ValidationError as exc:
            raise ConfigError(f"{where}: component {name!r} ({kind}): {describe_validation(exc)}") from None
    return configs


def load_config(path: Path) -> list[ComponentConfig]:
    """The validated component configs of a YAML file (``${NAME}`` references expanded
    from the environment first). Raises :class:`ConfigError` (or ``OSError`` for a file
    that cannot be read)."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    data = expand_env(data, where=str(path))
    return parse_components(data.get("components") if isinstance(data, dict) else None, str(path))


def check_principal(configs: Sequence[ComponentConfig], principal: str, where: str) -> None:
    """Refuse (:class:`ConfigError`) components whose appends the process's Kafka
    ``principal`` has no right to (pure): each kind needs its family's principal
    (:attr:`Kind.principal`), so a county runs one process per principal; the super user
    :data:`~hub.kernel.kafka_acl.ADMIN` may run any (development, one-process demos)."""
    if principal == ADMIN:
        return
    wrong = [c for c in configs if KINDS[c.kind].principal != principal]
    if wrong:
        listed = ", ".join(f"{c.name!r} ({c.kind}: needs {KINDS[c.kind].principal})" for c in wrong)
        raise ConfigError(
            f"{where}: this process authenticates to Kafka as {principal!r}, which cannot append for "
            f"{listed}; run them in a process of their own principal (kafka.principal)"
        )


def build(runtime: Any, configs: Sequence[ComponentConfig]) -> list[Component]:
    """One component per config, built by its kind's factory (no I/O)."""
    return [KINDS[c.kind].factory(runtime, c) for c in configs]


# --------------------------------------------------------------------------- description


_QUALIFIED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


def _type_name(annotation: Any) -> str:
    """``dict[str, FhirDestination]``, ``Literal['wall', 'relative']``, ``str | None``."""
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return _QUALIFIED.sub(r"\1", str(annotation))


def kind_fields(kind: str) -> list[str]:
    """``field: type = default`` (or ``(required)``) for each option of ``kind``, besides
    ``kind`` and ``name`` which every component has (pure)."""
    model: type[BaseModel] = KINDS[kind].config
    lines = []
    for field, info in model.model_fields.items():
        if field in ("kind", "name"):
            continue
        shown = _type_name(info.annotation)
        if info.is_required():
            lines.append(f"{field}: {shown} (required)")
        elif info.default_factory is not None:
            default = info.get_default(call_default_factory=True, validated_data={})
            lines.append(f"{field}: {shown} = {default!r}")
        elif info.default is not PydanticUndefined:
            lines.append(f"{field}: {shown} = {info.default!r}")
    return lines
