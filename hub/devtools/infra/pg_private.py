"""A private PostgreSQL cluster for the fault suite (:mod:`hub.devtools.faults`): ``initdb``
under its own directory, its own loopback port and socket directory, run as the ``postgres``
OS user with ``pg_ctl`` (never the machine's Debian cluster, which other work shares).

The hub's two roles and its database are provisioned as :mod:`hub.devtools.infra.postgres`
does for the dev server (same SQL, passwords from the suite's own key files), so hub
processes log in with their ordinary settings (``postgres.port`` = this cluster's port).

Invariants: ``restart("immediate")`` is a crash (no checkpoint; WAL recovery on start),
``restart("fast")`` a clean shutdown that disconnects every client; both wait until the
server accepts connections again. Nothing here touches another cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hub.devtools.infra import InfraError
from hub.devtools.infra.postgres import _as_postgres, _run, role_sql
from hub.kernel.keys import RUNTIME_PASSWORD, secret_text
from hub.kernel.settings import Settings


def server_bindir() -> Path:
    """The newest installed PostgreSQL server's ``bin`` directory (Debian layout)."""
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
        key=lambda b: float(b.parent.name) if b.parent.name.replace(".", "", 1).isdigit() else 0,
    )
    if not found:
        raise InfraError(
            "no PostgreSQL server binaries under /usr/lib/postgresql: apt-get install -y postgresql "
            "(or run `hub infra setup`)"
        )
    return found[-1]


@dataclass(frozen=True)
class PrivatePostgres:
    """One private cluster: data in ``home/data``, socket in ``home/run``, log ``home/postgres.log``."""

    home: Path
    port: int = 15432

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log(self) -> Path:
        return self.home / "postgres.log"

    def _pg_ctl(self, *args: str) -> list[str]:
        return _as_postgres([str(server_bindir() / "pg_ctl"), "-D", str(self.data), *args])

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=64MB -c fsync=on"
        )

    def init(self) -> None:
        """``initdb`` once (the directory is owned by ``postgres``; its parents must be
        traversable by it)."""
        if (self.data / "PG_VERSION").exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o755)
        for d in (self.data, self.socket_dir):
            d.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            for path in (self.home, self.data, self.socket_dir):
                shutil.chown(path, "postgres", "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres", "postgres")
        os.chmod(self.data, 0o700)
        _run(
            _as_postgres(
                [
                    str(server_bindir() / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "--no-instructions",
                ]
            )
        )

    def start(self) -> None:
        self._ctl("start", "-w", "-t", "60", "-l", str(self.log), "-o", self._options())

    def restart(self, mode: Literal["immediate", "fast"]) -> None:
        """Stop in ``mode`` (immediate: a crash) and start again; returns once accepting."""
        self._ctl("stop", "-m", mode, "-w", "-t", "60")
        self.start()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._ctl("stop", "-m", "fast", "-w", "-t", "60", check=False)

    def _ctl(self, *args: str, check: bool = True) -> None:
        result = subprocess.run(self._pg_ctl(*args), capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace").splitlines()[-15:] if self.log.exists() else []
            raise InfraError(
                f"pg_ctl {args[0]} failed: {(result.stdout + result.stderr)[-1500:]}\n" + "\n".join(log)
            )

    def provision(self, settings: Settings) -> None:
        """The owner and runtime roles (passwords from ``settings``' key files) and the database."""
        pg = settings.postgres
        psql = [
            str(server_bindir() / "psql") if (server_bindir() / "psql").exists() else "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-d",
            "postgres",
        ]
        sql = role_sql(pg.user, secret_text(settings, "postgres.password"))
        if pg.separate_runtime:
            sql += role_sql(pg.runtime_user, secret_text(settings, RUNTIME_PASSWORD))
        _run(_as_postgres([*psql, "-f", "-"]), input_text=sql)
        exists = _run(
            _as_postgres([*psql, "-tA", "-c", f"SELECT 1 FROM pg_database WHERE datname = '{pg.database}'"])
        ).stdout.strip()
        if exists != "1":
            _run(_as_postgres([*psql, "-c", f'CREATE DATABASE "{pg.database}" OWNER "{pg.user}"']))
