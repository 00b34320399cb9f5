"""The supervisor's account of a job that never finished: the suite's error must say which
step it is on, how it exited so far and what its log last said, since the run's logs are
gone when CI reports the failure."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from hub.devtools.faults.supervisor import Supervised, Supervisor, describe_job


def test_describe_job_names_the_step_the_exits_and_the_log_tail() -> None:
    job = Supervised("ingest", [["a"], ["b"], ["c"]], False, {}, starts=4, exits=[0, -9, 1], step=1)
    text = describe_job(job, False, ["appended 10", "AckTimeout: no acknowledgement within 30s"])
    assert text.splitlines() == [
        "job ingest: step 2 of 3, 4 start(s), exits [0, -9, 1], waiting to restart",
        "  | appended 10",
        "  | AckTimeout: no acknowledgement within 30s",
    ]


def test_unfinished_jobs_report_a_stuck_step_with_its_log(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        sup = Supervisor(tmp_path, tmp_path, restart_delay_s=0.01)
        ok = [sys.executable, "-c", "print('first file done')"]
        stuck = [sys.executable, "-c", "import time; print('second file', flush=True); time.sleep(60)"]
        sup.add_job("ingest", [ok, stuck], {})
        sup.add_service("projector", [sys.executable, "-c", "import time; time.sleep(60)"], {})
        sup.start()
        log = tmp_path / "ingest.log"
        while "second file" not in (log.read_text().splitlines() if log.exists() else []):
            await asyncio.sleep(0.05)  # the line itself, not the command echoed before it
        report = sup.unfinished_jobs()
        await sup.stop(5)
        return report

    (report,) = asyncio.run(scenario())  # services are never "unfinished jobs"
    lines = report.splitlines()
    assert lines[0] == "job ingest: step 2 of 2, 2 start(s), exits [0], running"
    assert "  | first file done" in lines
    assert lines[-1] == "  | second file"
