"""Runtime fixtures of the integration tests, imported once by ``tests/integration/conftest.py``.

- ``rt``: one runtime per module on the session's topic prefix and schema (every migration set
  applied by :func:`hub.bootstrap.open_runtime`); the connector tests and others that share
  the session's namespace use it.
- ``log_rt``: one runtime per module on a topic prefix of its own (each test uses its own ids
  and keys); removed afterwards.
- ``fresh_runtime()``: opens a runtime on a brand-new prefix for tests that tamper with the log
  (delete-records, forged records); its topics and schemas are removed afterwards.
- ``proj_rt``: one runtime per module on a topic prefix of its own with a projection batch size
  of 40 (so that no other test's facts enter these read models); removed afterwards.

``HUB_TEST_KEEP=1`` keeps the private namespaces for inspection.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest_asyncio

from hub.bootstrap import open_runtime
from hub.kernel.namespace import Namespace
from hub.kernel.runtime import Runtime
from hub.kernel.settings import Settings
from tests.conftest import session_settings


@asynccontextmanager
async def fresh_namespace(settings: Settings | None = None) -> AsyncIterator[Runtime]:
    """A runtime on ``settings`` (default: a brand-new session namespace), torn down after."""
    settings = settings or session_settings()
    try:
        async with open_runtime(settings) as rt:
            yield rt
    finally:
        if os.environ.get("HUB_TEST_KEEP") != "1":
            await Namespace.of(settings).teardown(settings)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rt(settings: Settings, topics: object) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as runtime:
        yield runtime


@pytest_asyncio.fixture(loop_scope="session")
def fresh_runtime(services: object) -> Callable[[], AbstractAsyncContextManager[Runtime]]:
    return fresh_namespace


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def log_rt(services: object) -> AsyncIterator[Runtime]:
    async with fresh_namespace() as runtime:
        yield runtime


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def proj_rt(services: object) -> AsyncIterator[Runtime]:
    settings = session_settings()
    settings = settings.model_copy(
        update={"projections": settings.projections.model_copy(update={"batch_size": 40})}
    )
    async with fresh_namespace(settings) as runtime:
        yield runtime
