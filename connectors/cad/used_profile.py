"""The CAD profile a component actually maps with, recorded so that a dead letter can be
re-driven with it (``hub deadletters retry``).

A component's profile is rarely a bundled profile as shipped: a county adds ``overrides``
(its own ``agency`` id, extra disposition codes, time formats), or names its own YAML file
by path. A dead letter that carried only the profile's *name* was re-driven with the
bundled profile of that name — without the overrides (a record re-driven into
``SFPD:…`` instead of the county's ``COUNTY:…`` incident) — and a YAML-path profile was not
found at all.

Design:

- :class:`UsedProfile` is what a component maps with: its ``origin`` (a bundled name, or
  the *absolute* path of its YAML file), the county's ``overrides``, and the effective
  ``profile`` they give. It is content-addressed: its :attr:`~UsedProfile.ref`
  ``<name>@sha256:<16 hex>`` hashes the canonical JSON of all three, so a ref names one
  immutable row, and two components (or two runs) with the same profile share it.
- A component records its :class:`UsedProfile` in ``<core>.cad_profiles``
  (:class:`ProfileStore`, migration ``connectors/migrations/0003_cad_profiles.sql``) when it
  starts, before it can write a dead letter, and its dead letters carry the ref in
  :attr:`schemas.deadletter.DeadLetter.profile`.
- Re-driving resolves the ref (:func:`resolve_profile`) and maps with
  :meth:`UsedProfile.current`: the origin as it is *now* with the recorded overrides. A fix
  of the base profile (a corrected bundled profile in a hub release, or the county's edited
  YAML file) therefore applies — that is what a re-drive after a mapping fix is for — and
  the county's overrides always do. When the origin is gone (the YAML file is not mounted
  where the retry runs, a bundled profile was removed), the recorded effective profile —
  exactly the one that rejected the record — is used instead.
- A fix made in a component's ``overrides`` applies to the records it reads after a
  restart; dead letters recorded earlier keep the overrides they were rejected with.
- Dead letters written before refs existed carry a plain profile name and are still
  re-driven with the bundled (or path) profile of that name.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from connectors.cad.profile import Profile, apply_overrides, load_profile, load_profile_file, profile_file
from hub.kernel.deadletters import ValueFreeError

_REF = re.compile(r"^(?P<name>[^@\s]+)@sha256:(?P<digest>[0-9a-f]{16,64})$")


def is_profile_ref(text: str) -> bool:
    """True for a reference ``<name>@sha256:<hex>`` (False for a plain profile name)."""
    return _REF.match(text) is not None


def canonical_json(value: Any) -> str:
    """Sorted keys, no white space, UTF-8 as is: equal values give equal text (pure)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class UsedProfile(BaseModel):
    """A component's profile: where its base came from, the county's overrides, and the
    effective profile they give (see the module doc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: str  # a bundled profile name, or the absolute path of a profile YAML file
    overrides: dict[str, Any] = Field(default_factory=dict)
    profile: Profile

    @classmethod
    def of(cls, name_or_path: str, overrides: Mapping[str, Any] | None = None) -> UsedProfile:
        """The profile ``name_or_path`` (bundled name or YAML path) with ``overrides``.
        Raises ``ValueError`` for an unknown profile or overrides that do not validate."""
        base = load_profile(name_or_path)
        path = Path(name_or_path)
        origin = str(path.resolve()) if path.suffix in (".yaml", ".yml") and path.is_file() else name_or_path
        return cls(origin=origin, overrides=dict(overrides or {}), profile=apply_overrides(base, overrides))

    @property
    def ref(self) -> str:
        """``<profile name>@sha256:<16 hex>`` over the canonical JSON of this record."""
        digest = hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()
        return f"{self.profile.name}@sha256:{digest[:16]}"

    def current(self) -> Profile:
        """The profile to map with now: the origin's current content with the recorded
        overrides, or the recorded effective profile when the origin cannot be found."""
        path = profile_file(self.origin)
        if path is None:
            return self.profile
        stat = path.stat()
        return apply_overrides(_profile_version(str(path), stat.st_mtime_ns, stat.st_size), self.overrides)


@lru_cache(maxsize=64)
def _profile_version(path: str, mtime_ns: int, size: int) -> Profile:
    """The profile file ``path`` as of one modification (a re-drive of many dead letters
    reads it once; an edited file is read again)."""
    return load_profile_file(Path(path))


class ProfileStore:
    """``<core>.cad_profiles``: every :class:`UsedProfile` a component has mapped with, by ref."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    async def record(self, used: UsedProfile) -> str:
        """Store ``used`` once (a ref is immutable) and return its ref."""
        ref = used.ref
        await self.pool.execute(
            f"INSERT INTO {self.schema}.cad_profiles (ref, name, origin, overrides, profile) "
            "VALUES ($1, $2, $3, $4::jsonb, $5::jsonb) ON CONFLICT (ref) DO NOTHING",
            ref, used.profile.name, used.origin, canonical_json(used.overrides),
            canonical_json(used.profile.model_dump(mode="json")),
        )
        return ref

    async def get(self, ref: str) -> UsedProfile | None:
        row = await self.pool.fetchrow(
            f"SELECT origin, overrides, profile FROM {self.schema}.cad_profiles WHERE ref = $1", ref
        )
        if row is None:
            return None
        return UsedProfile(
            origin=row["origin"],
            overrides=json.loads(row["overrides"]),
            profile=Profile.model_validate_json(row["profile"]),
        )


async def resolve_profile(store: ProfileStore, profile: str) -> Profile:
    """The profile to re-drive a dead letter with, from its ``profile`` field: a ref is
    looked up and mapped with :meth:`UsedProfile.current`; a plain name (a dead letter
    written before refs) is loaded by name or path."""
    if not is_profile_ref(profile):
        return load_profile(profile)
    used = await store.get(profile)
    if used is None:
        raise ValueFreeError(f"CAD profile {profile} is not recorded in this deployment")
    return used.current()
