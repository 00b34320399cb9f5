"""PostgreSQL access for every hub component: the DSN, an asyncpg pool, and a small
versioned migration runner.

Migrations are files ``NNNN_name.sql`` in a component's package directory, applied in
version order, each in its own transaction, with ``{schema}`` replaced by the target schema
(so a replay or a test can build the same tables in a fresh schema). What was applied is
recorded in ``<schema>.schema_migrations(component, version, name, checksum, applied_at)``.

A :class:`MigrationSet` names one component's directory and the schema it belongs in (the
namespace's core schema or its read-model schema); the composition root lists every set in
one registry (:data:`hub.bootstrap.MIGRATIONS`) and :class:`hub.kernel.runtime.Runtime`
applies them all when a process opens.

Invariants: applying is idempotent; concurrent callers serialise on an advisory lock per
schema; an applied migration whose file later changed is an error, never silently skipped.

Two roles (:class:`hub.kernel.settings.PostgresSettings`): migrations run as the OWNER role,
which owns every schema and table; processes serve with the RUNTIME role. After a schema's
sets are applied, :func:`grant_runtime` gives the runtime role exactly what it needs, in
one transaction: USAGE on the schema; SELECT, INSERT, UPDATE, DELETE on ordinary tables;
USAGE on sequences; SELECT only on ``schema_migrations``; SELECT and INSERT only on the
tables a set declares append-only (the audit tables). Never ownership, TRUNCATE, TRIGGER,
REFERENCES or CREATE: the runtime role cannot alter, disable, empty or drop anything. The
grants are explicit (re-applied on every run), not default privileges, so a table added
later is covered by the run that creates it, with the privileges its set declares.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from hub.kernel.errors import ConfigError, PermanentError, unavailable
from hub.kernel.keys import RUNTIME_PASSWORD, secret_text
from hub.kernel.settings import SCHEMA_NAME, Settings

#: a connection as the hub gets one: straight from ``asyncpg.connect`` or from a pool
Connection = asyncpg.Connection | PoolConnectionProxy
#: anything that runs a statement: a connection or a pool
Executor = asyncpg.Connection | PoolConnectionProxy | asyncpg.Pool

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_NAMESPACE = "hub.migrate"

#: where a migration set's tables live: the namespace's core schema (``<prefix>_core``:
#: the log's index, connector state, ledgers, audit) or its read-model schema
Home = Literal["core", "read_models"]
#: which PostgreSQL role a connection logs in as (see the module docstring)
DbRole = Literal["owner", "runtime"]


class MigrationError(PermanentError, RuntimeError):
    """A migration set is malformed, or the database disagrees with it."""


@dataclass(frozen=True)
class MigrationSet:
    """One component's migrations: its name in ``schema_migrations``, the directory of its
    ``NNNN_name.sql`` files and the schema they belong in."""

    component: str
    directory: Path
    home: Home
    #: tables of this set the runtime role may only INSERT into and SELECT from
    append_only: tuple[str, ...] = ()


CORE_MIGRATIONS = MigrationSet("core", Path(__file__).resolve().parent / "migrations" / "core", "core")


def dsn(settings: Settings, role: DbRole = "runtime") -> str:
    """The libpq URL for ``role``: the owner's is ``postgres.dsn`` when set, otherwise the
    local server with ``postgres.user`` and the generated password; the runtime role's is
    ``postgres.runtime_dsn`` when set, otherwise the local server with
    ``postgres.runtime_user`` and its own password file (an owner ``dsn`` without a
    ``runtime_dsn`` is a :class:`~hub.kernel.errors.ConfigError`: the hub never guesses a
    second login from the first). With ``runtime_user: ""`` both are the owner's."""
    pg = settings.postgres
    if role == "runtime" and pg.separate_runtime:
        if pg.runtime_dsn:
            return pg.runtime_dsn
        if pg.dsn:
            raise ConfigError(
                "postgres.dsn names the owner role's server but postgres.runtime_dsn is not set: "
                "give the runtime role's URL (HUB_POSTGRES__RUNTIME_DSN), or postgres.runtime_user: '' "
                "to serve as the owner (the application could then rewrite its audit trail)"
            )
        user, password = pg.runtime_user, secret_text(settings, RUNTIME_PASSWORD)
    else:
        if pg.dsn:
            return pg.dsn
        user, password = pg.user, secret_text(settings, "postgres.password")
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{pg.host}:{pg.port}/{pg.database}"


SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def ssl_option(settings: Settings) -> SslMode | ssl.SSLContext | None:
    """asyncpg's ``ssl`` argument from ``postgres.sslmode`` / ``sslrootcert`` (pure but for
    reading the CA file): None leaves it to the DSN / asyncpg (development default); a
    mode name as libpq spells it; with ``sslrootcert``, a context that verifies the server
    against that CA (and its host name for ``verify-full``). Outside development the mode
    is ``verify-full`` unless set (settings refuse weaker ones without
    ``postgres.allow_unverified_tls``)."""
    pg = settings.postgres
    mode = pg.effective_sslmode(settings.is_development)
    if not mode:
        return None
    if pg.sslrootcert is None or mode not in ("verify-ca", "verify-full"):
        return cast(SslMode, mode)
    ctx = ssl.create_default_context(cafile=str(pg.sslrootcert))
    ctx.check_hostname = mode == "verify-full"
    return ctx


