"""The one Kafka client factory: every producer, consumer, admin client and faust app of the
hub is built here, from :class:`hub.kernel.settings.KafkaSettings`.

This is where connection security arrives: the bootstrap servers, the client id of each
role (``<client_id>-<role>``, so the broker's logs and quotas tell the processes apart) and
the TLS/SASL options (``security_protocol``, ``sasl_*``, ``ssl_*``) are applied once, here,
to every client, so a change of transport is one change and no client can be built without
it.

Producers default to the log's guarantees (``acks=all`` with idempotence); consumers to no
auto-commit (state is committed with what it produced, elsewhere). Callers may override
client-specific options (batch sizes, timeouts); they cannot override the connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from hub.kernel.kafka_acl import ADMIN
from hub.kernel.settings import KafkaSettings

#: options that make up the connection; a caller's overrides may not touch them
CONNECTION_OPTIONS = frozenset(
    {"bootstrap_servers", "client_id", "security_protocol", "ssl_context", "sasl_mechanism",
     "sasl_plain_username", "sasl_plain_password"}
)


@dataclass(frozen=True)
class KafkaClients:
    """Builds (never starts) the Kafka clients of one process; starting and stopping them is
    the owner's explicit lifecycle."""

    settings: KafkaSettings

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap

    def client_id(self, role: str) -> str:
        return f"{self.settings.client_id}-{role}"

    @property
    def principal(self) -> str:
        """The Kafka principal every client of this factory authenticates as."""
        return self.settings.principal

    @property
    def is_admin(self) -> bool:
        """Whether the principal is the super user (creates topics and ACLs)."""
        return self.settings.principal == ADMIN

    def as_principal(self, principal: str) -> KafkaClients:
        """The same connection as another principal (its own password file by default)."""
        return KafkaClients(self.settings.model_copy(update={"principal": principal, "sasl_username": "",
                                                             "sasl_password_file": None}))

    def connection(self, role: str) -> dict[str, Any]:
        """The connection options every aiokafka client of ``role`` gets: TLS verified
        against the configured CA, and the principal's SCRAM credentials (read from its
        password file each time a client is built, so a rotated password is picked up)."""
        s = self.settings
        opts: dict[str, Any] = {
            "bootstrap_servers": s.bootstrap,
            "client_id": self.client_id(role),
            "security_protocol": s.security_protocol,
        }
        if s.uses_tls:
            opts["ssl_context"] = self.ssl_context()
        if s.uses_sasl:
            opts["sasl_mechanism"] = s.sasl_mechanism
            opts["sasl_plain_username"] = s.username
            opts["sasl_plain_password"] = s.sasl_password()
        return opts

    def ssl_context(self) -> ssl.SSLContext:
        """Server certificates (and host names) verified against ``kafka.cafile()`` (the
        development CA, an operator's bundle or the system store); a client certificate
        when ``ssl_certfile`` is set (mutual TLS)."""
        s = self.settings
        cafile = s.cafile()
        ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        if s.ssl_certfile:
            ctx.load_cert_chain(str(s.ssl_certfile), str(s.ssl_keyfile) if s.ssl_keyfile else None)
        return ctx

    def _merge(self, role: str, defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        clash = CONNECTION_OPTIONS & overrides.keys()
        if clash:
            raise ValueError(f"the connection is set by the client factory, not by callers: {sorted(clash)}")
        return {**defaults, **overrides, **self.connection(role)}

    def producer(self, role: str, **overrides: Any) -> AIOKafkaProducer:
        """An idempotent producer with ``acks=all`` (the log's guarantee) unless overridden."""
        defaults = {"acks": "all", "enable_idempotence": True}
        return AIOKafkaProducer(**self._merge(role, defaults, overrides))

    def consumer(self, role: str, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
        """A consumer of ``topics`` (none: assign partitions explicitly), no auto-commit,
        reading from the earliest record when it has no committed offset."""
        defaults = {"enable_auto_commit": False, "auto_offset_reset": "earliest"}
        return AIOKafkaConsumer(*topics, **self._merge(role, defaults, overrides))

    def admin(self, role: str, **overrides: Any) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(**self._merge(role, {}, overrides))

    def faust_options(self, role: str) -> dict[str, Any]:
        """The connection options of a faust app (its ``broker*`` settings)."""
        s = self.settings
        opts: dict[str, Any] = {
            "broker": ",".join(f"kafka://{b.strip()}" for b in s.bootstrap.split(",") if b.strip()),
            "broker_client_id": self.client_id(role),
        }
        if s.security_protocol != "PLAINTEXT":
            ctx = self.ssl_context() if s.uses_tls else None
            if s.uses_sasl:
                opts["broker_credentials"] = faust.SASLCredentials(
                    username=s.username, password=s.sasl_password(), ssl_context=ctx,
                    mechanism=s.sasl_mechanism,
                )
            else:
                opts["broker_credentials"] = faust.SSLCredentials(ctx)
        return opts
