"""Pure parts of hub.kernel.db: DSN building and redaction, migration discovery and planning."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hub.kernel import db
from hub.kernel.errors import ConfigError
from hub.kernel.settings import PostgresSettings, Settings


def test_configured_dsn_wins(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, postgres=PostgresSettings(dsn="postgresql://u:p@db:5432/x"))
    assert db.dsn(s, "owner") == "postgresql://u:p@db:5432/x"


def test_local_dsn_uses_generated_password_quoted(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "postgres.password").write_text("a/b@c:d%\n")
    url = db.dsn(s, "owner")
    assert url == "postgresql://hub:a%2Fb%40c%3Ad%25@127.0.0.1:5432/hub"
    assert "a/b@c" not in db.redact(url) and db.redact(url) == "postgresql://hub:***@127.0.0.1:5432/hub"


def test_local_dsn_generates_password_in_development(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    first = db.dsn(s, "owner")
    assert (tmp_path / "keys" / "postgres.password").exists()
    assert db.dsn(s, "owner") == first  # stable once generated


def test_processes_serve_as_the_runtime_role_with_its_own_password(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    runtime, owner = db.dsn(s), db.dsn(s, "owner")
    assert runtime.startswith("postgresql://hub_app:") and owner.startswith("postgresql://hub:")
    runtime_pw = (tmp_path / "keys" / "postgres_runtime.password").read_text().strip()
    owner_pw = (tmp_path / "keys" / "postgres.password").read_text().strip()
    assert runtime_pw != owner_pw and owner_pw not in runtime
    assert db.runtime_grantee(s) == "hub_app"


def test_empty_runtime_user_serves_as_the_owner(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, postgres=PostgresSettings(runtime_user=""))
    assert db.dsn(s) == db.dsn(s, "owner") and db.runtime_grantee(s) is None


def test_operator_dsns_name_both_roles(tmp_path: Path) -> None:
    s = Settings(
        state_dir=tmp_path,
        postgres=PostgresSettings(dsn="postgresql://own:p@db/x", runtime_dsn="postgresql://hub_app:q@db/x"),
    )
    assert (db.dsn(s, "owner"), db.dsn(s)) == ("postgresql://own:p@db/x", "postgresql://hub_app:q@db/x")


def test_an_owner_dsn_without_a_runtime_dsn_is_refused_not_guessed(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, postgres=PostgresSettings(dsn="postgresql://o:secret@db/x"))
    with pytest.raises(ConfigError, match=r"postgres\.runtime_dsn") as err:
        db.dsn(s)
    assert "secret" not in str(err.value)


def test_runtime_grants_are_data_only_and_audit_tables_append_only() -> None:
    stmts = db.grant_statements("ns_core", "hub_app", ("access_log",))
    joined = "\n".join(stmts)
    assert 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "ns_core" TO "hub_app"' in stmts
    # the audit table loses everything first, then gets exactly SELECT and INSERT
    i = stmts.index('REVOKE ALL ON "ns_core"."access_log" FROM "hub_app"')
    assert stmts[i + 1] == 'GRANT SELECT, INSERT ON "ns_core"."access_log" TO "hub_app"'
    for never in ("TRUNCATE", "TRIGGER", "REFERENCES", "CREATE", "OWNER", "ALL PRIVILEGES"):
        assert f"GRANT {never}" not in joined and f", {never}" not in joined
    with pytest.raises(db.MigrationError):
        db.grant_statements("ns_core", 'x"; DROP', ())


def test_redact_without_password() -> None:
    assert db.redact("postgresql://db/x") == "postgresql://db/x"


def write(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (d / name).write_text(sql)
    return d


def test_discover_orders_by_version(tmp_path: Path) -> None:
    d = write(tmp_path, {"0002_b.sql": "B", "0001_a.sql": "A", "0010_c.sql": "C", "README.md": "not sql"})
    assert [(m.version, m.name) for m in db.discover(d)] == [(1, "a"), (2, "b"), (10, "c")]


@pytest.mark.parametrize("bad", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "abcd_x.sql"])
def test_discover_rejects_misnamed_files(tmp_path: Path, bad: str) -> None:
    with pytest.raises(db.MigrationError, match=r"NNNN_name\.sql"):
        db.discover(write(tmp_path, {bad: "x"}))


def test_discover_rejects_duplicate_versions(tmp_path: Path) -> None:
    with pytest.raises(db.MigrationError, match="appears twice"):
        db.discover(write(tmp_path, {"0001_a.sql": "A", "0001_b.sql": "B"}))


def test_render_replaces_only_the_schema_placeholder() -> None:
    m = db.Migration(1, "x", "CREATE TABLE {schema}.t (doc jsonb DEFAULT '{}'::jsonb); -- {other}")
    assert m.render("t1234_core") == "CREATE TABLE t1234_core.t (doc jsonb DEFAULT '{}'::jsonb); -- {other}"


@pytest.mark.parametrize("bad", ["Hub", "1abc", "a-b", "a;drop", "", "x" * 64, 'a"b'])
def test_schema_names_are_validated(bad: str) -> None:
    with pytest.raises(db.MigrationError, match="invalid schema name"):
        db.check_schema_name(bad)


migrations = st.lists(st.text("abc;", min_size=1, max_size=8), min_size=1, max_size=8, unique=True).map(
    lambda sqls: [db.Migration(i + 1, f"m{i + 1}", sql) for i, sql in enumerate(sqls)]
)


@given(migrations, st.data())
def test_pending_is_exactly_the_unapplied(ms: list[db.Migration], data: st.DataObject) -> None:
    applied_versions = data.draw(st.sets(st.sampled_from([m.version for m in ms])))
    applied = {m.version: m.checksum for m in ms if m.version in applied_versions}
    todo = db.pending(ms, applied, "c")
    assert [m.version for m in todo] == sorted(set(m.version for m in ms) - applied_versions)


def test_pending_refuses_edited_or_vanished_migrations() -> None:
    ms = [db.Migration(1, "a", "A"), db.Migration(2, "b", "B")]
    with pytest.raises(db.MigrationError, match="changed after it was applied"):
        db.pending(ms, {1: "not-the-checksum"}, "c")
    with pytest.raises(db.MigrationError, match="file is gone"):
        db.pending(ms, {3: "x"}, "c")


def test_production_requires_verified_postgres_tls_unless_overridden(tmp_path: Path) -> None:
    prod = Settings(state_dir=tmp_path, environment="production")
    assert db.ssl_option(prod) == "verify-full"  # the default outside development
    assert db.ssl_option(Settings(state_dir=tmp_path)) is None  # development: the DSN's / asyncpg's default
    with pytest.raises(ValidationError, match="allow_unverified_tls"):
        Settings(state_dir=tmp_path, environment="production", postgres={"sslmode": "require"})
    weak = Settings(state_dir=tmp_path, environment="production",
                    postgres={"sslmode": "require", "allow_unverified_tls": True})
    assert db.ssl_option(weak) == "require"

