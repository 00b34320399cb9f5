"""The hub's one typed settings object.

Sources, highest precedence first: explicit keyword arguments, environment variables
(``HUB_`` prefix, ``__`` for nesting, e.g. ``HUB_KAFKA__BOOTSTRAP``), an optional YAML
file named by ``HUB_CONFIG``, then the defaults below (a single-machine development setup).

Secrets are never defaults: keys live in files under ``state_dir/keys`` that
:mod:`hub.kernel.keys` generates on first use in development, or are supplied by the operator.

Values are checked at this boundary (a topic prefix or schema name PostgreSQL cannot use
fails here, not deep in a migration): ``Settings(...)`` raises pydantic's
``ValidationError``; :func:`get_settings`, which every command and process uses, raises
:class:`hub.kernel.errors.ConfigError` with one line naming each field, its environment
variable and the rule (:func:`settings_problem`).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hub.kernel.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


#: a PostgreSQL schema name the hub may create (lower-case identifier, at most 63 bytes)
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: the core schema is ``<prefix>_core``: the prefix leaves room for the suffix
TOPIC_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,57}$")
CORE_SCHEMA_SUFFIX = "_core"


class KafkaSettings(BaseModel):
    """Where the log lives and how clients connect to it. Production points ``bootstrap`` at
    its own cluster; the connection options are applied to every client by
    :class:`hub.kernel.kafka.KafkaClients`."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = Field(
        "hub",
        description="names the topics (<prefix>.facts.<family>) and the core schema (<prefix>_core)",
    )
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    min_insync_replicas: int = Field(1, ge=1)
    client_id: str = "coresponder-hub"
    append_timeout_s: float = Field(
        30.0, gt=0, description="seconds an append waits for the broker's acknowledgements before the "
        "unacknowledged envelopes fail (AppendError) and their claims are released",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "SASL_SSL", description="TLS + SCRAM by default; PLAINTEXT / SASL_PLAINTEXT outside development "
        "only with allow_plaintext"
    )
    principal: str = Field(
        "admin",
        pattern=r"^[a-z][a-z0-9-]{0,62}$",
        description="the Kafka principal (SCRAM user) this process authenticates as; its rights are the "
        "role matrix of hub.kernel.kafka_acl (admin: the broker's super user)",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str = Field("", description="the SASL user (empty: principal)")
    sasl_password_file: Path | None = Field(
        None, description="file holding the SASL password (default: <keys>/kafka-<principal>.password)"
    )
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signs the brokers' certificates (default: <keys>/kafka-ca.pem "
        "when that file exists, else the system trust store)"
    )
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    credentials_dir: Path | None = Field(
        None, description="where the default credential files are (default: the state dir's keys/)"
    )
    allow_plaintext: bool = Field(
        False, description="outside development, accept a transport without TLS (PLAINTEXT, SASL_PLAINTEXT): "
        "only behind a network that encrypts and authenticates on the hub's behalf"
    )
    # local broker only (hub infra up)
    controller_port: int = 9093
    heap: str = "512m"
    version: str = "4.1.1"

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_names_schemas(cls, value: str) -> str:
        """The prefix becomes the core schema's name (``<prefix>_core``) and part of every
        topic name, so it is checked here, at the boundary, not deep in a migration."""
        if not TOPIC_PREFIX.match(value):
            raise ValueError(
                f"topic_prefix {value!r} is not usable: it names the PostgreSQL schema "
                f"'{value}{CORE_SCHEMA_SUFFIX}', so use lower-case letters, digits and _ "
                "(starting with a letter or _, at most 58 characters)"
            )
        return value

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def username(self) -> str:
        """The SASL user: ``sasl_username``, else the principal's name."""
        return self.sasl_username or self.principal

    def password_path(self) -> Path:
        """The file holding this principal's SASL password."""
        if self.sasl_password_file is not None:
            return self.sasl_password_file
        if self.credentials_dir is None:
            raise ValueError("kafka.sasl_password_file is required for SASL (no credentials_dir)")
        return self.credentials_dir / principal_password_file(self.principal)

    def sasl_password(self) -> str:
        """The SASL password, read from its file (never a setting in clear). A missing or
        empty file is a :class:`~hub.kernel.errors.ConfigError` naming the file."""
        path = self.password_path()
        try:
            password = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"Kafka principal {self.principal!r}: cannot read its password file {path} ({exc.strerror}); "
                "in development `hub infra up` generates it"
            ) from None
        if not password:
            raise ConfigError(f"Kafka principal {self.principal!r}: its password file {path} is empty")
        return password

    def cafile(self) -> Path | None:
        """The CA bundle clients verify the brokers with (None: the system trust store)."""
        if self.ssl_cafile is not None:
            return self.ssl_cafile
        if self.credentials_dir is not None and (self.credentials_dir / KAFKA_CA_FILE).exists():
            return self.credentials_dir / KAFKA_CA_FILE
        return None


