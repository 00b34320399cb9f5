"""PostgreSQL for the hub: either the server named by ``postgres.dsn`` (operator-managed; we
only probe it) or the machine's Debian PostgreSQL, which ``hub infra up`` installs when
absent, starts without systemd (``pg_ctlcluster``, run as root), and provisions with the
hub's two roles and its database: the OWNER role ``postgres.user`` (password from
``hub.kernel.keys.secret_text(settings, "postgres.password")``) that runs migrations and owns
the database, and the RUNTIME role ``postgres.runtime_user`` (its own generated password file
``postgres_runtime.password``) that processes serve with. Neither is a superuser, and
neither may create roles or databases; the runtime role gets its privileges from the
migration runner (:func:`hub.kernel.db.grant_runtime`), never ownership.

Idempotent: a running cluster is left alone; the roles are (re)provisioned only when a
login with a stored password fails, so the key files are the single source of truth.
Provisioning never changes anything about a role whose login works.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import asyncpg

from hub.devtools.infra import InfraError
from hub.devtools.infra.proc import describe_pid, file_lock, listener_pids, port_is_free
from hub.kernel import db
from hub.kernel.keys import RUNTIME_PASSWORD, secret_text
from hub.kernel.settings import Settings

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Cluster:
    """One line of ``pg_lsclusters``."""

    version: str
    name: str
    port: int
    status: str
    owner: str
    data_dir: str
    log_file: str

    @property
    def online(self) -> bool:
        return self.status.startswith("online")


def parse_lsclusters(output: str) -> list[Cluster]:
    """Parse ``pg_lsclusters --no-header`` output (columns separated by whitespace)."""
    clusters = []
    for line in output.splitlines():
        cols = line.split()
        if len(cols) < 6 or not cols[2].isdigit():
            continue
        status = cols[3]
        rest = cols[4:]
        if rest and rest[0] == "(recovery)":  # "online,recovery" in some versions, a column in others
            rest = rest[1:]
        owner, data_dir = rest[0], rest[1]
        log_file = rest[2] if len(rest) > 2 else ""
        clusters.append(Cluster(cols[0], cols[1], int(cols[2]), status, owner, data_dir, log_file))
    return clusters


def choose_cluster(clusters: list[Cluster], port: int) -> Cluster | None:
    """The cluster configured on ``port`` (newest version first), else ``None``."""
    on_port = [c for c in clusters if c.port == port]
    on_port.sort(
        key=lambda c: float(c.version) if c.version.replace(".", "", 1).isdigit() else 0, reverse=True
    )
    return on_port[0] if on_port else None


def provisioning_sql(user: str, password: str, database: str) -> tuple[str, str]:
    """SQL (run as the ``postgres`` superuser) that creates or updates the hub role, and the
    name of the database to create if missing. Identifiers are validated; the password is a
    quoted literal (never on a command line)."""
    for ident in (user, database):
        if not _IDENT.match(ident):
            raise InfraError(f"invalid PostgreSQL identifier {ident!r} (letters, digits, _ only)")
    return role_sql(user, password), database


def role_sql(user: str, password: str) -> str:
    """SQL (run as the ``postgres`` superuser) that creates ``user`` as a login role that is
    not a superuser and cannot create roles or databases, or resets its password."""
    if not _IDENT.match(user):
        raise InfraError(f"invalid PostgreSQL identifier {user!r} (letters, digits, _ only)")
    literal = "'" + password.replace("'", "''") + "'"
    attrs = "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB"
    return (
        "DO $$ BEGIN\n"
        f"  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{user}') THEN\n"
        f'    CREATE ROLE "{user}" {attrs} PASSWORD {literal};\n'
        "  ELSE\n"
        f'    ALTER ROLE "{user}" {attrs} PASSWORD {literal};\n'
        "  END IF;\n"
        "END $$;\n"
    )


@dataclass
class PostgresStatus:
    """Health of the configured PostgreSQL (``managed``: the local cluster run by ``hub infra``)."""

    target: str  # host:port/database, never the password
    managed: bool
    reachable: bool
    server_version: str | None = None
    cluster: str | None = None
    error: str | None = None

    @property
    def healthy(self) -> bool:
        return self.reachable

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "healthy": self.healthy}


def is_managed(settings: Settings) -> bool:
    return not settings.postgres.dsn


def _target(settings: Settings) -> str:
    if settings.postgres.dsn:
        return db.redact(settings.postgres.dsn)
    pg = settings.postgres
    return f"{pg.host}:{pg.port}/{pg.database}"


async def probe(settings: Settings, timeout: float = 5.0) -> PostgresStatus:
    """Log in as the owner role and as the runtime role and ask the server version (never
    raises; healthy only when both logins work)."""
    status = PostgresStatus(target=_target(settings), managed=is_managed(settings), reachable=False)
    roles: tuple[db.DbRole, ...] = ("owner", "runtime") if settings.postgres.separate_runtime else ("owner",)
    try:
        for role in roles:
            conn = await asyncpg.connect(db.dsn(settings, role), timeout=timeout, ssl=db.ssl_option(settings))
            try:
                status.server_version = await conn.fetchval("SHOW server_version")
            finally:
                await conn.close()
        status.reachable = True
    except Exception as exc:  # any failure means "not healthy"; the message says why
        status.error = f"{type(exc).__name__}: {exc}"
    return status


# --------------------------------------------------------------------------- local cluster


def _run(
    cmd: list[str], *, input_text: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, input=input_text, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise InfraError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return result


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the ``postgres`` OS user (peer authentication on the local socket)."""
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", "postgres", "--", *cmd]
        return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(cmd)]
    if shutil.which("sudo"):
        return ["sudo", "-n", "-u", "postgres", *cmd]
    raise InfraError("provisioning the local PostgreSQL needs root (or sudo) to act as the postgres user")


