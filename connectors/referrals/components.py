"""Registers the referral components for ``hub connectors run --config FILE.yaml``.

Kinds and their configuration (``kind``/``name`` are the registry's own keys)::

    - kind: fhir-delivery
      group_id: hub-delivery-fhir          # optional
      requesters: {team-1: "County co-responder team"}
      retry: {max_attempts: 8, base_delay_s: 0.5, max_delay_s: 60}
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
    - kind: fhir-task-poller
      interval_s: 5
      destinations:
        clinic-a: {base_url: https://ehr.example.org/fhir, auth: {type: bearer, token_file: /run/secrets/t}}
"""

from __future__ import annotations

from typing import Any

from connectors.fhir.delivery import FhirDestination, FhirTransport
from connectors.fhir.poller import FhirTaskPoller, PollerConfig
from connectors.hl7v2.delivery import Hl7Destination, Hl7Transport
from connectors.hl7v2.listener import MllpListener
from connectors.referrals.worker import DeliveryWorker, WorkerConfig, WorkerDeps
from connectors.registry import ConfigError, register_kind
from hub.kernel.net import is_loopback


def _own(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in ("kind", "name")}


def _delivery(runtime: Any, config: dict[str, Any], destination: Any, transport: Any) -> DeliveryWorker:
    """A delivery worker whose ``destinations`` are validated as ``destination`` models and
    sent through a ``transport`` built over them; the rest of the config is its
    :class:`WorkerConfig`."""
    own = _own(config)
    raw = own.pop("destinations", None)
    if not isinstance(raw, dict) or not raw:
        raise ValueError("a delivery component needs a non-empty 'destinations' mapping")
    dests = {k: destination.model_validate(v) for k, v in raw.items()}
    return DeliveryWorker(
        WorkerDeps.from_runtime(runtime), transport(dests), dests, WorkerConfig.model_validate(own)
    )


@register_kind("fhir-delivery")
def fhir_delivery(runtime: Any, config: dict[str, Any]) -> DeliveryWorker:
    return _delivery(runtime, config, FhirDestination, FhirTransport)


@register_kind("hl7-delivery")
def hl7_delivery(runtime: Any, config: dict[str, Any]) -> DeliveryWorker:
    return _delivery(runtime, config, Hl7Destination, Hl7Transport)


@register_kind("mllp-listener")
def mllp_listener(runtime: Any, config: dict[str, Any]) -> MllpListener:
    own = _own(config)
    host = str(own.get("host", "127.0.0.1"))
    allow_from = own.get("allow_from")
    if allow_from is not None and (not isinstance(allow_from, list) or not allow_from):
        raise ConfigError("mllp-listener: allow_from must be a non-empty list of networks")
    if allow_from is None and not is_loopback(host):
        raise ConfigError(
            f"mllp-listener {config.get('name')}: listening on {host} needs allow_from (the EHR "
            "interface engine's networks): MLLP has no authentication of its own"
        )
    return MllpListener(
        WorkerDeps.from_runtime(runtime),
        host=host,
        port=int(own.get("port", 2575)),
        max_frame=int(own.get("max_frame", 1 << 20)),
        allow_from=[str(n) for n in allow_from] if allow_from is not None else None,
    )


@register_kind("fhir-task-poller")
def fhir_task_poller(runtime: Any, config: dict[str, Any]) -> FhirTaskPoller:
    return FhirTaskPoller(WorkerDeps.from_runtime(runtime), PollerConfig.model_validate(_own(config)))
