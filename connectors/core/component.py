"""What every long-lived component of ``hub connectors run`` is: a :class:`Component` built
by its kind's factory from a validated :class:`ComponentConfig` (see :mod:`connectors.registry`)."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Component(Protocol):
    """A poller, receiver, delivery worker or listener: started once, stopped once."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ComponentConfig(BaseModel):
    """The base of every kind's config model: its ``kind`` (each subclass fixes it to its
    kebab-case name) and its ``name``, unique within a config file (it also keys the
    component's cursor, so renaming a poller makes it start over). Unknown keys are refused:
    a typo'd option is an error when the file is loaded, never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    name: str = Field(min_length=1)


def describe_validation(exc: ValidationError) -> str:
    """``field: message`` per error, never the rejected value (a config value may be a
    secret taken from the environment). A check over several fields names its field in its
    message, which is shown as written (without pydantic's ``Value error,`` prefix)."""
    parts = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
