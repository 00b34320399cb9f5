"""Who may do what on the log: the Kafka principals of the hub, the ACLs of one namespace,
and applying / removing them on a broker that runs an authorizer.

Every process authenticates as one principal (``kafka.principal``; a SCRAM-SHA-512 user of
the same name). The broker's super user is :data:`ADMIN`: it sets up the broker, the
namespaces (topics, ACLs) and runs the operator commands. Every other principal gets only
what its role needs, as ACLs on the topics of ONE topic prefix (so test sessions, the demo
and a second tenant on one cluster each carry their own; a principal of prefix ``a`` has no
right on prefix ``b``). The role matrix (:func:`namespace_acls`, pure):

==================  =================================================================
principal           rights on the topics ``<prefix>.*``
==================  =================================================================
``connector-cad``   write ``facts.dispatch``, ``facts.encounter``, ``deadletter.cad``
``connector-cases`` write ``facts.case``, ``facts.referral`` (referrals created in the case
                    system), ``deadletter.cases``
``connector-ehr``   write ``facts.referral`` (FHIR/HL7 answers), ``deadletter.ehr``
``delivery``        read ``facts.referral`` / ``facts.consent`` (the consent gate), write
                    ``facts.referral`` (delivery outcomes), ``deadletter.ehr`` and
                    ``deadletter.quarantine``; consumer groups ``<prefix>-delivery-*``
``projector``       read every fact topic, write ``outcomes.counts`` and
                    ``deadletter.quarantine``; the projection groups
                    ``<projections.consumer_group>.<prefix>.*``
``api``             write ``audit`` (the access log's topic) and, for the co-responders'
                    encounter intake, ``facts.encounter``, ``facts.consent`` (consent captured
                    on the form) and ``facts.referral``
``analyst``         read ``outcomes.counts`` only (groups ``<prefix>.analyst*``)
==================  =================================================================

All but ``analyst`` may also DESCRIBE the namespace's topics and their configs (metadata,
end offsets, the catalogue check a process makes when it opens). Nobody but :data:`ADMIN`
writes the identity or erasure facts, the seal topic, or creates topics; consent facts are
written only by ``admin`` and ``api`` (the intake a clinician authenticates to), never by a
connector or a worker.

ACLs are PREFIXED patterns where a name family is meant (``<prefix>.``, group prefixes) and
LITERAL for single topics. They are applied by :func:`hub.kernel.topics.ensure_topics`
together with the namespace's topics and removed by :meth:`hub.kernel.namespace.Namespace.teardown`.
The ACL requests go through the admin client's connection (aiokafka has no public ACL
calls), as :func:`hub.kernel.namespace.delete_group` does for groups.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    CreateAclsResponse_v1,
    DeleteAclsRequest_v1,
    DeleteAclsResponse_v1,
)
from aiokafka.protocol.api import Request

from hub.kernel.errors import InfraError
from schemas.base import FAMILIES
from schemas.topics import audit_topic, deadletter_topic, fact_topic, outcome_topic

#: the broker's super user (infra, namespaces, operator commands)
ADMIN = "admin"
#: every principal of the hub, the super user first
PRINCIPALS = (
    ADMIN,
    "connector-cad",
    "connector-cases",
    "connector-ehr",
    "delivery",
    "projector",
    "api",
    "analyst",
)
#: the fact families a connector principal may append
CONNECTOR_FAMILIES = {
    "connector-cad": (("dispatch", "encounter"), "cad"),
    "connector-cases": (("case", "referral"), "cases"),
    "connector-ehr": (("referral",), "ehr"),
}
SECURITY_DISABLED = 54  # the broker runs no authorizer (a PLAINTEXT development broker)


class Resource(IntEnum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Pattern(IntEnum):
    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    ANY = 1
    READ = 3
    WRITE = 4
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


ALLOW = 3
ANY_PERMISSION = 1


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule: ``principal`` may ``operation`` on the resource named by
    ``name`` (``pattern``: the exact name or a prefix), from any host."""

    principal: str
    resource: Resource
    pattern: Pattern
    name: str
    operation: Operation

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"

    def creation(self) -> tuple[int, str, int, str, str, int, int]:
        """The CreateAcls (v1) entry of this rule."""
        return (self.resource, self.name, self.pattern, self.kafka_principal, "*", self.operation, ALLOW)

    def deletion_filter(self) -> tuple[int, str, int, str, str, int, int]:
        """The DeleteAcls (v1) filter matching exactly this rule."""
        return (self.resource, self.name, self.pattern, self.kafka_principal, "*", self.operation, ALLOW)


