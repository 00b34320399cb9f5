"""The referral component kinds of ``hub connectors run --config FILE.yaml``: one typed
config model and one factory per kind, listed in :data:`connectors.registry.KINDS`.

Kinds and their configuration (``kind`` and ``name`` as for every component)::

    - kind: fhir-delivery
      group_id: hub-delivery-fhir          # optional
      requesters: {team-1: "County co-responder team"}
      retry: {max_attempts: 8, base_delay_s: 0.5, max_delay_s: 60,
              unknown_budget_s: 600}       # outcome unknown: resend this long, then ask the EHR
      max_in_flight: 4                     # referrals of one destination in flight at once
      clock: wall                          # or relative: outcomes at requested.at + elapsed
      destinations:
        clinic-a:
          display: Clinic A
          base_url: https://ehr.example.org/fhir
          auth: {type: client_credentials, token_url: https://ehr.example.org/token,
                 client_id: cohub, private_key_file: /run/secrets/cohub.pem, key_id: k1}
          share_demographics: [gender, birth_year]
    - kind: hl7-delivery
      destinations:
        clinic-b: {display: Clinic B, host: 10.0.0.5, port: 2575, read_timeout_s: 30}
    - kind: mllp-listener
      host: 0.0.0.0
      port: 2576
      allow_from: [10.0.0.0/24]            # required off loopback: MLLP has no authentication
      tls: {certfile: /run/secrets/mllp.crt, keyfile: /run/secrets/mllp.key}  # or tls_terminated_in_front
      limits: {max_concurrent: 4, rate_per_second: 200, dead_letter_bytes_per_hour: 8388608}
    - kind: fhir-task-poller
      interval_s: 5
      read: history                        # Task/_history since the cursor; or current
      destinations:
        clinic-a: {base_url: https://ehr.example.org/fhir, auth: {type: bearer, token_file: /run/secrets/t}}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from connectors.core.component import ComponentConfig
from connectors.core.limits import SourceLimits
from connectors.core.tls import TlsServerConfig, server_context
from connectors.fhir.client import FhirEndpoint
from connectors.fhir.delivery import FhirDestination, FhirTransport
from connectors.fhir.poller import FhirTaskPoller, PollerConfig
from connectors.hl7v2.delivery import Hl7Destination, Hl7Transport
from connectors.hl7v2.listener import MLLP_LIMITS, MllpListener
from connectors.referrals.worker import DeliveryWorker, WorkerConfig, WorkerDeps
from hub.kernel.net import is_loopback

# --------------------------------------------------------------------------- config models


class FhirDeliveryConfig(ComponentConfig, WorkerConfig):
    """The FHIR delivery worker: :class:`WorkerConfig` plus its ``destinations``."""

    kind: Literal["fhir-delivery"] = "fhir-delivery"
    destinations: dict[str, FhirDestination] = Field(min_length=1)


class Hl7DeliveryConfig(ComponentConfig, WorkerConfig):
    """The HL7 v2 delivery worker: :class:`WorkerConfig` plus its ``destinations``."""

    kind: Literal["hl7-delivery"] = "hl7-delivery"
    destinations: dict[str, Hl7Destination] = Field(min_length=1)


class MllpListenerConfig(ComponentConfig, TlsServerConfig):
    """Where the EHR sends its RRI^I12 answers. MLLP has no authentication of its own, so a
    listener off loopback needs ``allow_from`` (the interface engine's networks). ``tls``
    (or ``tls_terminated_in_front``, required outside development: :mod:`connectors.core.tls`)
    and the per-source ``limits`` (connections, frames, dead-letter bytes) as for every
    receiver."""

    kind: Literal["mllp-listener"] = "mllp-listener"
    host: str = "127.0.0.1"
    port: int = Field(2575, ge=0, le=65535)
    max_frame: int = Field(1 << 20, gt=0)
    allow_from: list[str] | None = None
    limits: SourceLimits = Field(default_factory=lambda: MLLP_LIMITS.model_copy())

    @model_validator(mode="after")
    def _allow_from_is_networks(self) -> MllpListenerConfig:
        if self.allow_from is None:
            if not is_loopback(self.host):
                raise ValueError(
                    f"allow_from: listening on {self.host} needs allow_from (the EHR interface "
                    "engine's networks): MLLP has no authentication of its own"
                )
            return self
        if not self.allow_from:
            raise ValueError("allow_from: must be a non-empty list of networks")
        for network in self.allow_from:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"allow_from: {network!r} is not an IP network") from None
        return self


class FhirTaskPollerConfig(ComponentConfig, PollerConfig):
    """The FHIR Task poller: :class:`PollerConfig` (its ``destinations``, ``interval_s``)."""

    kind: Literal["fhir-task-poller"] = "fhir-task-poller"


# --------------------------------------------------------------------------- factories


def _delivery(runtime: Any, config: FhirDeliveryConfig | Hl7DeliveryConfig, transport: Any) -> DeliveryWorker:
    """A delivery worker sending through a ``transport`` built over the config's
    destinations; the config is its :class:`WorkerConfig`."""
    dests = dict(config.destinations)
    return DeliveryWorker(WorkerDeps.from_runtime(runtime), transport(dests), dests, config)


def _https_endpoints(runtime: Any, destinations: Mapping[str, FhirEndpoint]) -> None:
    """FHIR and OAuth endpoints are https-only outside development (ConfigError)."""
    for name, dest in destinations.items():
        dest.check_transport(name, runtime.settings.is_development)


def fhir_delivery(runtime: Any, config: FhirDeliveryConfig) -> DeliveryWorker:
    _https_endpoints(runtime, config.destinations)
    return _delivery(runtime, config, FhirTransport)


def hl7_delivery(runtime: Any, config: Hl7DeliveryConfig) -> DeliveryWorker:
    return _delivery(runtime, config, Hl7Transport)


def mllp_listener(runtime: Any, config: MllpListenerConfig) -> MllpListener:
    ssl_context = server_context(
        config, name=f"{config.name!r} (mllp-listener)", development=runtime.settings.is_development
    )
    return MllpListener(
        WorkerDeps.from_runtime(runtime),
        host=config.host,
        port=config.port,
        max_frame=config.max_frame,
        allow_from=config.allow_from,
        ssl_context=ssl_context,
        limits=config.limits,
    )


def fhir_task_poller(runtime: Any, config: FhirTaskPollerConfig) -> FhirTaskPoller:
    _https_endpoints(runtime, config.destinations)
    return FhirTaskPoller(WorkerDeps.from_runtime(runtime), config)
