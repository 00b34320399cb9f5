"""Identity resolution from ``PersonLinked`` / ``PersonUnlinked`` facts (pure).

Invariant (order independence): for each unordered pair of pseudonyms the *latest* link
or unlink decides, latest by (time, unlink-before-link tie rank, event id); the clusters are
the connected components of the pairs whose latest word is "linked"; a cluster's
canonical pseudonym is its smallest member. Any permutation or duplication of the same
facts gives the same clusters, and an unlink splits a cluster again.
"""

from __future__ import annotations

from collections.abc import Iterable

from projections.facts import Fact
from schemas.identity import PersonLinked, PersonUnlinked


def link_state(facts: Iterable[Fact]) -> dict[tuple[str, str], bool]:
    """Pair (a, b) with a < b → linked? by the latest fact about that pair."""
    latest: dict[tuple[str, str], tuple[tuple, bool]] = {}
    for f in facts:
        if not isinstance(f.payload, PersonLinked | PersonUnlinked) or f.other is None or f.person is None:
            continue
        if f.person == f.other:
            continue
        pair = (min(f.person, f.other), max(f.person, f.other))
        linked = isinstance(f.payload, PersonLinked)
        rank = (f.at, 0 if linked else 1, f.event_id)
        if pair not in latest or rank > latest[pair][0]:
            latest[pair] = (rank, linked)
    return {pair: linked for pair, (_, linked) in latest.items()}


def clusters(facts: Iterable[Fact], persons: Iterable[str] = ()) -> dict[str, str]:
    """Every pseudonym mentioned (in ``persons`` or in a link fact) → its canonical pseudonym."""
    facts = list(facts)
    parent: dict[str, str] = {p: p for p in persons}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (a, b), linked in link_state(facts).items():
        ra, rb = find(a), find(b)
        if linked and ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            parent[hi] = lo
    return {p: find(p) for p in list(parent)}