def _topics(principal: str, op: Operation, names: Iterable[str]) -> list[Acl]:
    return [Acl(principal, Resource.TOPIC, Pattern.LITERAL, n, op) for n in names]


def namespace_acls(prefix: str, projection_group: str = "hub-projections") -> list[Acl]:
    """The ACLs of every non-admin principal on the namespace ``prefix`` (pure, sorted).
    ``projection_group`` is ``projections.consumer_group`` (the projector's groups are
    ``<projection_group>.<prefix>.<schema>``)."""
    facts = [fact_topic(prefix, f) for f in FAMILIES]
    quarantine = deadletter_topic(prefix, "quarantine")
    acls: list[Acl] = []
    for principal in PRINCIPALS:
        if principal in (ADMIN, "analyst"):
            continue
        for op in (Operation.DESCRIBE, Operation.DESCRIBE_CONFIGS):
            acls.append(Acl(principal, Resource.TOPIC, Pattern.PREFIXED, f"{prefix}.", op))
    for principal, (families, source) in CONNECTOR_FAMILIES.items():
        acls += _topics(
            principal,
            Operation.WRITE,
            [*(fact_topic(prefix, f) for f in families), deadletter_topic(prefix, source)],
        )
    acls += _topics(
        "delivery", Operation.READ, [fact_topic(prefix, "referral"), fact_topic(prefix, "consent")]
    )
    acls += _topics(
        "delivery",
        Operation.WRITE,
        [fact_topic(prefix, "referral"), deadletter_topic(prefix, "ehr"), quarantine],
    )
    acls.append(Acl("delivery", Resource.GROUP, Pattern.PREFIXED, f"{prefix}-delivery-", Operation.READ))
    acls += _topics("projector", Operation.READ, facts)
    acls += _topics("projector", Operation.WRITE, [outcome_topic(prefix), quarantine])
    acls.append(
        Acl("projector", Resource.GROUP, Pattern.PREFIXED, f"{projection_group}.{prefix}.", Operation.READ)
    )
    acls += _topics(
        "api",
        Operation.WRITE,
        [audit_topic(prefix), *(fact_topic(prefix, f) for f in ("encounter", "consent", "referral"))],
    )
    acls += _topics("analyst", Operation.READ, [outcome_topic(prefix)])
    acls += _topics("analyst", Operation.DESCRIBE, [outcome_topic(prefix)])
    acls.append(Acl("analyst", Resource.GROUP, Pattern.PREFIXED, f"{prefix}.analyst", Operation.READ))
    return sorted(set(acls))


# --------------------------------------------------------------------------- I/O


class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, acls: Sequence[Acl]):
        self._acls = acls

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class([a.creation() for a in self._acls])


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    API_KEY = 31

    def __init__(self, acls: Sequence[Acl]):
        self._acls = acls

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class([a.deletion_filter() for a in self._acls])


async def apply_acls(admin: AIOKafkaAdminClient, acls: Sequence[Acl]) -> bool:
    """Create ``acls`` (idempotent: an existing rule is left as it is) through ``admin``, a
    started client of the super user. Returns False when the broker runs no authorizer
    (nothing to apply); raises :class:`InfraError` on any other refusal."""
    if not acls:
        return True
    node = admin._client.get_random_node()
    response = await admin._client.send(node, _CreateAcls(acls))
    assert isinstance(response, CreateAclsResponse_v1)
    codes = [(code, msg) for code, msg in response.creation_responses if code]
    if codes and all(code == SECURITY_DISABLED for code, _ in codes):
        return False
    if codes:
        raise InfraError(f"creating Kafka ACLs failed: error {codes[0][0]} {codes[0][1] or ''}".strip())
    return True


async def remove_acls(admin: AIOKafkaAdminClient, acls: Sequence[Acl]) -> int:
    """Delete exactly ``acls`` (none of them present is fine); returns how many were removed
    (0 on a broker without an authorizer)."""
    if not acls:
        return 0
    node = admin._client.get_random_node()
    response = await admin._client.send(node, _DeleteAcls(acls))
    assert isinstance(response, DeleteAclsResponse_v1)
    removed = 0
    for code, msg, matching in response.filter_responses:
        if code == SECURITY_DISABLED:
            return 0
        if code:
            raise InfraError(f"deleting Kafka ACLs failed: error {code} {msg or ''}".strip())
        removed += len(matching)
    return removed
