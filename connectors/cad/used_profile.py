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
  ``profile`` they give. It is a :class:`connectors.core.recorded.MapperConfig` of kind
  ``cad``: its ref ``<name>@sha256:<16 hex>`` hashes the canonical JSON of all three, so a
  ref names one immutable row, and two components (or two runs) with the same profile
  share it.
- A component records its :class:`UsedProfile` in ``<core>.mapper_configs``
  (:class:`connectors.core.recorded.MapperConfigStore`) when it starts, before it can write
  a dead letter, and its dead letters carry the ref in
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

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from connectors.cad.profile import (
    LEGACY_VOCABULARY_KEYS,
    Profile,
    apply_overrides,
    load_profile,
    load_profile_file,
    profile_file,
)
from connectors.core.recorded import MapperConfig, MapperConfigStore, is_config_ref
from hub.kernel.deadletters import ValueFreeError


class UsedProfile(MapperConfig):
    """A component's profile: where its base came from, the county's overrides, and the
    effective profile they give (see the module doc)."""

    KIND: ClassVar[str] = "cad"

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
    def ref_name(self) -> str:
        """The profile's name: a ref reads ``<profile name>@sha256:<16 hex>``."""
        return self.profile.name

    def current(self) -> Profile:
        """The profile to map with now: the origin's current content with the recorded
        overrides, or the recorded effective profile when the origin cannot be found."""
        path = profile_file(self.origin)
        if path is None:
            return self.profile
        stat = path.stat()
        # overrides recorded before vocabularies moved out may carry vocabulary keys: they
        # no longer belong to a profile (the projections apply the vocabulary)
        overrides = {k: v for k, v in self.overrides.items() if k not in LEGACY_VOCABULARY_KEYS}
        return apply_overrides(_profile_version(str(path), stat.st_mtime_ns, stat.st_size), overrides)


@lru_cache(maxsize=64)
def _profile_version(path: str, mtime_ns: int, size: int) -> Profile:
    """The profile file ``path`` as of one modification (a re-drive of many dead letters
    reads it once; an edited file is read again)."""
    return load_profile_file(Path(path))


async def resolve_profile(store: MapperConfigStore, profile: str) -> Profile:
    """The profile to re-drive a dead letter with, from its ``profile`` field: a ref is
    looked up and mapped with :meth:`UsedProfile.current`; a plain name (a dead letter
    written before refs) is loaded by name or path."""
    if not is_config_ref(profile):
        return load_profile(profile)
    used = await store.get(UsedProfile, profile)
    if used is None:
        raise ValueFreeError(f"CAD profile {profile} is not recorded in this deployment")
    return used.current()
