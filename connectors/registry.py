"""The component registry behind ``hub connectors run --config FILE.yaml``.

``COMPONENT_KINDS`` maps a kind name to a factory ``(runtime, config) -> component``; a
component has ``async start()`` and ``async stop()``. Inbound kinds are registered here;
other packages register theirs (delivery workers, listeners) from a module
``connectors/<package>/components.py``, which :func:`load_plugins` imports.

Config file::

    components:
      - kind: cad_soql_poller
        name: county-cad
        url: http://127.0.0.1:8701/resource/calls.json
        profile: san_francisco
        overrides: {agency: COUNTY}
        app_token: ${SOCRATA_APP_TOKEN}   # ${NAME}: taken from the environment

Secrets stay out of the file: every ``${NAME}`` in a string value is replaced by the
environment variable ``NAME`` when the file is loaded (a missing variable is an error,
never an empty secret); ``$${`` stands for a literal ``${``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import yaml

import connectors
from hub.kernel.errors import ConfigError


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


Factory = Callable[[Any, dict[str, Any]], Component]
COMPONENT_KINDS: dict[str, Factory] = {}


def register_kind(name: str) -> Callable[[Factory], Factory]:
    def decorate(factory: Factory) -> Factory:
        if name in COMPONENT_KINDS and COMPONENT_KINDS[name] is not factory:
            raise ValueError(f"component kind registered twice: {name}")
        COMPONENT_KINDS[name] = factory
        return factory

    return decorate


def load_plugins() -> list[str]:
    """Import every ``connectors.<pkg>.components`` module (registers their kinds)."""
    loaded = []
    for info in pkgutil.iter_modules(connectors.__path__):
        if not info.ispkg:
            continue
        if (Path(connectors.__path__[0]) / info.name / "components.py").exists():
            importlib.import_module(f"connectors.{info.name}.components")
            loaded.append(info.name)
    return loaded


_ENV_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any, environ: Any = None, where: str = "config") -> Any:
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


def load_config(path: Path) -> list[dict[str, Any]]:
    """The component configs of a YAML file (validated: known kinds, unique names;
    ``${NAME}`` references expanded from the environment)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    data = expand_env(data, where=str(path))
    items = data.get("components") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected a non-empty 'components' list")
    names: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "kind" not in item:
            raise ConfigError(f"{path}: component #{i + 1} has no 'kind'")
        if item["kind"] not in COMPONENT_KINDS:
            known = ", ".join(sorted(COMPONENT_KINDS))
            raise ConfigError(f"{path}: unknown component kind {item['kind']!r}; known: {known}")
        name = str(item.get("name") or f"{item['kind']}-{i + 1}")
        if name in names:
            raise ConfigError(f"{path}: component name {name!r} used twice")
        names.add(name)
        item["name"] = name
    return items


def build(runtime: Any, configs: list[dict[str, Any]]) -> list[Component]:
    return [COMPONENT_KINDS[c["kind"]](runtime, c) for c in configs]


# the inbound kinds of this package
importlib.import_module("connectors.components")
