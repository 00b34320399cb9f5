"""``hub simulate ehr``: run the EHR simulator until interrupted (127.0.0.1 only).

Prints one JSON line with the FHIR base URL, token URL, MLLP port and stats URL; on exit
prints the final counters (including ``duplicates``, which a correct hub keeps at 0).

``--accept-after`` / ``--complete-after`` pace the answers in real seconds; the times the
simulated clinic *reports* (Task.lastModified, RRI^I12 MSH-7) are the referral's time plus
seeded clinical delays, capped at the wall clock (see :class:`hub.devtools.ehr_sim.store.Timeline`).
"""

from __future__ import annotations

import asyncio
import contextlib

import typer

from hub.devtools.ehr_sim.simulator import HL7_LAYOUTS, MODES, EhrSimulator, Faults, SimConfig
from hub.devtools.ehr_sim.store import Lifecycle
from hub.kernel.output import emit_json


def _faults(drop: float, error: float, reject: float, timeout: float, timeout_s: float) -> Faults:
    return Faults(
        drop_before=drop / 2,
        drop_after=drop / 2,
        error=error,
        reject=reject,
        timeout=timeout,
        timeout_s=timeout_s,
    )


def ehr(
    fhir_port: int = typer.Option(8801, "--fhir-port", help="FHIR endpoint port (0: any free port)"),
    mllp_port: int = typer.Option(2575, "--mllp-port", help="MLLP endpoint port for REF^I12"),
    answer_to: str = typer.Option("", "--answer-to", help="HOST:PORT of the hub's MLLP listener for RRI^I12"),
    drop: float = typer.Option(0.0, "--drop", help="share of requests whose connection is dropped"),
    error: float = typer.Option(0.0, "--error", help="share answered AE / HTTP 503"),
    reject: float = typer.Option(0.0, "--reject", help="share answered AR / HTTP 422"),
    timeout: float = typer.Option(0.0, "--timeout", help="share left unanswered for --timeout-s"),
    timeout_s: float = typer.Option(5.0, "--timeout-s"),
    decline_rate: float = typer.Option(0.1, "--decline-rate", help="share of referrals the clinic declines"),
    accept_after: float = typer.Option(5.0, "--accept-after", help="seconds until a referral is accepted"),
    complete_after: float = typer.Option(30.0, "--complete-after", help="seconds until it is completed"),
    require_auth: bool = typer.Option(False, "--require-auth", help="require client-credential tokens"),
    seed: int = typer.Option(1, "--seed"),
    mode: str = typer.Option("normal", "--mode", help="normal, flapping or hung (switch later: POST /_mode)"),
    flap_up_s: float = typer.Option(1.0, "--flap-up-s", help="flapping: seconds up in each cycle"),
    flap_down_s: float = typer.Option(1.0, "--flap-down-s", help="flapping: seconds down in each cycle"),
    hl7_layout: str = typer.Option(
        "hub", "--hl7-layout", help="hub, or engine: batches, v2.3 ACKs, Latin-1 RRI^I12, MRN first in PID-3"
    ),
) -> None:
    """Simulate a clinic's EHR: FHIR transactions + Task lifecycle; MLLP REF^I12 -> ACK, then RRI^I12."""
    if mode not in MODES:
        raise typer.BadParameter(f"--mode must be one of {', '.join(MODES)}")
    if hl7_layout not in HL7_LAYOUTS:
        raise typer.BadParameter(f"--hl7-layout must be one of {', '.join(HL7_LAYOUTS)}")
    for name, value in (("--drop", drop), ("--error", error), ("--reject", reject), ("--timeout", timeout)):
        if not 0 <= value <= 1:
            raise typer.BadParameter(f"{name} must be between 0 and 1")
    target = None
    if answer_to:
        host, _, port = answer_to.rpartition(":")
        if not host or not port.isdigit():
            raise typer.BadParameter("--answer-to must be HOST:PORT")
        target = (host, int(port))
    faults = _faults(drop, error, reject, timeout, timeout_s)
    config = SimConfig(
        fhir_port=fhir_port,
        mllp_port=mllp_port,
        answer_to=target,
        fhir_faults=faults,
        mllp_faults=_faults(drop, error, reject, timeout, timeout_s),
        require_auth=require_auth,
        seed=seed,
        mode=mode,  # narrowed to Mode by the check against MODES above
        flap_up_s=flap_up_s,
        flap_down_s=flap_down_s,
        hl7_layout=hl7_layout,  # narrowed to Hl7Layout by the check against HL7_LAYOUTS above
        lifecycle=Lifecycle(
            accept_after_s=accept_after,
            progress_after_s=(accept_after + complete_after) / 2,
            complete_after_s=complete_after,
            decline_rate=decline_rate,
        ),
    )
    asyncio.run(_run(config))


async def _run(config: SimConfig) -> None:
    sim = EhrSimulator(config)
    await sim.start()
    emit_json(
        {
            "fhir": sim.fhir_base_url,
            "token_url": sim.token_url,
            "mllp": f"127.0.0.1:{sim.mllp_port}",
            "stats": f"http://127.0.0.1:{sim.fhir_port}/_stats",
            "mode": f"http://127.0.0.1:{sim.fhir_port}/_mode",
        },
        compact=True,
    )
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    finally:
        await sim.stop()
        emit_json(sim.stats(), compact=True)
