"""Fixtures for the event-log integration tests: runtimes on their own topic prefix.

``log_rt`` is one runtime shared by the module's tests (each test uses its own ids and keys).
``fresh_runtime()`` opens a runtime on a brand-new prefix for tests that tamper with the log
(delete-records, forged records); its topics and schemas are removed afterwards.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest_asyncio

from hub.bootstrap import open_runtime
from hub.kernel.namespace import Namespace
from hub.kernel.runtime import Runtime
from tests.conftest import session_settings


@asynccontextmanager
async def _fresh() -> AsyncIterator[Runtime]:
    settings = session_settings()
    try:
        async with open_runtime(settings) as rt:
            yield rt
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)


@pytest_asyncio.fixture(loop_scope="session")
def fresh_runtime(services: object) -> Callable[[], AbstractAsyncContextManager[Runtime]]:
    return _fresh


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def log_rt(services: object) -> AsyncIterator[Runtime]:
    async with _fresh() as rt:
        yield rt
