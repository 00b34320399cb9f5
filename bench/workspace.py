"""The benchmark's private namespace on the shared broker and database, and its removal.

One run owns a run id ``bench<6 hex>``; each data set gets a topic prefix of its own
(``<run>a`` for append/replay, ``<run>c`` for CAD ingest and the rebuild, ``<run>l`` for
the live projection), whose core schema is ``<prefix>_core``. Every other schema, faust
consumer group and faust data directory the run creates is registered here, and
:meth:`Workspace.cleanup` removes exactly those names (never a pattern that could match
someone else's run): topics ``<prefix>.*``, the schemas, the groups, the directories.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hub.kernel.db import check_schema_name, open_pool
from hub.kernel.namespace import Namespace
from hub.kernel.settings import Settings

log = logging.getLogger(__name__)


def run_id() -> str:
    return f"bench{uuid.uuid4().hex[:6]}"


def scoped(base: Settings, prefix: str) -> Settings:
    """``base`` in the namespace ``prefix`` (core schema ``<prefix>_core``, read-model schema
    ``prefix``)."""
    return Namespace(prefix, prefix).apply(base)


@dataclass
class Workspace:
    """Names one benchmark run created, to be removed by :meth:`cleanup`."""

    base: Settings
    run: str = field(default_factory=run_id)
    prefixes: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    def settings(self, suffix: str) -> Settings:
        """Settings of the data set ``suffix`` (its prefix and core schema are registered)."""
        prefix = f"{self.run}{suffix}"
        settings = scoped(self.base, prefix)
        if prefix not in self.prefixes:
            self.prefixes.append(prefix)
            self.schemas.append(settings.core_schema)
        return settings

    def schema(self, name: str) -> str:
        """A schema name of this run (registered for removal)."""
        schema = check_schema_name(f"{self.run}_{name}")
        self.schemas.append(schema)
        return schema

    async def settle(self) -> None:
        """``VACUUM (ANALYZE)`` every table of the run's schemas (outside any measurement),
        so that the autovacuum an earlier phase's rows would trigger (the event index after
        an ingest, a floor's scratch table) does not run inside the next measurement. A table
        vacuumed already is skipped page by page (its visibility map)."""
        async with open_pool(self.base, role="owner", max_size=1) as pool:
            tables = await pool.fetch(
                "SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY($1::text[])",
                self.schemas,
            )
            for t in tables:
                await pool.execute(f'VACUUM (ANALYZE) "{t["schemaname"]}"."{t["tablename"]}"')

    async def cleanup(self) -> list[str]:
        """Remove everything registered; returns the problems (cleanup never raises, so
        that one failure does not leave the rest behind)."""
        problems: list[str] = []
        for i, prefix in enumerate(self.prefixes):
            try:  # the groups go with the first namespace's teardown
                groups = tuple(self.groups) if i == 0 else ()
                await Namespace(prefix, prefix).teardown(self.base, groups=groups)
            except Exception as exc:
                problems.append(f"namespace {prefix}: {type(exc).__name__}: {exc}")
        try:
            async with open_pool(self.base, role="owner", max_size=1) as pool:
                for schema in self.schemas:
                    await pool.execute(f'DROP SCHEMA IF EXISTS "{check_schema_name(schema)}" CASCADE')
        except Exception as exc:
            problems.append(f"postgres cleanup: {type(exc).__name__}: {exc}")
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        return problems