#: the development CA's certificate under ``keys/`` (clients trust it; ``hub infra up`` makes it)
KAFKA_CA_FILE = "kafka-ca.pem"


def principal_password_file(principal: str) -> str:
    """The name of a Kafka principal's password file under ``keys/``."""
    return f"kafka-{principal}.password"


class PostgresSettings(BaseModel):
    """Read models, dedup index, seals, cursors, keys. ``dsn`` empty = the local server
    that ``hub infra up`` installs and starts, with generated passwords.

    Two roles: the OWNER (``user`` / ``dsn``, password file ``keys/postgres.password``) runs
    the migrations and owns every schema and table; the RUNTIME role (``runtime_user`` /
    ``runtime_dsn``, password file ``keys/postgres_runtime.password``) is what every process
    serves with: data privileges only, and on the audit tables INSERT and SELECT alone
    (:func:`hub.kernel.db.grant_runtime`). ``runtime_user: ""`` serves as the owner (one
    role, no protection of the audit trail against the application — not for production).
    An operator-managed server names both URLs (``dsn`` for the migrate job, ``runtime_dsn``
    for the processes); with ``migrations: check`` a process needs only ``runtime_dsn`` and
    never holds the owner's password."""

    dsn: str = Field("", description="the owner role's libpq URL (empty: the local server)")
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = Field("hub", description="the owner role: runs migrations, owns schemas and tables")
    runtime_user: str = Field("hub_app", description="the role processes serve with (empty: the owner)")
    runtime_dsn: str = Field("", description="the runtime role's libpq URL (required with dsn)")
    migrations: Literal["apply", "check"] = Field(
        "apply",
        description="apply: processes migrate as the owner when they open; check: they only check, "
        "as the runtime role, that `hub db migrate` (the migrate job) has applied every migration",
    )
    database: str = "hub"
    schema_: str = Field("hub", alias="schema", description="the read models' schema")
    pool_max: int = 10
    idle_in_transaction_timeout_s: float = Field(
        120.0, gt=0, description="idle_in_transaction_session_timeout of every hub connection: the server "
        "ends a session whose transaction waits longer (above kafka.append_timeout_s)",
    )
    sslmode: Literal["", "disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "",
        description="TLS to the server (libpq's sslmode, passed to asyncpg; an sslmode in a DSN wins). "
        "Empty: asyncpg's default (prefer) in development, verify-full elsewhere",
    )
    sslrootcert: Path | None = Field(
        None, description="CA bundle the server certificate is verified with (default: the system store)"
    )
    allow_unverified_tls: bool = Field(
        False, description="outside development, accept an sslmode weaker than verify-full"
    )

    model_config = {"populate_by_name": True}

    @field_validator("user", "runtime_user")
    @classmethod
    def _role_name(cls, value: str) -> str:
        if value and not SCHEMA_NAME.match(value):
            raise ValueError(f"{value!r} is not a usable role name: use lower-case letters, digits and _")
        return value

    def effective_sslmode(self, development: bool) -> str:
        """The sslmode a connection uses ("" = asyncpg's default)."""
        return self.sslmode or ("" if development else "verify-full")

    @property
    def separate_runtime(self) -> bool:
        """Whether processes serve with a role other than the owner."""
        return bool(self.runtime_user) and self.runtime_user != self.user

    @field_validator("schema_")
    @classmethod
    def _schema_name(cls, value: str) -> str:
        if not SCHEMA_NAME.match(value):
            raise ValueError(
                f"postgres.schema {value!r} is not a usable schema name: use lower-case letters, "
                "digits and _ (starting with a letter or _, at most 63 characters)"
            )
        return value


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    jwt_issuer: str = "http://127.0.0.1:8080/dev-issuer"
    jwt_audience: str = "coresponder-hub"
    jwks_url: str = Field(
        "", description="the identity provider's JWKS (https:// outside development); empty: the "
        "development issuer's key under state_dir/keys"
    )
    jwks_cache_seconds: float = Field(300, gt=0, description="how long fetched signing keys are trusted")
    jwks_timeout_seconds: float = Field(5, gt=0, description="time limit of one JWKS fetch")
    max_token_lifetime_seconds: int = Field(
        12 * 3600, ge=60, description="longest exp - iat a token may have (longer tokens are refused)"
    )


