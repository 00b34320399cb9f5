"""Running the ``hub`` command in a subprocess against a test prefix."""

from __future__ import annotations

import os
import subprocess
import sys

from hub.kernel.settings import PROJECT_ROOT, Settings


def run_hub(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``hub`` command as a user does, against ``settings``' prefix and read-model schema."""
    env = dict(os.environ)
    env["HUB_KAFKA__TOPIC_PREFIX"] = settings.kafka.topic_prefix
    env["HUB_POSTGRES__SCHEMA"] = settings.postgres.schema_  # the test's namespace, never the shared one
    env["HUB_STATE_DIR"] = str(settings.state_dir)
    return subprocess.run(
        [sys.executable, "-m", "hub.entry.cli", *args], cwd=PROJECT_ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )
