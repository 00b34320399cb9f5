"""Recorded mapper configurations: what a component actually maps with, stored
content-addressed so that a dead letter can be re-driven with exactly that configuration
(``hub deadletters retry``).

A dead letter that named only a profile, or nothing, was re-driven with defaults: a CAD
record without the county's ``overrides`` (another incident), a case record without the
component's ``namespace`` (another person pseudonym) and ``agency``. Here a component's
mapper configuration is a frozen :class:`MapperConfig`; its :attr:`~MapperConfig.ref`
``<name>@sha256:<16 hex>`` hashes the canonical JSON of the whole configuration, so a ref
names one immutable row and two components (or two runs) configured alike share it.

The component records its configuration in ``<core>.mapper_configs``
(:class:`MapperConfigStore`, migration ``connectors/migrations/0003_mapper_configs.sql``)
when it starts, before it can write a dead letter; its dead letters carry the ref in
:attr:`schemas.deadletter.DeadLetter.profile`; the family's redriver resolves it
(:meth:`MapperConfigStore.get`). Each row has the ``kind`` of its configuration
(:attr:`MapperConfig.KIND`: the source family it maps for), so a ref is only ever read back
as the model it was recorded from. The kinds are :class:`connectors.cad.used_profile.UsedProfile`
(``cad``) and :class:`connectors.cases.mapping.CaseMapping` (``cases``).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, ClassVar, TypeVar

import asyncpg
from pydantic import BaseModel, ConfigDict

from hub.kernel.db import check_schema_name

_REF = re.compile(r"^(?P<name>[^@\s]+)@sha256:(?P<digest>[0-9a-f]{16,64})$")

C = TypeVar("C", bound="MapperConfig")


def is_config_ref(text: str) -> bool:
    """True for a reference ``<name>@sha256:<hex>`` (False for a plain profile name)."""
    return _REF.match(text) is not None


def canonical_json(value: Any) -> str:
    """Sorted keys, no white space, UTF-8 as is: equal values give equal text (pure)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class MapperConfig(BaseModel):
    """A component's effective mapper configuration (everything its mapper is built from
    besides keys). Subclasses set :attr:`KIND` and :attr:`ref_name`; they add no state
    beyond their fields, which are the whole of what the ref hashes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the source family this configuration maps for (the ``kind`` column)
    KIND: ClassVar[str]

    @property
    def ref_name(self) -> str:
        """The readable part of the ref (before ``@``); also what ``--source`` matches."""
        raise NotImplementedError

    @property
    def ref(self) -> str:
        """``<ref_name>@sha256:<16 hex>`` over the canonical JSON of this configuration."""
        digest = hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()
        return f"{self.ref_name}@sha256:{digest[:16]}"


class MapperConfigStore:
    """``<core>.mapper_configs``: every :class:`MapperConfig` a component has mapped with, by ref."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = check_schema_name(schema)

    async def record(self, config: MapperConfig) -> str:
        """Store ``config`` once (a ref is immutable) and return its ref."""
        ref = config.ref
        await self.pool.execute(
            f"INSERT INTO {self.schema}.mapper_configs (ref, kind, name, config) "
            "VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (ref) DO NOTHING",
            ref, config.KIND, config.ref_name, canonical_json(config.model_dump(mode="json")),
        )
        return ref

    async def get(self, model: type[C], ref: str) -> C | None:
        """The ``model`` recorded under ``ref``, or None when no configuration of its kind is."""
        row = await self.pool.fetchrow(
            f"SELECT config FROM {self.schema}.mapper_configs WHERE ref = $1 AND kind = $2", ref, model.KIND
        )
        return None if row is None else model.model_validate_json(row["config"])
