"""Fixtures of the connector integration tests: a runtime on the session's topic prefix and
schema (every migration set applied by :func:`hub.bootstrap.open_runtime`)."""

from __future__ import annotations

import pytest_asyncio

from hub.bootstrap import open_runtime
from hub.kernel.settings import Settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rt(settings: Settings, topics):  # type: ignore[no-untyped-def]
    async with open_runtime(settings) as runtime:
        yield runtime
