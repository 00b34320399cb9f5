"""The seeded fault schedule of a fault-suite run (pure: the same seed, the same plan).

A :class:`Fault` happens ``at`` seconds after the workload starts; faults with a
``duration`` (two brokers down, a flapping or hung EHR) are undone after it. The short plan
(``make test``) holds one of each kind and a SIGKILL of every supervised process; the long
plan (``make faults``, the release gate) repeats every kind and SIGKILLs supervised
processes at ``kills`` seeded random points.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal[
    "leader_kill",  # SIGKILL the broker leading the referral topic's partition 0, restarted later
    "two_brokers_down",  # SIGKILL two of three brokers for ``duration`` seconds
    "process_kill",  # SIGKILL the supervised hub process ``target``
    "pg_immediate",  # PostgreSQL immediate shutdown (a crash) and start
    "pg_fast",  # PostgreSQL fast shutdown (clients disconnected) and start
    "append_cut",  # cut the app's PostgreSQL connection at the event-index statement after the ack
    "ehr_flapping",  # the EHR goes up and down for ``duration`` seconds
    "ehr_hung",  # the EHR accepts and never answers for ``duration`` seconds
]

#: how long a broker killed as leader stays down
LEADER_DOWN_S = 4.0


@dataclass(frozen=True, order=True)
class Fault:
    at: float
    kind: FaultKind
    target: str = ""
    duration: float = 0.0

    def describe(self) -> str:
        what = f"{self.kind}{'(' + self.target + ')' if self.target else ''}"
        return f"t+{self.at:5.1f}s {what}" + (f" for {self.duration:.0f}s" if self.duration else "")


def fault_plan(
    seed: int, processes: list[str], *, long: bool, window_s: float, kills: int = 0
) -> list[Fault]:
    """The faults of one run, sorted by time, inside ``[1, window_s]`` seconds.

    Short: one of each kind, one SIGKILL per process in ``processes`` (at least ``kills``).
    Long: every kind ``rounds`` times (one round per 60 s of window, at least 2) and
    ``max(kills, 20)`` SIGKILLs spread over ``processes``.
    """
    if not processes:
        raise ValueError("a fault plan needs at least one supervised process")
    if window_s < 30:
        raise ValueError("the fault window must be at least 30 s (the brokers need time to come back)")
    rng = random.Random(seed)
    rounds = max(2, int(window_s // 60)) if long else 1
    span = window_s / rounds
    faults: list[Fault] = []
    for r in range(rounds):
        base = r * span

        def at(lo: float, hi: float, base: float = base) -> float:
            return round(base + span * rng.uniform(lo, hi), 1)

        faults += [
            Fault(at(0.05, 0.15), "leader_kill", duration=LEADER_DOWN_S),
            Fault(at(0.10, 0.20), "ehr_flapping", duration=round(span * 0.15, 1)),
            Fault(at(0.15, 0.30), "append_cut"),
            Fault(at(0.35, 0.45), "two_brokers_down", duration=round(min(10.0, span * 0.15), 1)),
            Fault(at(0.50, 0.60), "ehr_hung", duration=round(span * 0.1, 1)),
            Fault(at(0.62, 0.70), "pg_immediate"),
            Fault(at(0.75, 0.85), "pg_fast"),
        ]
    count = max(kills, 20) if long else max(kills, len(processes))
    order = [processes[i % len(processes)] for i in range(count)]
    rng.shuffle(order)
    for target in order:
        faults.append(Fault(round(rng.uniform(1.0, window_s * 0.9), 1), "process_kill", target))
    return sorted(faults)
