"""Pure parts of the local PostgreSQL management."""

from __future__ import annotations

import pytest

from hub.devtools.infra import InfraError
from hub.devtools.infra.postgres import Cluster, choose_cluster, parse_lsclusters, provisioning_sql

LS = """15  main    5432 down   postgres /var/lib/postgresql/15/main /var/log/postgresql/pg-15-main.log
16  main    5433 online postgres /var/lib/postgresql/16/main /var/log/postgresql/postgresql-16-main.log
16  replica 5434 online,recovery postgres /var/lib/postgresql/16/replica /var/log/postgresql/x.log
"""


def test_parse_lsclusters() -> None:
    clusters = parse_lsclusters(LS)
    assert [(c.version, c.name, c.port, c.online) for c in clusters] == [
        ("15", "main", 5432, False),
        ("16", "main", 5433, True),
        ("16", "replica", 5434, True),
    ]
    assert clusters[0].data_dir == "/var/lib/postgresql/15/main"
    assert parse_lsclusters("Ver Cluster Port Status Owner Data directory Log file\n") == []


def test_choose_cluster_by_port_newest_first() -> None:
    clusters = [
        Cluster("13", "main", 5432, "down", "postgres", "/a", ""),
        Cluster("15", "main", 5432, "down", "postgres", "/b", ""),
        Cluster("16", "main", 5433, "online", "postgres", "/c", ""),
    ]
    chosen = choose_cluster(clusters, 5432)
    assert chosen is not None and chosen.version == "15"
    assert choose_cluster(clusters, 6000) is None


def test_provisioning_sql_quotes_the_password_and_validates_identifiers() -> None:
    sql, database = provisioning_sql("hub", "pa'ss", "hub")
    assert database == "hub"
    assert "PASSWORD 'pa''ss'" in sql and 'CREATE ROLE "hub"' in sql and 'ALTER ROLE "hub"' in sql
    with pytest.raises(InfraError, match="invalid PostgreSQL identifier"):
        provisioning_sql("hub; DROP", "x", "hub")
    with pytest.raises(InfraError):
        provisioning_sql("hub", "x", 'hub"')
