"""The role matrix of the Kafka principals (pure): who may write, read and describe what."""

from __future__ import annotations

from hub.kernel.kafka_acl import ADMIN, PRINCIPALS, Acl, Operation, Pattern, Resource, namespace_acls
from schemas.base import FAMILIES
from schemas.topics import audit_topic, catalogue, deadletter_topic, fact_topic, outcome_topic, seal_topic

P = "t1234abcd"


def rights(principal: str, op: Operation, acls: list[Acl] | None = None) -> set[str]:
    """The catalogue topics ``principal`` may ``op`` under the rules."""
    rules = [
        a
        for a in (acls or namespace_acls(P))
        if a.principal == principal and a.operation == op and a.resource == Resource.TOPIC
    ]
    out = set()
    for spec in catalogue(P):
        for a in rules:
            if (a.pattern == Pattern.LITERAL and a.name == spec.name) or (
                a.pattern == Pattern.PREFIXED and spec.name.startswith(a.name)
            ):
                out.add(spec.name)
    return out


def test_connectors_write_only_their_family_and_read_nothing() -> None:
    assert rights("connector-cad", Operation.WRITE) == {
        fact_topic(P, "dispatch"),
        fact_topic(P, "encounter"),
        deadletter_topic(P, "cad"),
    }
    assert rights("connector-cases", Operation.WRITE) == {
        fact_topic(P, "case"),
        fact_topic(P, "referral"),  # referrals created in the case system
        deadletter_topic(P, "cases"),
    }
    assert rights("connector-ehr", Operation.WRITE) == {fact_topic(P, "referral"), deadletter_topic(P, "ehr")}
    for c in ("connector-cad", "connector-cases", "connector-ehr"):
        assert rights(c, Operation.READ) == set()


def test_nobody_but_admin_writes_identity_erasure_seals_and_only_the_intake_writes_consent() -> None:
    protected = {fact_topic(P, f) for f in ("identity", "erasure")} | {seal_topic(P)}
    for principal in PRINCIPALS:
        assert not rights(principal, Operation.WRITE) & protected, principal
        if principal != "api":  # the encounter intake records consent captured on the form
            assert fact_topic(P, "consent") not in rights(principal, Operation.WRITE), principal
    assert all(a.principal != ADMIN for a in namespace_acls(P))  # the super user needs none


def test_projector_reads_every_fact_and_writes_outcomes_and_quarantine() -> None:
    assert rights("projector", Operation.READ) == {fact_topic(P, f) for f in FAMILIES}
    assert rights("projector", Operation.WRITE) == {outcome_topic(P), deadletter_topic(P, "quarantine")}
    groups = [
        a
        for a in namespace_acls(P, "hub-projections")
        if a.principal == "projector" and a.resource == Resource.GROUP
    ]
    assert [(g.pattern, g.name) for g in groups] == [(Pattern.PREFIXED, f"hub-projections.{P}.")]


def test_delivery_reads_referrals_and_consents_writes_referral_outcomes() -> None:
    assert rights("delivery", Operation.READ) == {fact_topic(P, "referral"), fact_topic(P, "consent")}
    assert rights("delivery", Operation.WRITE) == {
        fact_topic(P, "referral"),
        deadletter_topic(P, "ehr"),
        deadletter_topic(P, "quarantine"),
    }


def test_analyst_reads_the_outcome_topic_only_and_describes_nothing_else() -> None:
    assert rights("analyst", Operation.READ) == {outcome_topic(P)}
    assert rights("analyst", Operation.DESCRIBE) == {outcome_topic(P)}
    assert rights("analyst", Operation.WRITE) == set()
    assert rights("api", Operation.WRITE) == {
        audit_topic(P),
        *(fact_topic(P, f) for f in ("encounter", "consent", "referral")),
    }


def test_rules_stay_inside_the_namespace() -> None:
    """Every rule names the prefix, so one namespace's principals have no right in another
    (``t1`` rules never match ``t12`` topics: prefixed patterns end with a separator)."""
    for a in namespace_acls(P):
        assert a.name.startswith(P) or a.name.startswith(f"hub-projections.{P}."), a
        if a.pattern == Pattern.PREFIXED:
            assert a.name[-1] in ".-" or a.name.endswith(".analyst"), a
    assert not {a.name for a in namespace_acls("t1")} & {a.name for a in namespace_acls("t12")}
