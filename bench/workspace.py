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

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest

from hub.db import check_schema_name, open_pool
from hub.settings import Settings

log = logging.getLogger(__name__)


def run_id() -> str:
    return f"bench{uuid.uuid4().hex[:6]}"


def scoped(base: Settings, prefix: str) -> Settings:
    """``base`` with its own topic prefix (hence core schema ``<prefix>_core``) and a
    read-model schema of the same name as the prefix."""
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": prefix}),
            "postgres": base.postgres.model_copy(update={"schema_": prefix}),
        }
    )


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

    async def cleanup(self) -> list[str]:
        """Remove everything registered; returns the problems (cleanup never raises, so
        that one failure does not leave the rest behind)."""
        problems: list[str] = []
        admin = AIOKafkaAdminClient(bootstrap_servers=self.base.kafka.bootstrap)
        try:
            await admin.start()
            mine = [t for t in await admin.list_topics() if any(t.startswith(p + ".") for p in self.prefixes)]
            if mine:
                await admin.delete_topics(mine)
            for group in self.groups:
                problems += await _delete_group(admin, group)
        except Exception as exc:
            problems.append(f"kafka cleanup: {type(exc).__name__}: {exc}")
        finally:
            await admin.close()
        try:
            async with open_pool(self.base, max_size=1) as pool:
                for schema in self.schemas:
                    await pool.execute(f'DROP SCHEMA IF EXISTS "{check_schema_name(schema)}" CASCADE')
        except Exception as exc:
            problems.append(f"postgres cleanup: {type(exc).__name__}: {exc}")
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        return problems


async def _delete_group(admin: AIOKafkaAdminClient, group: str) -> list[str]:
    """Delete an (empty) consumer group. aiokafka's admin client has no public call for
    it, so the DeleteGroups request goes to the group's coordinator through the client's
    connection (the same path its public methods use)."""
    node = await admin.find_coordinator(group)
    response = await admin._client.send(node, DeleteGroupsRequest([group]))
    return [f"consumer group {group}: error code {code}" for _, code in response.results if code]
