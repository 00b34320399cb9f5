"""Inbound component kinds (CAD pollers, file drops, EIDO receiver, case pollers and
webhooks), registered into :data:`connectors.registry.COMPONENT_KINDS`.

Every factory takes the runtime (``rt.log``, ``rt.pool``, ``rt.keyring``,
``rt.pseudonym_key``, ``rt.deadletter_sealer``, ``rt.settings``) and the component's
config mapping; connector state tables are migrated on ``start()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from connectors.cad.eido import EidoMapper
from connectors.cad.filedrop import FileDropSource
from connectors.cad.ingest import mapper_for
from connectors.cad.profile import Profile, load_profile
from connectors.cad.receiver import eido_app
from connectors.cad.soql import SoqlSource
from connectors.cases.mapping import CaseMapper
from connectors.cases.rest import CaseRestSource
from connectors.cases.webhook import webhook_app
from connectors.core.http import serve
from connectors.core.runner import DeadLetterSink, Source, SourceRunner
from connectors.core.state import (
    PostgresCursorStore,
    PostgresDeliveryStore,
    PostgresRevisionStore,
)
from connectors.registry import ConfigError, register_kind
from hub.kernel.keys import secret_bytes
from hub.kernel.net import is_loopback


def profile_with_overrides(name: str, overrides: dict[str, Any] | None) -> Profile:
    """A bundled profile with a county's overrides (e.g. its agency id or extra
    disposition codes, merged into the profile's map)."""
    profile = load_profile(name)
    if not overrides:
        return profile
    data = profile.model_dump()
    for key, value in overrides.items():
        if key == "dispositions":
            data["dispositions"] = {**data["dispositions"], **value}
        else:
            data[key] = value
    return Profile.model_validate(data)


class PollingComponent:
    """A :class:`SourceRunner` with its state tables ensured on start."""

    def __init__(self, rt: Any, runner: SourceRunner) -> None:
        self.rt = rt
        self.runner = runner

    async def start(self) -> None:
        await self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()


class HttpComponent:
    """An aiohttp application served on ``host:port`` (127.0.0.1 by default)."""

    def __init__(self, rt: Any, app: web.Application, host: str, port: int) -> None:
        self.rt, self.app, self.host, self.port = rt, app, host, port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner, self.port = await serve(self.app, self.port, self.host)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _runner(
    rt: Any,
    cfg: dict[str, Any],
    source: Source,
    mapper: Any,
    family: str,
    profile: str | None,
    revisions: bool,
) -> SourceRunner:
    schema = rt.settings.core_schema
    return SourceRunner(
        source,
        mapper,
        rt.log,
        PostgresCursorStore(rt.pool, schema),
        DeadLetterSink(mapper.source, family, rt.deadletter_sealer, profile),
        PostgresRevisionStore(rt.pool, schema) if revisions else None,
        interval=float(cfg.get("interval", 5.0)),
    )


@register_kind("cad_soql_poller")
def cad_soql_poller(rt: Any, cfg: dict[str, Any]) -> PollingComponent:
    profile = profile_with_overrides(cfg.get("profile", "san_francisco"), cfg.get("overrides"))
    source = SoqlSource(
        cfg["name"],
        cfg["url"],
        updated_field=cfg.get("updated_field", profile.fields.get("updated_at", "data_updated_at")),
        key_field=cfg.get("key_field", profile.fields.get("cad_number", "cad_number")),
        page_size=int(cfg.get("page_size", 500)),
        app_token=cfg.get("app_token"),
    )
    mapper = mapper_for(profile, cfg.get("source"))
    return PollingComponent(rt, _runner(rt, cfg, source, mapper, "cad", profile.name, True))


