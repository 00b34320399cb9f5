"""Running the ``hub`` command in a subprocess against a test prefix, as a user does."""

from __future__ import annotations

import os
import subprocess
import sys

from hub.kernel.settings import PROJECT_ROOT, Settings

COMMAND = (sys.executable, "-m", "hub.entry.cli")


def hub_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment pointed at ``settings``' prefix, read-model schema and state
    dir (the test's namespace, never the shared one); ``extra`` (``HUB_…`` names) wins."""
    return {
        **os.environ,
        "HUB_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "HUB_POSTGRES__SCHEMA": settings.postgres.schema_,
        "HUB_STATE_DIR": str(settings.state_dir),
        **extra,
    }


def run_hub(
    settings: Settings, *args: str, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``hub ARGS`` to completion in ``settings``' namespace; ``extra`` as in :func:`hub_env`."""
    return subprocess.run(
        [*COMMAND, *args], cwd=PROJECT_ROOT, env=hub_env(settings, **extra),
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def start_hub(
    settings: Settings, *args: str, stderr: int = subprocess.PIPE, **extra: str
) -> subprocess.Popen[bytes]:
    """Start ``hub ARGS`` (a worker) in ``settings``' namespace; the caller stops it."""
    return subprocess.Popen(
        [*COMMAND, *args], cwd=PROJECT_ROOT, env=hub_env(settings, **extra),
        stdout=subprocess.PIPE, stderr=stderr,
    )