def ensure_installed() -> None:
    """Install Debian's ``postgresql`` package when its cluster tools are missing."""
    if shutil.which("pg_ctlcluster") and list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        return
    if not shutil.which("apt-get"):
        raise InfraError(
            "PostgreSQL is not installed and apt-get is unavailable; install PostgreSQL "
            "or set HUB_POSTGRES__DSN to an existing server"
        )
    if os.geteuid() != 0:
        raise InfraError(
            "PostgreSQL is not installed; run as root (or: sudo apt-get install -y postgresql), "
            "or set HUB_POSTGRES__DSN to an existing server"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise InfraError(f"{' '.join(cmd)} failed:\n{(result.stdout + result.stderr)[-3000:]}")


def local_cluster(settings: Settings) -> Cluster:
    """The Debian cluster serving ``postgres.port``, created when none exists."""
    clusters = parse_lsclusters(_run(["pg_lsclusters", "--no-header"]).stdout)
    chosen = choose_cluster(clusters, settings.postgres.port)
    if chosen:
        return chosen
    versions = sorted(
        (p.parent.parent.name for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
        key=lambda v: float(v) if v.replace(".", "", 1).isdigit() else 0,
    )
    if not versions:
        raise InfraError("no PostgreSQL server binaries under /usr/lib/postgresql")
    if clusters:
        ports = ", ".join(f"{c.version}/{c.name}:{c.port}" for c in clusters)
        raise InfraError(
            f"no local PostgreSQL cluster listens on port {settings.postgres.port} (clusters: {ports}); "
            "set HUB_POSTGRES__PORT to one of them"
        )
    _run(["pg_createcluster", versions[-1], "main", "--port", str(settings.postgres.port)])
    chosen = choose_cluster(
        parse_lsclusters(_run(["pg_lsclusters", "--no-header"]).stdout), settings.postgres.port
    )
    if not chosen:
        raise InfraError("pg_createcluster did not create a cluster on the configured port")
    return chosen


def start_cluster(settings: Settings, cluster: Cluster) -> None:
    if cluster.online:
        return
    pg = settings.postgres
    if not port_is_free(pg.host, pg.port):
        holders = ", ".join(describe_pid(p) for p in listener_pids(pg.port)) or "unknown process"
        raise InfraError(f"cannot start PostgreSQL: port {pg.host}:{pg.port} is already in use by {holders}")
    result = _run(["pg_ctlcluster", cluster.version, cluster.name, "start"], check=False)
    if result.returncode != 0:
        log = ""
        if cluster.log_file and Path(cluster.log_file).exists():
            log = "\n".join(Path(cluster.log_file).read_text(errors="replace").splitlines()[-15:])
        raise InfraError(
            f"pg_ctlcluster {cluster.version} {cluster.name} start failed:\n"
            f"{(result.stdout + result.stderr)[-2000:]}\n{log}"
        )


def provision(settings: Settings) -> None:
    """Create/update the owner role and the runtime role (passwords from their key files)
    and the database (owned by the owner role). A role whose login already works is left
    untouched (a shared server's existing owner keeps everything it has)."""
    pg = settings.postgres
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", str(pg.port), "-d", "postgres"]
    wanted: list[tuple[str, db.DbRole, str]] = [(pg.user, "owner", "postgres.password")]
    if pg.separate_runtime:
        wanted.append((pg.runtime_user, "runtime", RUNTIME_PASSWORD))
    for user, role, password_file in wanted:
        if _can_log_in(settings, role):
            continue
        _run(
            _as_postgres([*psql, "-f", "-"]), input_text=role_sql(user, secret_text(settings, password_file))
        )
    database = pg.database
    if not _IDENT.match(database):
        raise InfraError(f"invalid PostgreSQL identifier {database!r} (letters, digits, _ only)")
    exists = _run(
        _as_postgres([*psql, "-tA", "-c", f"SELECT 1 FROM pg_database WHERE datname = '{database}'"])
    ).stdout.strip()
    if exists != "1":
        _run(_as_postgres([*psql, "-c", f'CREATE DATABASE "{database}" OWNER "{pg.user}"']))


def _can_log_in(settings: Settings, role: db.DbRole) -> bool:
    async def attempt() -> bool:
        try:
            conn = await asyncpg.connect(db.dsn(settings, role), timeout=5.0, ssl=db.ssl_option(settings))
        except Exception:  # wrong password, missing role: provision it
            return False
        await conn.close()
        return True

    return asyncio.run(attempt())


async def up(settings: Settings) -> PostgresStatus:
    """Ensure PostgreSQL answers for the hub; install/start/provision the local one if needed."""
    if not is_managed(settings):
        status = await probe(settings, timeout=10.0)
        if not status.healthy:
            raise InfraError(f"the configured PostgreSQL {status.target} is unreachable: {status.error}")
        return status
    status = await probe(settings)
    if status.healthy:
        return status
    with file_lock(settings.state_dir / "postgres.lock"):
        await asyncio.to_thread(ensure_installed)
        cluster = await asyncio.to_thread(local_cluster, settings)
        await asyncio.to_thread(start_cluster, settings, cluster)
        await _wait_accepting(settings)
        await asyncio.to_thread(provision, settings)
    status = await probe(settings)
    status.cluster = f"{cluster.version}/{cluster.name}"
    if not status.healthy:
        raise InfraError(f"PostgreSQL started but the hub cannot log in: {status.error}")
    return status


async def _wait_accepting(settings: Settings, timeout: float = 60.0) -> None:
    """Wait until the server accepts connections (any auth answer counts as up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pg = settings.postgres
    while True:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(pg.host, pg.port), 2)
            writer.close()
            return
        except (OSError, TimeoutError):
            if loop.time() > deadline:
                raise InfraError(f"PostgreSQL did not accept connections on {pg.host}:{pg.port}") from None
            await asyncio.sleep(0.3)


def down(settings: Settings) -> bool:
    """Stop the local cluster (fast shutdown: clients disconnected, data flushed). External
    servers are never touched. Returns True if a running cluster was stopped."""
    if not is_managed(settings) or not shutil.which("pg_lsclusters"):
        return False
    clusters = parse_lsclusters(_run(["pg_lsclusters", "--no-header"]).stdout)
    cluster = choose_cluster(clusters, settings.postgres.port)
    if cluster is None or not cluster.online:
        return False
    _run(["pg_ctlcluster", cluster.version, cluster.name, "stop", "-m", "fast"])
    return True
