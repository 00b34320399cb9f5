"""A small process supervisor for the fault suite: it runs real ``hub`` processes, restarts
them when they exit (a SIGKILL, a crash, a non-zero exit after a failed batch), and at the
end tells which ones did not stop within a bound after SIGTERM (hung).

A *service* runs until stopped and is restarted whenever it exits; a *job* is a list of
one-shot commands run in order, each repeated until it exits 0 (they are idempotent: a CAD
file ingested twice appends nothing new).

Invariants: at most one process per name at a time; a process killed by :meth:`kill` is
restarted after ``restart_delay_s``; output goes to ``logs/<name>.log`` (never to the
suite's own output, which only prints counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Supervised:
    """One supervised name and what happened to it."""

    name: str
    commands: list[list[str]]
    service: bool
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    kills: int = 0
    exits: list[int] = field(default_factory=list)
    done: bool = False
    step: int = 0
    pause_s: float = 0.0


def describe_job(sup: Supervised, running: bool, tail: list[str]) -> str:
    """One unfinished job in a few lines (pure)."""
    state = "running" if running else "waiting to restart"
    head = (f"job {sup.name}: step {sup.step + 1} of {len(sup.commands)}, {sup.starts} start(s), "
            f"exits {sup.exits[-8:]}, {state}")
    return "\n".join([head, *(f"  | {line}" for line in tail)])


class Supervisor:
    """``add_service`` / ``add_job``, then ``start()``; ``kill(name)`` SIGKILLs what runs;
    ``await stop(grace_s)`` returns the names that had to be SIGKILLed (hung)."""

    def __init__(self, logs: Path, cwd: Path, *, restart_delay_s: float = 0.5) -> None:
        self.logs = logs
        self.cwd = cwd
        self.restart_delay_s = restart_delay_s
        self.procs: dict[str, Supervised] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def add_service(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.procs[name] = Supervised(name, [argv], True, env)

    def add_job(
        self, name: str, commands: list[list[str]], env: dict[str, str], *, pause_s: float = 0.0
    ) -> None:
        """One-shot ``commands`` in order, each until it exits 0, ``pause_s`` apart."""
        self.procs[name] = Supervised(name, commands, False, env, pause_s=pause_s)

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._tasks = [
            asyncio.create_task(self._keep(p), name=f"supervise-{p.name}") for p in self.procs.values()
        ]

    def jobs_done(self) -> bool:
        return all(p.done for p in self.procs.values() if not p.service)

    def unfinished_jobs(self, tail_lines: int = 12) -> list[str]:
        """What each unfinished job is doing, for a suite's error: its step, its starts and
        exit codes, whether a process runs, and the last ``tail_lines`` lines of its log
        (the hub's own log lines: counts, ids and error names, never record contents)."""
        out: list[str] = []
        for p in self.procs.values():
            if p.service or p.done:
                continue
            path = self.logs / f"{p.name}.log"
            tail = path.read_text(errors="replace").splitlines()[-tail_lines:] if path.exists() else []
            out.append(describe_job(p, self.running(p.name), tail))
        return out

    def running(self, name: str) -> bool:
        proc = self.procs[name].process
        return proc is not None and proc.returncode is None

    def kill(self, name: str) -> bool:
        """SIGKILL the process running under ``name`` now (False when none runs)."""
        sup = self.procs[name]
        if sup.process is None or sup.process.returncode is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            sup.process.send_signal(signal.SIGKILL)
            sup.kills += 1
            return True
        return False

    async def _keep(self, sup: Supervised) -> None:
        log = open(self.logs / f"{sup.name}.log", "ab")  # noqa: SIM115 - open for the task's life
        try:
            while not self._stopping and not sup.done:
                argv = sup.commands[sup.step]
                sup.starts += 1
                log.write(f"\n=== start {sup.starts}: {' '.join(argv)}\n".encode())
                log.flush()
                sup.process = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=self.cwd,
                    env=sup.env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
                rc = await sup.process.wait()
                sup.exits.append(rc)
                log.write(f"=== exit {rc}\n".encode())
                log.flush()
                if not sup.service and rc == 0:
                    sup.step += 1
                    sup.done = sup.step >= len(sup.commands)
                    if not sup.done:
                        await asyncio.sleep(sup.pause_s)
                    continue
                if not self._stopping:
                    await asyncio.sleep(self.restart_delay_s)
        finally:
            log.close()

    async def stop(self, grace_s: float) -> list[str]:
        """SIGTERM every running process; those still alive after ``grace_s`` are SIGKILLed
        and named in the result."""
        self._stopping = True
        running = [p for p in self.procs.values() if p.process is not None and p.process.returncode is None]
        for p in running:
            assert p.process is not None
            with contextlib.suppress(ProcessLookupError):
                p.process.send_signal(signal.SIGTERM)
        hung: list[str] = []
        for p in running:
            assert p.process is not None
            try:
                await asyncio.wait_for(p.process.wait(), grace_s)
            except TimeoutError:
                hung.append(p.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.process.pid, signal.SIGKILL)
                await p.process.wait()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        return hung