class KeystoreSettings(BaseModel):
    """The PKCS#11 token holding the epoch keys that every data key is encrypted under
    (:mod:`hub.kernel.token`). Development: empty ``module`` = SoftHSM2 with a token under
    ``state_dir/softhsm`` and a generated PIN; production requires ``module`` and ``pin_file``."""

    module: Path | None = Field(None, description="the PKCS#11 library of the HSM/KMS (.so)")
    token_label: str = Field("hub", min_length=1, max_length=32)
    pin_file: Path | None = Field(None, description="file holding the token user PIN (mode 0600)")


class ProjectionSettings(BaseModel):
    consumer_group: str = "hub-projections"
    connected_window_days: int = Field(30, ge=1)
    repeat_window_days: int = Field(365, ge=1)
    batch_size: int = Field(500, ge=1)
    small_cell_max: int = 10
    release_lateness_days: int = Field(
        7, ge=0, description="a month is released to analysts this many days after it ends"
    )
    attribute_total_max: int = Field(
        20, ge=0, description="zero-cell rule: protect a part equal to a total up to this (0 = off)"
    )
    vocabularies: list[str] = Field(
        default_factory=list,
        description="vocabulary names (hub/kernel/vocabularies) or files the projections apply; "
        "empty = every bundled one (see hub.kernel.vocabulary)",
    )
    #: the frequent-user worklist: people with this many behavioral-health contacts ...
    worklist_min_contacts: int = Field(3, ge=1)
    #: ... in this many days (both may be narrowed per request)
    worklist_window_days: int = Field(90, ge=1)


DemographicsSource = Literal["intake", "case", "ehr"]
DEMOGRAPHICS_SOURCES: tuple[DemographicsSource, ...] = ("intake", "case", "ehr")


class DemographicsSettings(BaseModel):
    """Where the report takes a person's race, ethnicity, gender and age from: ``sources``
    in precedence order, the first authoritative (``intake``: the co-responder's form,
    ``case``: the case system's case opening, ``ehr``: an EHR's referral answer). A source
    left out is ignored; disagreeing sources are counted as conflicts, never overwritten."""

    sources: list[DemographicsSource] = Field(
        default_factory=lambda: list(DEMOGRAPHICS_SOURCES), min_length=1
    )

    @field_validator("sources")
    @classmethod
    def _once(cls, value: list[DemographicsSource]) -> list[DemographicsSource]:
        if len(set(value)) != len(value):
            raise ValueError("name each demographics source once")
        return value


class IntakeDestination(BaseModel):
    """One EHR destination the encounter form offers: its display name and the channel its
    delivery worker sends on (the destination's name is the key of the same destination in
    the ``fhir-delivery`` / ``hl7-delivery`` component config)."""

    display: str = Field(min_length=1)
    channel: Literal["fhir", "hl7v2"]


