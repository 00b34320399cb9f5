"""Fixtures of the connector integration tests: a runtime on the session's topic prefix and
schema, with the connector state tables migrated."""

from __future__ import annotations

import pytest_asyncio

from connectors.core.state import migrate_state
from hub.runtime import Runtime
from hub.settings import Settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rt(settings: Settings, topics):  # type: ignore[no-untyped-def]
    async with Runtime.open(settings) as runtime:
        await migrate_state(runtime.pool, settings.core_schema)
        yield runtime
