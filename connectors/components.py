"""Inbound component kinds (CAD pollers, file drops, EIDO receiver, case pollers and
webhooks): one typed config model and one factory per kind, listed in
:data:`connectors.registry.KINDS`.

Every factory takes the runtime (``rt.log``, ``rt.pool``, ``rt.keyring``,
``rt.pseudonym_key``, ``rt.deadletter_sealer``, ``rt.settings``) and its kind's validated
config model; it does no I/O. Each config's defaults are the kind's documented defaults
(``docs/operators.md``). A component records the mapper configuration it maps with when
it starts (:mod:`connectors.core.recorded`): a CAD component its profile (bundled or
YAML-path base plus the county's overrides, :mod:`connectors.cad.used_profile`), a case
component its :class:`connectors.cases.mapping.CaseMapping` (source, person namespace,
agency); its dead letters name that exact configuration, so a re-drive maps with it.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, ValidationError, field_validator, model_validator

from connectors.cad.eido import EidoMapper
from connectors.cad.filedrop import FileDropSource
from connectors.cad.ingest import mapper_for
from connectors.cad.profile import apply_overrides, check_custom, load_profile
from connectors.cad.receiver import eido_app
from connectors.cad.soql import SoqlSource
from connectors.cad.used_profile import UsedProfile
from connectors.cases.mapping import DEFAULT_NAMESPACE, CaseMapping
from connectors.cases.rest import CaseRestSource
from connectors.cases.webhook import webhook_app
from connectors.core.component import ComponentConfig, describe_validation
from connectors.core.http import serve
from connectors.core.limits import SourceLimits
from connectors.core.recorded import MapperConfig, MapperConfigStore
from connectors.core.runner import DeadLetterSink, Source, SourceRunner
from connectors.core.state import (
    PostgresCursorStore,
    PostgresDeliveryStore,
    PostgresRevisionStore,
)
from connectors.core.tls import TlsServerConfig, server_context
from hub.kernel.custom_fields import FieldDef, load_definitions
from hub.kernel.keys import secret_bytes
from hub.kernel.net import is_loopback
from schemas.deadletter import SourceFamily

# --------------------------------------------------------------------------- config models


class CadProfileConfig(ComponentConfig):
    """What every CAD kind has: its ``profile`` (a bundled name or a YAML path), the
    county's ``overrides`` of it and the ``source`` name of its events (default: the
    profile's). The profile is loaded and the overrides applied when the config is
    validated, so an unknown profile or a bad override stops the file from loading."""

    profile: str
    overrides: dict[str, Any] | None = None
    source: str | None = None

    @model_validator(mode="after")
    def _profile_builds(self) -> CadProfileConfig:
        try:
            base = load_profile(self.profile)
        except ValidationError as exc:
            reason = describe_validation(exc)
            raise ValueError(f"profile: {self.profile} is not a valid profile: {reason}") from None
        except ValueError as exc:
            raise ValueError(f"profile: {exc}") from None
        try:
            apply_overrides(base, self.overrides)
        except ValidationError as exc:
            raise ValueError(f"overrides: {describe_validation(exc)}") from None
        except ValueError as exc:
            raise ValueError(f"overrides: {exc}") from None
        return self

    def used_profile(self) -> UsedProfile:
        """The profile this component maps with (base + overrides, and where it came from)."""
        return UsedProfile.of(self.profile, self.overrides)


class PollingConfig(ComponentConfig):
    """A polling component: ``interval`` seconds between polls once the source is drained."""

    interval: float = Field(5.0, ge=0)


class CadSoqlPollerConfig(CadProfileConfig, PollingConfig):
    """A Socrata/SoQL "calls for service" API (``url``), paged by its updated-at field."""

    kind: Literal["cad-soql-poller"] = "cad-soql-poller"
    url: str
    profile: str = "san_francisco"
    updated_field: str | None = None  # default: the profile's updated_at column, else data_updated_at
    key_field: str | None = None  # default: the profile's cad_number column, else cad_number
    page_size: int = Field(500, gt=0)
    app_token: str | None = None


class CadFileDropConfig(CadProfileConfig, PollingConfig):
    """A ``directory`` the CAD exports into. A file is read once it has been unmodified for
    ``settle`` seconds (use 0 when the exporter renames finished files into the folder)."""

    kind: Literal["cad-file-drop"] = "cad-file-drop"
    directory: Path
    pattern: str | None = None  # default: *.json for an EIDO profile, else *.csv
    settle: float = Field(2.0, ge=0)


class ReceiverConfig(TlsServerConfig):
    """What every HTTP receiver kind has: TLS (``tls`` or ``tls_terminated_in_front``,
    :mod:`connectors.core.tls`), the largest request body it reads (``max_body_bytes``) and
    the per-source ``limits`` (:class:`connectors.core.limits.SourceLimits`)."""

    max_body_bytes: int = Field(5 * 1024 * 1024, gt=0, le=64 * 1024 * 1024)
    limits: SourceLimits = Field(default_factory=SourceLimits)


class EidoReceiverConfig(CadProfileConfig, ReceiverConfig):
    """An HTTP endpoint a PSAP/CAD pushes NENA EIDO JSON to. ``auth``: ``hmac`` (signed
    requests, key file ``key_name``, default ``eido.key``) or ``none``; unset, it is
    ``hmac`` when ``key_name`` is given, else ``none`` — which is refused off a loopback
    address (anyone who reaches the endpoint could write CAD facts into the log) unless
    written explicitly, when a proxy in front of it authenticates the CAD."""

    kind: Literal["eido-receiver"] = "eido-receiver"
    profile: str = "eido"
    host: str = "127.0.0.1"
    port: int = Field(8710, ge=0, le=65535)
    path: str = "/eido"
    key_name: str | None = None
    tolerance_seconds: float = Field(300, gt=0)
    auth: Literal["hmac", "none"] | None = None

    @field_validator("auth", mode="before")
    @classmethod
    def _casefold(cls, value: Any) -> Any:
        return value.casefold() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _open_only_on_loopback(self) -> EidoReceiverConfig:
        if self.auth is None and self.key_name is None and not is_loopback(self.host):
            raise ValueError(
                f"auth: listening on {self.host} needs key_name (HMAC-signed requests), or an "
                "explicit 'auth: none' when a proxy authenticates the CAD"
            )
        return self

    @property
    def auth_mode(self) -> Literal["hmac", "none"]:
        if self.auth is not None:
            return self.auth
        return "hmac" if self.key_name else "none"


class CaseMappingConfig(ComponentConfig):
    """What both case kinds have: the ``source`` of their events (default
    ``cases/<name>``), the identifier ``namespace`` of persons given without one, and the
    ``agency`` of CAD incidents given without one."""

    source: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    agency: str | None = None
    #: the EHR destinations a case-system referral may name → the channel of their delivery worker
    referral_destinations: dict[str, Literal["fhir", "hl7v2"]] = Field(default_factory=dict)

    def case_mapping(self) -> CaseMapping:
        """The mapping this component maps with (recorded, so a re-drive maps alike)."""
        source = self.source or f"cases/{self.name}"
        return CaseMapping(
            source=source,
            namespace=self.namespace,
            agency=self.agency,
            referral_destinations=self.referral_destinations,
        )


class CaseRestPollerConfig(CaseMappingConfig, PollingConfig):
    """The program's case-management system, polled by updated-since (``url``)."""

    kind: Literal["case-rest-poller"] = "case-rest-poller"
    url: str
    page_size: int = Field(500, gt=0)
    token: str | None = None