@register_kind("cad_file_drop")
def cad_file_drop(rt: Any, cfg: dict[str, Any]) -> PollingComponent:
    """Watch ``directory`` for exports of ``profile`` (``pattern``, default ``*.csv``);
    a file is read once it has been unmodified for ``settle`` seconds (default 2; use 0
    when the exporter renames finished files into the folder). Revised rows in a later
    export become ``CallRevised`` facts (content-hash revisions, claimed in PostgreSQL)."""
    profile = profile_with_overrides(cfg["profile"], cfg.get("overrides"))
    pattern = cfg.get("pattern", "*.json" if profile.format == "eido" else "*.csv")
    source = FileDropSource(
        cfg["name"], Path(cfg["directory"]), profile, pattern, settle_seconds=float(cfg.get("settle", 2.0))
    )
    mapper = mapper_for(profile, cfg.get("source"))
    return PollingComponent(rt, _runner(rt, cfg, source, mapper, "cad", profile.name, True))


def eido_auth_key(rt: Any, cfg: dict[str, Any], host: str) -> bytes | None:
    """The HMAC key the EIDO receiver checks (``key_name``, a key file under keys_dir), or
    None for ``auth: none``. An open endpoint on a non-loopback address is refused: anyone
    who reaches it could write CAD facts into the log."""
    auth = str(cfg.get("auth", "hmac" if cfg.get("key_name") else "none")).casefold()
    if auth not in ("hmac", "none"):
        raise ConfigError(f"eido_receiver {cfg.get('name')}: auth must be hmac or none")
    if auth == "hmac":
        return secret_bytes(rt.settings, cfg.get("key_name", "eido.key"))
    if not is_loopback(host) and "auth" not in cfg:
        raise ConfigError(
            f"eido_receiver {cfg.get('name')}: listening on {host} needs key_name (HMAC-signed "
            "requests), or an explicit 'auth: none' when a proxy authenticates the CAD"
        )
    return None


@register_kind("eido_receiver")
def eido_receiver(rt: Any, cfg: dict[str, Any]) -> HttpComponent:
    profile = profile_with_overrides(cfg.get("profile", "eido"), cfg.get("overrides"))
    mapper = EidoMapper(profile, cfg.get("source"))
    host = str(cfg.get("host", "127.0.0.1"))
    app = eido_app(
        mapper=mapper,
        log_port=rt.log,
        sink=DeadLetterSink(mapper.source, "cad", rt.deadletter_sealer, profile.name),
        revisions=PostgresRevisionStore(rt.pool, rt.settings.core_schema),
        path=cfg.get("path", "/eido"),
        key=eido_auth_key(rt, cfg, host),
        tolerance=float(cfg.get("tolerance_seconds", 300)),
    )
    return HttpComponent(rt, app, host, int(cfg.get("port", 8710)))


def _case_mapper(rt: Any, cfg: dict[str, Any]) -> CaseMapper:
    return CaseMapper(
        cfg.get("source", f"cases/{cfg['name']}"),
        rt.pseudonym_key,
        rt.keyring,
        default_namespace=cfg.get("namespace", "mpi:county"),
        default_agency=cfg.get("agency"),
    )


@register_kind("case_rest_poller")
def case_rest_poller(rt: Any, cfg: dict[str, Any]) -> PollingComponent:
    source = CaseRestSource(
        cfg["name"], cfg["url"], page_size=int(cfg.get("page_size", 500)), token=cfg.get("token")
    )
    return PollingComponent(rt, _runner(rt, cfg, source, _case_mapper(rt, cfg), "cases", None, False))


@register_kind("case_webhook")
def case_webhook(rt: Any, cfg: dict[str, Any]) -> HttpComponent:
    mapper = _case_mapper(rt, cfg)
    app = webhook_app(
        receiver=cfg["name"],
        key=secret_bytes(rt.settings, cfg.get("key_name", "webhook.key")),
        mapper=mapper,
        log_port=rt.log,
        sink=DeadLetterSink(mapper.source, "cases", rt.deadletter_sealer),
        deliveries=PostgresDeliveryStore(rt.pool, rt.settings.core_schema),
        path=cfg.get("path", "/webhooks/cases"),
        tolerance=float(cfg.get("tolerance_seconds", 300)),
    )
    return HttpComponent(rt, app, cfg.get("host", "127.0.0.1"), int(cfg.get("port", 8711)))
