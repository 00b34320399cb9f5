"""The hub's one typed settings object.

Sources, highest precedence first: explicit keyword arguments, environment variables
(``HUB_`` prefix, ``__`` for nesting, e.g. ``HUB_KAFKA__BOOTSTRAP``), an optional YAML
file named by ``HUB_CONFIG``, then the defaults below (a single-machine development setup).

Secrets are never defaults: keys live in files under ``state_dir/keys`` that
:mod:`hub.keys` generates on first use in development, or are supplied by the operator.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    """Where the log lives. Production points ``bootstrap`` at its own cluster."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "hub"
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    min_insync_replicas: int = Field(1, ge=1)
    client_id: str = "coresponder-hub"
    # local broker only (hub infra up)
    controller_port: int = 9093
    heap: str = "512m"
    version: str = "4.1.1"


class PostgresSettings(BaseModel):
    """Read models, dedup index, seals, cursors, keys. ``dsn`` empty = the local server
    that ``hub infra up`` installs and starts, with a generated password."""

    dsn: str = ""
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "hub"
    database: str = "hub"
    schema_: str = Field("hub", alias="schema")
    pool_max: int = 10

    model_config = {"populate_by_name": True}


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    jwt_issuer: str = "http://127.0.0.1:8080/dev-issuer"
    jwt_audience: str = "coresponder-hub"
    jwks_url: str = ""  # empty: trust the development issuer's key under state_dir/keys


class ProjectionSettings(BaseModel):
    consumer_group: str = "hub-projections"
    connected_window_days: int = Field(30, ge=1)
    repeat_window_days: int = Field(365, ge=1)
    batch_size: int = Field(500, ge=1)
    small_cell_max: int = 10


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
    metrics_port: int = 9464
    kafka: KafkaSettings = KafkaSettings()
    postgres: PostgresSettings = PostgresSettings()
    api: ApiSettings = ApiSettings()
    projections: ProjectionSettings = ProjectionSettings()

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
        return f"{self.kafka.topic_prefix}_core"

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
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the settings file must hold a mapping")
        return data

    def __call__(self) -> dict[str, Any]:
        return self._data()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests build their own ``Settings``."""
    return Settings()
