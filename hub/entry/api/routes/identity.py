"""``/v1/me``: who the bearer token says the caller is, and which families their role reads."""

from typing import Any

from fastapi import APIRouter

from hub.entry.api.deps import Who
from hub.entry.api.roles import allowed_families

router = APIRouter(tags=["auth"])


@router.get("/v1/me")
async def me(p: Who) -> dict[str, Any]:
    return {
        "sub": p.sub,
        "role": p.role.value,
        "program": p.program,
        "families": sorted(f.value for f in allowed_families(p.role)),
    }
