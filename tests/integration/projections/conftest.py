"""Fixtures for the projection integration tests: a runtime on a topic prefix of its own
(so that no other test's facts enter these read models), removed afterwards."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from hub.bootstrap import open_runtime
from hub.kernel.namespace import Namespace
from hub.kernel.runtime import Runtime
from tests.conftest import session_settings

sys.path.insert(0, str(Path(__file__).parent))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def proj_rt(services: object) -> AsyncIterator[Runtime]:
    settings = session_settings()
    settings = settings.model_copy(
        update={"projections": settings.projections.model_copy(update={"batch_size": 40})}
    )
    try:
        async with open_runtime(settings) as rt:
            yield rt
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)