def runtime_grantee(settings: Settings) -> str | None:
    """The role :func:`grant_runtime` grants to, or ``None`` when processes serve as the owner."""
    return settings.postgres.runtime_user if settings.postgres.separate_runtime else None


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print or log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


async def create_pool(
    settings: Settings, *, role: DbRole = "runtime", min_size: int = 1, max_size: int | None = None
) -> asyncpg.Pool:
    """An asyncpg pool for the hub's database logged in as ``role`` (``postgres.pool_max``
    connections at most); an unreachable server raises
    :class:`hub.kernel.errors.ServiceUnavailable`."""
    idle_ms = int(settings.postgres.idle_in_transaction_timeout_s * 1000)
    with unavailable("PostgreSQL"):
        pool = await asyncpg.create_pool(
            dsn(settings, role),
            min_size=min_size,
            max_size=max_size or settings.postgres.pool_max,
            command_timeout=60,
            ssl=ssl_option(settings),
            # a transaction left open by a stuck client (an append waiting on Kafka) never
            # holds its locks for longer than this (issue 13, finding 4)
            server_settings={"idle_in_transaction_session_timeout": str(idle_ms)},
        )
    assert pool is not None
    return pool


@asynccontextmanager
async def open_pool(
    settings: Settings, *, role: DbRole = "runtime", max_size: int | None = None
) -> AsyncIterator[asyncpg.Pool]:
    """A :func:`create_pool` pool, closed when the block ends."""
    pool = await create_pool(settings, role=role, max_size=max_size)
    try:
        yield pool
    finally:
        await pool.close()


def check_schema_name(schema: str) -> str:
    """Validate a schema name (lower-case identifier, ≤ 63 chars) before it is put into SQL."""
    if not SCHEMA_NAME.match(schema):
        raise MigrationError(f"invalid schema name {schema!r}: use lower-case letters, digits and _")
    return schema


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def render(self, schema: str) -> str:
        """The SQL with every ``{schema}`` placeholder replaced (no other brace is touched)."""
        return self.sql.replace("{schema}", check_schema_name(schema))


def discover(package_dir: Path) -> list[Migration]:
    """The migrations in ``package_dir`` (``NNNN_name.sql``), ordered; duplicates or stray
    ``.sql`` files are errors so that a typo never silently skips a migration."""
    found: dict[int, Migration] = {}
    for path in sorted(Path(package_dir).glob("*.sql")):
        match = _MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} appears twice in {package_dir}")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def pending(migrations: list[Migration], applied: dict[int, str], component: str) -> list[Migration]:
    """Migrations still to apply, given ``applied`` (version → checksum). Raises when an
    applied migration's file changed or disappeared."""
    known = {m.version: m for m in migrations}
    for version, checksum in applied.items():
        if version not in known:
            raise MigrationError(f"{component}: migration {version:04d} was applied but its file is gone")
        if known[version].checksum != checksum:
            raise MigrationError(
                f"{component}: migration {version:04d}_{known[version].name} changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )
    return [m for m in migrations if m.version not in applied]


async def apply_sets(
    pool: asyncpg.Pool, sets: Sequence[MigrationSet], home: Home, schema: str, *, grant_to: str | None = None
) -> None:
    """Apply every set of ``sets`` whose home is ``home`` to ``schema``, in registry order,
    through ``pool`` (an OWNER pool), then grant ``grant_to`` (the runtime role, if any) its
    privileges on the schema (:func:`grant_runtime`)."""
    mine = [s for s in sets if s.home == home]
    for s in mine:
        await migrate(pool, component=s.component, package_dir=s.directory, schema=schema)
    if grant_to:
        await grant_runtime(pool, schema, grant_to, tuple(t for s in mine for t in s.append_only))


def grant_statements(schema: str, role: str, append_only: Sequence[str]) -> list[str]:
    """The statements that give ``role`` its runtime privileges on ``schema`` (see the module
    docstring); pure, validated identifiers only."""
    q = f'"{check_schema_name(schema)}"'
    r = f'"{check_schema_name(role)}"'
    stmts = [
        f"GRANT USAGE ON SCHEMA {q} TO {r}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {q} TO {r}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {q} TO {r}",
        f"REVOKE ALL ON {q}.schema_migrations FROM {r}",
        f"GRANT SELECT ON {q}.schema_migrations TO {r}",
    ]
    for table in append_only:
        t = f'{q}."{check_schema_name(table)}"'
        stmts += [f"REVOKE ALL ON {t} FROM {r}", f"GRANT SELECT, INSERT ON {t} TO {r}"]
    return stmts


async def grant_runtime(pool: asyncpg.Pool, schema: str, role: str, append_only: Sequence[str]) -> None:
    """Give the runtime ``role`` its privileges on ``schema`` in one transaction (run as the
    owner). A missing role is a :class:`MigrationError` naming the fix."""
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            raise MigrationError(
                f"the runtime role {role!r} does not exist: create it (`hub infra up` does, locally) "
                "or set postgres.runtime_user"
            )
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", _LOCK_NAMESPACE, schema
            )
            for stmt in grant_statements(schema, role, append_only):
                await conn.execute(stmt)


async def check_sets(pool: Executor, sets: Sequence[MigrationSet], home: Home, schema: str) -> None:
    """Raise :class:`MigrationError` unless every migration of ``sets`` whose home is ``home``
    is recorded in ``schema`` with its file's checksum (``postgres.migrations: check``: the
    runtime role verifies what the migrate job did, and changes nothing)."""
    check_schema_name(schema)
    exists = await pool.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_migrations')
    rows = []
    if exists:
        rows = await pool.fetch(f'SELECT component, version, checksum FROM "{schema}".schema_migrations')
    recorded = {(r["component"], r["version"]): r["checksum"] for r in rows}
    for s in sets:
        if s.home != home:
            continue
        applied = {v: c for (comp, v), c in recorded.items() if comp == s.component}
        todo = pending(discover(s.directory), applied, s.component)
        if todo:
            raise MigrationError(
                f"schema {schema} lacks {s.component} migration {todo[0].version:04d}_{todo[0].name} "
                "(postgres.migrations is 'check': run `hub db migrate` as the owner role first)"
            )


async def prepare_sets(
    settings: Settings, owner: asyncpg.Pool | None, runtime: asyncpg.Pool, sets: Sequence[MigrationSet],
    home: Home, schema: str,
) -> None:
    """Bring ``schema`` to ``sets`` the way ``postgres.migrations`` says: ``apply`` through
    the ``owner`` pool (granting the runtime role), ``check`` through the ``runtime`` pool."""
    if settings.postgres.migrations == "check":
        await check_sets(runtime, sets, home, schema)
        return
    if owner is None:
        raise MigrationError("postgres.migrations is 'apply' but no owner connection was opened")
    await apply_sets(owner, sets, home, schema, grant_to=runtime_grantee(settings))


@asynccontextmanager
async def open_owner_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool | None]:
    """A one-connection OWNER pool when ``postgres.migrations`` is ``apply``, else ``None``
    (a process in ``check`` mode never logs in as the owner)."""
    if settings.postgres.migrations == "check":
        yield None
        return
    async with open_pool(settings, role="owner", max_size=1) as pool:
        yield pool


async def migrate_namespace(pool: asyncpg.Pool, settings: Settings, sets: Sequence[MigrationSet]) -> None:
    """Apply ``sets`` to the schemas of ``settings``' namespace through ``pool`` (an OWNER
    pool): core sets to the core schema, read-model sets to the read-model schema, each
    followed by the runtime role's grants."""
    grantee = runtime_grantee(settings)
    for home, schema in namespace_schemas(settings):
        await apply_sets(pool, sets, home, schema, grant_to=grantee)


def namespace_schemas(settings: Settings) -> tuple[tuple[Home, str], ...]:
    """The namespace's schemas by home, in migration order."""
    return (("core", settings.core_schema), ("read_models", settings.postgres.schema_))


async def migrate(pool: asyncpg.Pool, *, component: str, package_dir: Path, schema: str) -> list[int]:
    """Apply ``component``'s pending migrations to ``schema``; returns the versions applied."""
    check_schema_name(schema)
    migrations = discover(package_dir)
    applied_now: list[int] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock(hashtext($1), hashtext($2))", _LOCK_NAMESPACE, schema)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                " component text NOT NULL, version integer NOT NULL, name text NOT NULL,"
                " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (component, version))"
            )
            rows = await conn.fetch(
                f'SELECT version, checksum FROM "{schema}".schema_migrations WHERE component = $1', component
            )
            todo = pending(migrations, {r["version"]: r["checksum"] for r in rows}, component)
            for migration in todo:
                async with conn.transaction():
                    try:
                        await conn.execute(migration.render(schema))
                    except asyncpg.PostgresError as exc:
                        raise MigrationError(
                            f"{component}: migration {migration.version:04d}_{migration.name} failed in "
                            f"schema {schema}: {exc}"
                        ) from exc
                    await conn.execute(
                        f'INSERT INTO "{schema}".schema_migrations (component, version, name, checksum)'
                        " VALUES ($1, $2, $3, $4)",
                        component,
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                applied_now.append(migration.version)
        finally:
            await conn.execute(
                "SELECT pg_advisory_unlock(hashtext($1), hashtext($2))", _LOCK_NAMESPACE, schema
            )
    return applied_now