class CaseWebhookConfig(CaseMappingConfig, ReceiverConfig):
    """Signed webhooks pushed by the case system (HMAC key file ``key_name``)."""

    kind: Literal["case-webhook"] = "case-webhook"
    host: str = "127.0.0.1"
    port: int = Field(8711, ge=0, le=65535)
    path: str = "/webhooks/cases"
    key_name: str = "webhook.key"
    tolerance_seconds: float = Field(300, gt=0)


# --------------------------------------------------------------------------- components


async def _record(rt: Any, config: MapperConfig | None) -> None:
    if config is not None:
        await MapperConfigStore(rt.pool, rt.settings.core_schema).record(config)


class PollingComponent:
    """A :class:`SourceRunner`; its mapper configuration is recorded before it starts."""

    def __init__(self, rt: Any, runner: SourceRunner, mapper_config: MapperConfig | None = None) -> None:
        self.rt = rt
        self.runner = runner
        self.mapper_config = mapper_config

    async def start(self) -> None:
        await _record(self.rt, self.mapper_config)
        await self.runner.start()

    async def stop(self) -> None:
        await self.runner.stop()


class HttpComponent:
    """An aiohttp application served on ``host:port`` (127.0.0.1 by default; TLS with
    ``ssl_context``); its mapper configuration is recorded before it listens."""

    def __init__(
        self,
        rt: Any,
        app: web.Application,
        host: str,
        port: int,
        mapper_config: MapperConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.rt, self.app, self.host, self.port = rt, app, host, port
        self.mapper_config = mapper_config
        self.ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        await _record(self.rt, self.mapper_config)
        self._runner, self.port = await serve(self.app, self.port, self.host, self.ssl_context)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _runner(
    rt: Any,
    cfg: PollingConfig,
    source: Source,
    mapper: Any,
    family: SourceFamily,
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
        interval=cfg.interval,
    )


def cad_soql_poller(rt: Any, cfg: CadSoqlPollerConfig) -> PollingComponent:
    used = cfg.used_profile()
    profile = used.profile
    check_custom(profile, rt.settings)
    source = SoqlSource(
        cfg.name,
        cfg.url,
        updated_field=cfg.updated_field or profile.fields.get("updated_at", "data_updated_at"),
        key_field=cfg.key_field or profile.fields.get("cad_number", "cad_number"),
        page_size=cfg.page_size,
        app_token=cfg.app_token,
    )
    mapper = mapper_for(profile, cfg.source, rt.keyring)
    return PollingComponent(rt, _runner(rt, cfg, source, mapper, "cad", used.ref, True), used)


def cad_file_drop(rt: Any, cfg: CadFileDropConfig) -> PollingComponent:
    """Watch ``directory`` for exports of ``profile``. Revised rows in a later export become
    ``CallRevised`` facts (content-hash revisions, claimed in PostgreSQL)."""
    used = cfg.used_profile()
    profile = used.profile
    check_custom(profile, rt.settings)
    pattern = cfg.pattern or ("*.json" if profile.format == "eido" else "*.csv")
    source = FileDropSource(cfg.name, cfg.directory, profile, pattern, settle_seconds=cfg.settle)
    mapper = mapper_for(profile, cfg.source, rt.keyring)
    return PollingComponent(rt, _runner(rt, cfg, source, mapper, "cad", used.ref, True), used)


def _receiver_tls(rt: Any, cfg: EidoReceiverConfig | CaseWebhookConfig) -> ssl.SSLContext | None:
    """The receiver's TLS context (plaintext outside development only when TLS is
    terminated in front of it: :func:`connectors.core.tls.server_context`)."""
    return server_context(cfg, name=f"{cfg.name!r} ({cfg.kind})", development=rt.settings.is_development)


def eido_auth_key(rt: Any, cfg: EidoReceiverConfig) -> bytes | None:
    """The HMAC key the EIDO receiver checks (``key_name``, a key file under keys_dir,
    default ``eido.key``), or None for ``auth: none``."""
    if cfg.auth_mode == "hmac":
        return secret_bytes(rt.settings, cfg.key_name or "eido.key")
    return None


def eido_receiver(rt: Any, cfg: EidoReceiverConfig) -> HttpComponent:
    used = cfg.used_profile()
    mapper = EidoMapper(used.profile, cfg.source)
    app = eido_app(
        mapper=mapper,
        log_port=rt.log,
        sink=DeadLetterSink(mapper.source, "cad", rt.deadletter_sealer, used.ref),
        revisions=PostgresRevisionStore(rt.pool, rt.settings.core_schema),
        path=cfg.path,
        key=eido_auth_key(rt, cfg),
        tolerance=cfg.tolerance_seconds,
        max_body=cfg.max_body_bytes,
        limits=cfg.limits,
    )
    return HttpComponent(rt, app, cfg.host, cfg.port, used, _receiver_tls(rt, cfg))


def case_fields(settings: Any) -> dict[str, FieldDef]:
    """The county's custom fields declared for case records (``custom.definitions``)."""
    return load_definitions(settings.custom.definitions).from_source("case")


def case_rest_poller(rt: Any, cfg: CaseRestPollerConfig) -> PollingComponent:
    mapping = cfg.case_mapping()
    source = CaseRestSource(cfg.name, cfg.url, page_size=cfg.page_size, token=cfg.token)
    mapper = mapping.mapper(rt.pseudonym_key, rt.keyring, case_fields(rt.settings))
    return PollingComponent(rt, _runner(rt, cfg, source, mapper, "cases", mapping.ref, False), mapping)


def case_webhook(rt: Any, cfg: CaseWebhookConfig) -> HttpComponent:
    mapping = cfg.case_mapping()
    mapper = mapping.mapper(rt.pseudonym_key, rt.keyring, case_fields(rt.settings))
    app = webhook_app(
        receiver=cfg.name,
        key=secret_bytes(rt.settings, cfg.key_name),
        mapper=mapper,
        log_port=rt.log,
        sink=DeadLetterSink(mapper.source, "cases", rt.deadletter_sealer, mapping.ref),
        deliveries=PostgresDeliveryStore(rt.pool, rt.settings.core_schema),
        path=cfg.path,
        tolerance=cfg.tolerance_seconds,
        max_body=cfg.max_body_bytes,
        limits=cfg.limits,
    )
    return HttpComponent(rt, app, cfg.host, cfg.port, mapping, _receiver_tls(rt, cfg))
