"""Pure parts of hub.kernel.db: DSN building and redaction, migration discovery and planning."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.kernel import db
from hub.kernel.settings import PostgresSettings, Settings


def test_configured_dsn_wins(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, postgres=PostgresSettings(dsn="postgresql://u:p@db:5432/x"))
    assert db.dsn(s) == "postgresql://u:p@db:5432/x"


def test_local_dsn_uses_generated_password_quoted(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    (keys / "postgres.password").write_text("a/b@c:d%\n")
    url = db.dsn(s)
    assert url == "postgresql://hub:a%2Fb%40c%3Ad%25@127.0.0.1:5432/hub"
    assert "a/b@c" not in db.redact(url) and db.redact(url) == "postgresql://hub:***@127.0.0.1:5432/hub"


def test_local_dsn_generates_password_in_development(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path)
    first = db.dsn(s)
    assert (tmp_path / "keys" / "postgres.password").exists()
    assert db.dsn(s) == first  # stable once generated


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