class IntakeSettings(BaseModel):
    """The co-responders' encounter intake (``/v1/intake``, the form at ``/intake/``).

    ``destinations``: the EHR destinations a referral may go to (the delivery workers'
    destinations; empty: the form cannot request referrals). ``person_systems``: the
    identifier issuers whose identifiers the form accepts (the pseudonym is made from the
    issuer and the identifier, as the case connectors do). ``services``: the services a
    team may record as offered."""

    destinations: dict[str, IntakeDestination] = Field(default_factory=dict)
    person_systems: list[str] = Field(default_factory=lambda: ["mpi:county"], min_length=1)
    services: list[str] = Field(
        default_factory=lambda: [
            "outpatient_mh",
            "crisis_stabilization",
            "case_management",
            "substance_use_treatment",
            "housing",
            "peer_support",
        ]
    )

    @field_validator("services")
    @classmethod
    def _service_names(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", s)]
        if bad:
            raise ValueError(f"service names must be lower-case words joined by _: {bad!r}")
        return value


class CustomSettings(BaseModel):
    """County-defined fields and metrics (:mod:`hub.kernel.custom_fields`): ``definitions`` is
    the versioned YAML file declaring them (None: no custom fields, no custom metrics)."""

    definitions: str | None = Field(
        None, description="the county's custom fields and metrics file (see docs/operators.md)"
    )


#: the area grains a map or a population table can be given for (``incident_summary`` columns)
AreaGrain = Literal["precinct", "district", "sector", "beat"]


class AreaMapSettings(BaseModel):
    """One county-supplied map of its areas for the dashboard: a GeoJSON FeatureCollection
    whose features carry, in property ``id_property``, the area code the feed publishes at
    ``grain`` (e.g. Seattle's beat ``K2``). ``name_property``: an optional display name."""

    grain: AreaGrain
    geojson: Path
    id_property: str = Field(min_length=1)
    name_property: str | None = None


class AreaSettings(BaseModel):
    """Areas of need (``docs/operators.md``, "Areas of need"): ``population`` — a CSV or YAML
    table of residents per area with its source and year (rates per 1,000 residents);
    ``maps`` — the GeoJSON of the county's areas the dashboard draws, one per grain. Relative
    paths are relative to the working directory of the process. Both are checked when read
    (:mod:`projections.population`, :mod:`projections.geojson`)."""

    population: Path | None = None
    maps: list[AreaMapSettings] = Field(default_factory=list)

    @field_validator("maps")
    @classmethod
    def _one_per_grain(cls, value: list[AreaMapSettings]) -> list[AreaMapSettings]:
        grains = [m.grain for m in value]
        if len(set(grains)) != len(grains):
            raise ValueError("give at most one map per grain")
        return value


class RecordMacSettings(BaseModel):
    """The keys of the record MACs (:mod:`hub.kernel.recordmac`). ``key_id`` names the key
    every appender signs with (file ``keys/record-mac.<key_id>.key``); ``accepted_key_ids``
    the older keys consumers still accept during a rotation (their files must exist).
    Retiring a key = removing it from ``accepted_key_ids``; records MACed under it are then
    quarantined (see ``docs/operators.md``, "Record MACs and key rotation")."""

    key_id: str = Field("k1", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    accepted_key_ids: list[str] = Field(default_factory=list)

    @field_validator("accepted_key_ids")
    @classmethod
    def _kid_names(cls, value: list[str]) -> list[str]:
        bad = [k for k in value if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", k)]
        if bad:
            raise ValueError(f"record-MAC key ids must be 1-32 letters, digits, _ or -: {bad!r}")
        return value


class Settings(BaseSettings):
    """All configuration of one hub process."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    state_dir: Path = PROJECT_ROOT / "var"
    cache_dir: Path = PROJECT_ROOT / ".cache"
    environment: str = "development"
    agency_timezone: str = "America/Los_Angeles"
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="port of the worker processes' /metrics, /livez and /readyz "
        "(hub project, hub connectors run); 0: not served",
    )
    metrics_host: str = Field("127.0.0.1", description="address /metrics and the probes bind to "
                              "(0.0.0.0 in a pod, for Prometheus and the kubelet)")
    probe_stale_s: float = Field(
        300.0, gt=0, description="/livez of hub project fails when no projection progress was made "
        "for this long, and the projector then exits 75 by itself (a stuck projector is restarted by "
        "its supervisor, whether it watches probes or exits)",
    )
    stop_grace_s: float = Field(
        30.0, gt=0, description="seconds a long-running command may take to stop after SIGTERM/SIGINT "
        "before it exits at once (non-zero); a second signal exits at once",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    api: ApiSettings = ApiSettings()
    projections: ProjectionSettings = ProjectionSettings()
    keystore: KeystoreSettings = KeystoreSettings()
    record_mac: RecordMacSettings = RecordMacSettings()
    intake: IntakeSettings = IntakeSettings()
    demographics: DemographicsSettings = DemographicsSettings()
    custom: CustomSettings = CustomSettings()
    areas: AreaSettings = AreaSettings()

    @model_validator(mode="after")
    def _transport_security(self) -> Settings:
        """Default credential files live under the state dir's ``keys/``; outside
        development the log and the database are reached over verified TLS unless an
        explicit override says otherwise (``kafka.allow_plaintext``,
        ``postgres.allow_unverified_tls``)."""
        if self.kafka.credentials_dir is None:
            self.kafka = self.kafka.model_copy(update={"credentials_dir": self.keys_dir})
        if self.is_development:
            return self
        if not self.kafka.uses_tls and not self.kafka.allow_plaintext:
            raise ValueError(
                f"kafka.security_protocol {self.kafka.security_protocol} has no TLS; outside development use "
                "SASL_SSL or SSL, or set kafka.allow_plaintext (HUB_KAFKA__ALLOW_PLAINTEXT) where the "
                "network encrypts and authenticates for the hub"
            )
        mode = self.postgres.effective_sslmode(False)
        if mode != "verify-full" and not self.postgres.allow_unverified_tls:
            raise ValueError(
                f"postgres.sslmode {mode} does not verify the server; outside development use "
                "verify-full, or set postgres.allow_unverified_tls (HUB_POSTGRES__ALLOW_UNVERIFIED_TLS)"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings)

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def core_schema(self) -> str:
        """PostgreSQL schema for the log's own state (event index, dead letters, seals,
        cursors, person keys, access log); one per topic prefix."""
        return f"{self.kafka.topic_prefix}{CORE_SCHEMA_SUFFIX}"

    @property
    def is_development(self) -> bool:
        return self.environment == "development"


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``HUB_CONFIG`` (absent variable = no file)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data().get(field_name), field_name, False

    def _data(self) -> dict[str, Any]:
        path = os.environ.get("HUB_CONFIG")
        if not path:
            return {}
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as exc:  # absent, unreadable
            raise ConfigError(f"HUB_CONFIG={path}: cannot read the settings file: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"HUB_CONFIG={path}: not valid YAML ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the settings file must hold a mapping")
        return data

    def __call__(self) -> dict[str, Any]:
        return self._data()


def settings_problem(exc: ValidationError) -> str:
    """One line naming every invalid setting: ``<field> (<environment variable>): <rule>``.
    A setting is configuration, not personal data, so a rule may quote the bad value."""
    parts = []
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) or "<root>"
        env = "HUB_" + "__".join(p.removesuffix("_") for p in loc).upper()
        rule = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{field} ({env}): {rule}" if loc else rule)  # a cross-field rule names its fields
    return "invalid settings: " + "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests build their own ``Settings``. Invalid
    settings raise :class:`hub.kernel.errors.ConfigError` (see :func:`settings_problem`)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(settings_problem(exc)) from None
