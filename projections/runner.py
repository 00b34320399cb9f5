"""Convenience entry points for tests, the demo and other components: run the projector
in-process until every fact partition is applied."""

from __future__ import annotations

from hub.runtime import Runtime
from hub.settings import Settings
from projections.projector import ProjectorStats, project


async def run_until_caught_up(settings: Settings, *, schema: str | None = None) -> ProjectorStats:
    """Open a runtime on ``settings`` and project until the read models (in ``schema``,
    default ``postgres.schema``) have applied every record in the fact topics."""
    async with Runtime.open(settings) as rt:
        return await project(rt, schema=schema, until_caught_up=True)
