"""A namespace on shared services: one topic prefix and the PostgreSQL schemas named after it.

Everything a hub deployment stores is named from two settings: ``kafka.topic_prefix``
(topics ``<prefix>.*``, the core schema ``<prefix>_core``) and ``postgres.schema`` (the read
models). A :class:`Namespace` is that pair, validated like the settings themselves, so the
demo, the test sessions and the benchmark each get a private corner of one broker and one
database, and can remove exactly what they created (never a pattern that could match
someone else's names).

- :meth:`Namespace.apply` gives settings that live in the namespace;
- :meth:`Namespace.teardown` (as the admin principal) deletes its ACLs
  (:mod:`hub.kernel.kafka_acl`), its topics (waiting until the broker no longer lists
  them), its consumer groups and its schemas (``<prefix>``, ``<prefix>_core`` and
  ``<prefix>_<anything>`` created by replays into fresh schemas).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest

from hub.kernel.db import open_pool
from hub.kernel.kafka import KafkaClients
from hub.kernel.kafka_acl import ADMIN, namespace_acls, remove_acls
from hub.kernel.settings import CORE_SCHEMA_SUFFIX, KafkaSettings, PostgresSettings, Settings
from hub.kernel.token import Token

TOPIC_DELETE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Namespace:
    """A topic prefix and the read-model schema that goes with it (validated on creation)."""

    prefix: str
    read_model_schema: str

    def __post_init__(self) -> None:
        KafkaSettings.model_validate({"topic_prefix": self.prefix})
        PostgresSettings.model_validate({"schema": self.read_model_schema})

    @classmethod
    def of(cls, settings: Settings) -> Namespace:
        return cls(settings.kafka.topic_prefix, settings.postgres.schema_)

    @classmethod
    def unique(cls, tag: str) -> Namespace:
        """A fresh namespace ``<tag><8 hex digits>`` whose read-model schema has the same name."""
        name = f"{tag}{uuid.uuid4().hex[:8]}"
        return cls(name, name)

    @property
    def core_schema(self) -> str:
        return f"{self.prefix}{CORE_SCHEMA_SUFFIX}"

    def apply(self, base: Settings) -> Settings:
        """``base`` moved into this namespace (everything else unchanged)."""
        return base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"topic_prefix": self.prefix}),
                "postgres": base.postgres.model_copy(update={"schema_": self.read_model_schema}),
            }
        )

    def owns_topic(self, topic: str) -> bool:
        return topic.startswith(self.prefix + ".")

    async def teardown(self, settings: Settings, *, groups: tuple[str, ...] = ()) -> dict[str, list[str]]:
        """Delete this namespace's topics, the named consumer ``groups``, its schemas and its
        epoch keys on the token (:meth:`hub.kernel.token.Token.destroy_namespace`) on the services
        ``settings`` point at; returns what was removed."""
        clients = KafkaClients(settings.kafka).as_principal(ADMIN)
        admin = clients.admin("namespace")
        await admin.start()
        try:
            await remove_acls(admin, namespace_acls(self.prefix, settings.projections.consumer_group))
            topics = sorted(t for t in await admin.list_topics() if self.owns_topic(t))
            if topics:
                await admin.delete_topics(topics)
            deadline = time.monotonic() + TOPIC_DELETE_TIMEOUT_S
            while set(topics) & set(await admin.list_topics()):  # deletion completes asynchronously
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topics of prefix {self.prefix!r} still listed after deletion")
                await asyncio.sleep(0.2)
            for group in groups:
                await delete_group(admin, group)
        finally:
            await admin.close()
        async with open_pool(settings, role="owner", max_size=1) as pool:
            rows = await pool.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[]) OR nspname LIKE $2",
                [self.read_model_schema, self.prefix, self.core_schema],
                self.prefix.replace("_", r"\_") + r"\_%",
            )
            schemas = sorted(r["nspname"] for r in rows)
            for name in schemas:
                await pool.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        token = Token.from_settings(settings)
        token.open()
        try:
            keys = token.destroy_namespace()
        finally:
            token.close()
        return {"topics": topics, "schemas": schemas, "token_keys": keys}


async def delete_group(admin: AIOKafkaAdminClient, group: str) -> None:
    """Delete an (empty) consumer group. aiokafka's admin client has no public call for it,
    so the DeleteGroups request goes to the group's coordinator through the client's
    connection (the same path its public methods use). Raises on an error code other than
    'group does not exist'."""
    node = await admin.find_coordinator(group)
    response = await admin._client.send(node, DeleteGroupsRequest([group]))
    errors = [code for _, code in response.results if code not in (0, 69)]  # 69: GROUP_ID_NOT_FOUND
    if errors:
        raise RuntimeError(f"consumer group {group}: error code {errors[0]}")
