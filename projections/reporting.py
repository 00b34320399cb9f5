"""The outcome report's tables from read-model rows (pure): grouping, the small-cell rule,
statistics and the report document. :mod:`projections.queries` fetches the rows and calls
these; tests and the demo's pure check call them on rows from :func:`projections.fold.derive`,
so both paths publish exactly the same cells.

Every count published to analysts goes through the small-cell rule
(:mod:`projections.suppression`): a suppressed cell is ``{"value": null, "suppressed":
true}``; shares are null when their numerator or denominator is suppressed.

Measured or marked: a metric the sources cannot express (a vocabulary's ``not_measured``,
for the vocabularies that classified the calls in scope) is published as
``{"value": null, "measured": false, "reason": ...}`` — never as 0. Its values take part in
suppression as hidden cells, so marking it does not reveal a neighbour.

Areas follow the grain the feed publishes: a call is counted in its precinct when the
feed gives one, else in its district, else in area ``unknown`` (group kind ``area``); the
row's ``group_kind`` says which. These groups are disjoint and cover every call, so they
are suppressed as one partition of the total (an analyst can add them up).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from hub.kernel.custom_fields import EMPTY, Definitions
from projections import areas, custom_metrics
from projections.counts import UNKNOWN_AREA, incident_metrics
from projections.outcomes import PUBLISHED_METRICS, Partition, suppressed_table
from projections.referrals import FUNNEL_STAGES
from projections.suppression import Equation, derivable, suppress
from schemas.demographics import NOT_REPORTED, VOCABULARIES
from schemas.encounter import USE_OF_FORCE

#: how report rows are grouped (``--by`` / ``?by=``): by month, by area, by the
#: intervention the call got (:data:`INTERVENTION_GRAINS`) or by the demographics of the
#: person on the call (:data:`DEMOGRAPHIC_GRAINS`)
Grain = Literal[
    "month", "area", "response", "program", "mode", "team", "referral_type",
    "race", "ethnicity", "gender", "age_band", "precinct", "district", "sector", "beat",
]
GRAINS: tuple[Grain, ...] = get_args(Grain)
#: intervention groupings: ``response`` is ``co_responder`` / ``police_only``; the others
#: are the incident row's column of that name, ``none`` when the call had none
INTERVENTION_GRAINS = ("response", "program", "mode", "team", "referral_type")
NO_INTERVENTION = "none"
#: demographic groupings: the columns :func:`projections.demographics.with_demographics`
#: adds to incident rows (``not_reported`` when unknown)
DEMOGRAPHIC_GRAINS = tuple(VOCABULARIES)
#: one area grain for every call: its precinct / district / sector / beat (``unknown`` when the
#: feed has none); ``area`` is the finest coarse grain each call has (precinct, else district)
AREA_GRAIN_KINDS = ("precinct", "district", "sector", "beat")
#: the groupings whose rows carry calls for service and rates per 1,000 (area groupings)
RATE_GRAINS = ("area", *AREA_GRAIN_KINDS)


def parse_grain(value: str | None) -> Grain | None:
    """``value`` as a :data:`Grain` (``None`` stays ``None``); raises ValueError otherwise."""
    if value is None:
        return None
    if value not in GRAINS:
        raise ValueError(f"by must be one of {', '.join(GRAINS)}")
    return value


REPORT_VERSION = 2  # 2: cells say whether they are measured; the vocabulary is stated
# the grains an area can be published at, finest first; "area" = none published
AREA_GRAINS = ("precinct", "district")
NO_AREA_KIND = "area"
HEADLINES = {
    "no_enforcement": "outcome.no_enforcement",
    "voluntary_transport": "outcome.voluntary_transport",
    "enforcement": "outcome.arrest_or_citation",
    "involuntary_hold": "outcome.involuntary_hold",
    "emergency_department": "outcome.emergency_department",
    "referral_made": "referral_made",
    "connected_to_services": "connected_to_services",
}
#: The headline metrics as a reader names them (``hub report``, the demo's table).
HEADLINE_LABELS = {
    "calls": "behavioral-health calls",
    "no_enforcement": "no enforcement action",
    "voluntary_transport": "voluntary mental-health transport",
    "enforcement": "enforcement action (arrest or citation)",
    "involuntary_hold": "involuntary hold",
    "emergency_department": "emergency department",
    "referral_made": "referral made",
    "connected_to_services": "connected to services",
    "repeat_three_plus_enrolled": "people with 3+ contacts enrolled in services",
}
STAGE_SECONDS = (
    "seconds_requested_to_delivered",
    "seconds_delivered_to_accepted",
    "seconds_accepted_to_completed",
)


def cell(value: int | None, denominator: int | None = None) -> dict[str, Any]:
    """A published cell; ``value`` None = suppressed."""
    share = round(value / denominator, 4) if value is not None and denominator else None
    return {"value": value, "share": share, "suppressed": value is None, "measured": True}


def not_measured_cell(reason: str) -> dict[str, Any]:
    """A metric the sources cannot express: no value (not 0), and why."""
    return {"value": None, "share": None, "suppressed": False, "measured": False, "reason": reason}


def not_measured_stat(reason: str) -> dict[str, Any]:
    return {"n": None, "median": None, "p90": None, "suppressed": False, "measured": False, "reason": reason}


def unmeasured_metrics(labels: Iterable[str | None], vocabularies: Iterable[Mapping[str, Any]]
                       ) -> dict[str, str]:
    """metric → reason, for the metrics one of the vocabularies ``labels`` names (those that
    classified the calls in scope) cannot measure. ``vocabularies`` are the content records
    a read-model schema keeps (:func:`projections.store.vocabulary_meta`)."""
    used = set(labels)
    reasons: dict[str, list[str]] = defaultdict(list)
    for v in vocabularies:
        if v["label"] in used:
            for metric, reason in sorted(v.get("not_measured", {}).items()):
                if reason not in reasons[metric]:
                    reasons[metric].append(reason)
    return {m: "; ".join(rs) for m, rs in sorted(reasons.items())}


def footnotes(labels: Iterable[str | None], vocabularies: Iterable[Mapping[str, Any]]) -> list[str]:
    """The footnotes of the vocabularies that classified the calls in scope (sorted, once)."""
    used = set(labels)
    return sorted({
        note for v in vocabularies if v["label"] in used for note in v.get("footnotes", {}).values()
    })


def area_group(row: Mapping[str, Any]) -> tuple[str, str]:
    """(grain, area) of an incident row: its precinct, else its district, else
    (``area``, ``unknown``)."""
    for grain in AREA_GRAINS:
        if row.get(grain):
            return (grain, str(row[grain]))
    return (NO_AREA_KIND, UNKNOWN_AREA)


def group_of(row: Mapping[str, Any], by: str | None, tz: str) -> tuple[str, str]:
    if by == "month":
        return ("month", row["received_at"].astimezone(ZoneInfo(tz)).strftime("%Y-%m"))
    if by == "area":
        return area_group(row)
    if by == "response":
        return ("response", "co_responder" if row.get("co_responder") else "police_only")
    if by in INTERVENTION_GRAINS:
        return (by, str(row.get(by) or NO_INTERVENTION))
    if by in DEMOGRAPHIC_GRAINS:
        return (by, str(row.get(by) or NOT_REPORTED))
    if by in AREA_GRAIN_KINDS:
        return (by, str(row.get(by) or UNKNOWN_AREA))
    return ("all", "all")


def hidden_cells(table: Mapping[str, Any], metric: str = "calls") -> set[tuple[tuple[str, str], str]]:
    """The ``((group_kind, group), metric)`` cells an :func:`outcome_table` withholds in its rows."""
    return {
        ((r["group_kind"], r["group"]), metric) for r in table["rows"] if r["metrics"][metric]["suppressed"]
    }


def partitions_of(by: str | None) -> tuple[Partition, ...]:
    """The partitions of the total a grouping produces (see :func:`suppressed_table`)."""
    if by == "month":
        return ("month",)
    if by == "area":
        return ((*AREA_GRAINS, NO_AREA_KIND),)
    if by in INTERVENTION_GRAINS or by in DEMOGRAPHIC_GRAINS or by in AREA_GRAIN_KINDS:
        return (by,)
    return ()


def calls_for_service(
    bh_rows: Iterable[Mapping[str, Any]], other_calls: Iterable[Mapping[str, Any]], by: str | None, tz: str
) -> dict[tuple[str, str], int]:
    """Calls for service of every kind per group of ``by`` (an area grouping) and in total:
    the behavioral-health incident rows plus ``other_calls`` (rows of area columns with a
    count ``n``, :meth:`projections.queries.ReadModelReader.other_calls`)."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for rows, weight in ((bh_rows, None), (other_calls, "n")):
        for row in rows:
            n = int(row[weight]) if weight else 1
            out[("all", "all")] += n
            if by is not None:
                out[group_of(row, by, tz)] += n
    return dict(out)


def outcome_table(
    rows: Iterable[Mapping[str, Any]], *, by: str | None, tz: str, small_cell_max: int,
    unmeasured: Mapping[str, str] | None = None,
    custom: Definitions = EMPTY,
    service_calls: Mapping[tuple[str, str], int] | None = None,
    population: Mapping[tuple[str, str], int] | None = None,
) -> dict[str, Any]:
    """Outcome counts of the given (behavioral-health) incident rows, in total and per
    month or per area, suppressed as one table. ``{"total": {metric: cell}, "rows":
    [{"group_kind", "group", "metrics": {metric: cell}}]}``; shares are of ``calls`` in
    the same group. ``group_kind`` is ``month``, or for areas the grain of the row
    (``precinct`` / ``district`` / ``area`` for unknown). ``unmeasured`` (metric → reason)
    marks metrics the sources cannot express. ``custom``: the county's definitions — each
    metric adds ``custom.<id>`` (share of its denominator) and ``custom.<id>.denominator``
    to every group, suppressed in the same table (:mod:`projections.custom_metrics`).

    ``service_calls`` (group → calls for service of every kind, :func:`calls_for_service`):
    adds each group's ``all_calls`` cell — without changing any other cell
    (:func:`projections.areas.with_calls_for_service`) — and gives every cell its
    ``rate_per_1000_calls`` and, with ``population`` ((grain, area) → residents),
    ``rate_per_1000_residents`` (null when the count or its denominator is withheld)."""
    rows = list(rows)
    unmeasured = dict(unmeasured or {})
    unmeasured.update(custom_metrics.unmeasured_custom(custom, unmeasured))
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        groups = {("all", "all"), group_of(row, by, tz)}
        for g in groups:
            for m in incident_metrics(dict(row)):
                counts[(*g, m)] += 1
    partitions = partitions_of(by)
    extension = custom_metrics.extension(
        custom, rows, lambda r: {("all", "all"), group_of(r, by, tz)},
        [_partition_kinds(p) for p in partitions], small_cell_max,
    )
    suppressed = suppressed_table(counts, partitions, small_cell_max, tuple(unmeasured), extension=extension)
    if service_calls is not None:
        suppressed = areas.with_calls_for_service(
            suppressed, service_calls, [_partition_kinds(p) for p in partitions], small_cell_max)
    table = suppressed.shown()
    rated = areas.rates(table, population) if service_calls is not None else {}
    groups_out: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for (g, m), v in table.items():
        if m in unmeasured:
            groups_out[g][m] = not_measured_cell(unmeasured[m])
        else:
            base = custom_metrics.share_base(m)
            groups_out[g][m] = cell(v, table.get((g, base)) if m not in ("calls", areas.ALL_CALLS) else None)
            if service_calls is not None:
                per_calls, per_residents = rated[(g, m)]
                groups_out[g][m] |= {"rate_per_1000_calls": per_calls,
                                     "rate_per_1000_residents": per_residents}
    total = groups_out.pop(("all", "all"))
    return {
        "total": total,
        "rows": [
            {"group_kind": k, "group": name, "metrics": ms} for (k, name), ms in sorted(groups_out.items())
        ],
    }


Known = Mapping[str, Iterable[int]]  # every value readers knew of each cell (releases)


def guarded_suppress(values: Mapping[str, int], eqs: list[Equation], hidden: set[str], max_small: int,
                     known_before: Known | None = None) -> tuple[set[str], dict[str, int]]:
    """(cells to withhold, what a reader knows afterwards: every shown cell and every
    withheld one the equations determine). ``known_before``: every value readers knew of each
    cell from earlier releases; a cell 1 to ``max_small`` away from one of them is protected
    (:mod:`projections.releases`)."""
    protect = {c for c, olds in (known_before or {}).items()
               if any(1 <= abs(values.get(c, 0) - v) <= max_small for v in olds)}
    hide = suppress(values, eqs, hidden, max_small, protect)
    determined = derivable(values, eqs, hide)
    return {str(c) for c in hide}, {c: v for c, v in values.items() if c not in hide or c in determined}


#: use of force by police as the co-responders' forms record it (``none`` excluded: it is
#: ``no_force``); :func:`use_of_force_table`
FORCE_TYPES: tuple[str, ...] = tuple(t for t in USE_OF_FORCE if t != "none")
FORCE_METRICS = ("calls", "force_recorded", "no_force", "force_used", *(f"force.{t}" for t in FORCE_TYPES))
_NOT_RECORDED = "not.force_recorded"


def group_cell_key(c: tuple[tuple[str, str], str]) -> str:
    """``metric@kind:group`` — a grouped table's cell as a release's ``known`` names it (no
    ``|``: that names the area table's cells, :func:`projections.releases.cell_key`)."""
    (kind, group), metric = c
    return f"{metric}@{kind}:{group}"


def grouped_suppress(
    values: Mapping[tuple[tuple[str, str], str], int],
    eqs: list[Equation],
    hidden: set[tuple[tuple[str, str], str]],
    max_small: int,
    known_before: Known | None = None,
) -> tuple[set[tuple[tuple[str, str], str]], dict[str, int]]:
    """:func:`guarded_suppress` of a table whose cells are ``((kind, group), metric)``:
    (cells to withhold, what a reader knows afterwards keyed by :func:`group_cell_key`)."""
    key: dict[Any, str] = {c: group_cell_key(c) for c in (*values, *hidden)}
    by_key = {k: c for c, k in key.items()}
    keyed = {key[c]: v for c, v in values.items()}
    keyed_eqs = [Equation(key[e.total], tuple(key[p] for p in e.parts)) for e in eqs]
    hide, known = guarded_suppress(keyed, keyed_eqs, {key[c] for c in hidden}, max_small, known_before)
    return {by_key[k] for k in hide}, known


def use_of_force_table(
    rows: Iterable[Mapping[str, Any]], *, by: str | None, tz: str, small_cell_max: int
) -> dict[str, Any]:
    """:func:`use_of_force_release` without earlier releases."""
    return use_of_force_release(rows, by=by, tz=tz, small_cell_max=small_cell_max)[0]


def use_of_force_release(
    rows: Iterable[Mapping[str, Any]], *, by: str | None, tz: str, small_cell_max: int,
    known_before: Known | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Use of force in behavioral-health calls: in total, per on-scene/CAD outcome (the
    incident's primary outcome, ``none`` without one) and — with ``by`` — per month or
    area, suppressed as ONE table (the total is shared by both groupings, so a cell hidden
    in one cannot be read off the other). Per group: ``calls``; ``force_recorded`` (calls
    whose encounter form recorded use of force; share of calls); ``no_force``,
    ``force_used`` and ``force.<type>`` (shares of ``force_recorded``). Equations an
    analyst knows: calls = recorded + not recorded (hidden); recorded = no force + force
    used; force used = the sum of its types; each grouping's groups add up to the total.
    ``known_before`` (releases): every value readers knew of each cell; returns the table
    and what a reader knows of it afterwards (:func:`grouped_suppress`)."""
    counts: Counter[tuple[tuple[str, str], str]] = Counter()
    groups: set[tuple[str, str]] = {("all", "all")}
    for row in rows:
        force = row.get("use_of_force")
        mine = {("all", "all"), ("outcome", str(row.get("outcome") or "none"))}
        if by is not None:
            mine.add(group_of(row, by, tz))
        groups |= mine
        for g in mine:
            counts[(g, "calls")] += 1
            if force is not None:
                counts[(g, "force_recorded")] += 1
                counts[(g, "no_force" if force == "none" else "force_used")] += 1
                if force != "none":
                    counts[(g, f"force.{force}")] += 1
    metrics = (*FORCE_METRICS, _NOT_RECORDED)
    values = {(g, m): counts[(g, m)] for g in groups for m in FORCE_METRICS}
    eqs: list[Equation] = []
    for g in groups:
        values[(g, _NOT_RECORDED)] = values[(g, "calls")] - values[(g, "force_recorded")]
        eqs.append(Equation((g, "calls"), ((g, "force_recorded"), (g, _NOT_RECORDED))))
        eqs.append(Equation((g, "force_recorded"), ((g, "no_force"), (g, "force_used"))))
        eqs.append(Equation((g, "force_used"), tuple((g, f"force.{t}") for t in FORCE_TYPES)))
    partitions: list[Partition] = ["outcome", *partitions_of(by)]
    for partition in partitions:
        kinds = _partition_kinds(partition)
        members = sorted(g for g in groups if g[0] in kinds)
        for m in metrics:
            eqs.append(Equation((("all", "all"), m), tuple((g, m) for g in members)))
    hide, known = grouped_suppress(values, eqs, {(g, _NOT_RECORDED) for g in groups}, small_cell_max,
                                   known_before)

    def out(g: tuple[str, str]) -> dict[str, Any]:
        def v(m: str) -> int | None:
            return None if (g, m) in hide else values[(g, m)]

        cells = {"calls": cell(v("calls")), "force_recorded": cell(v("force_recorded"), v("calls"))}
        cells.update({m: cell(v(m), v("force_recorded")) for m in FORCE_METRICS[2:]})
        return cells

    def listed(kinds: tuple[str, ...]) -> list[dict[str, Any]]:
        return [
            {"group_kind": k, "group": n, "metrics": out((k, n))} for k, n in sorted(groups) if k in kinds
        ]

    return {
        "total": out(("all", "all")),
        "by_outcome": listed(("outcome",)),
        "rows": listed(_partition_kinds(partitions_of(by)[0])) if by is not None else [],
    }, known


def _partition_kinds(partition: Partition) -> tuple[str, ...]:
    return (partition,) if isinstance(partition, str) else tuple(partition)


def repeat_release(people: Iterable[tuple[int, bool]], small_cell_max: int,
                   known_before: Known | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """:func:`repeat_table` and what a reader knows of it (for the next release)."""
    rows = [(n, e) for n, e in people if n >= 1]
    people_n = len(rows)
    two = sum(1 for n, _ in rows if n >= 2)
    three = sum(1 for n, _ in rows if n >= 3)
    enrolled = sum(1 for n, e in rows if n >= 3 and e)
    values, eqs, hidden = nested_values(
        {"people": people_n, "two_plus": two, "three_plus": three, "three_plus_enrolled": enrolled},
        ("people", "two_plus", "three_plus", "three_plus_enrolled"), "repeat encounters",
    )
    hide, known = guarded_suppress(values, eqs, hidden, small_cell_max, known_before)

    def out(name: str, denominator: str | None = None) -> dict[str, Any]:
        v = None if name in hide else values[name]
        d = None if denominator is None or denominator in hide else values[denominator]
        return cell(v, d)

    doc = {
        "people": out("people"),
        "two_plus": out("two_plus", "people"),
        "three_plus": out("three_plus", "people"),
        "three_plus_enrolled": out("three_plus_enrolled", "three_plus"),
    }
    return doc, known


def repeat_table(people: Iterable[tuple[int, bool]], small_cell_max: int) -> dict[str, Any]:
    """People with 1+, 2+ and 3+ contacts and how many of those with 3+ were enrolled in
    behavioral-health services, from (contacts, enrolled) per person (people with 0 contacts
    ignored). Suppressed with hidden complements of every pair of these nested counts
    (:func:`nested_values`); the enrolled share is of people with 3+ contacts."""
    return repeat_release(people, small_cell_max)[0]


def stat(values: list[float], small_cell_max: int) -> dict[str, Any]:
    """Median and 90th percentile, only over more than ``small_cell_max`` values."""
    if len(values) <= small_cell_max:
        return {"n": None if values else 0, "median": None, "p90": None, "suppressed": bool(values)}
    p90 = statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]
    return {"n": len(values), "median": statistics.median(values), "p90": p90, "suppressed": False}


def response_times(rows: Sequence[Mapping[str, Any]], small_cell_max: int,
                   unmeasured: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Queued → arrived, time on scene (arrived → last real clear time), and officer time
    returned (seconds) over incident rows; statistics over ``small_cell_max`` or fewer calls
    are suppressed; a time the sources cannot express (``unmeasured``) is marked."""
    unmeasured = unmeasured or {}

    def col(name: str) -> list[float]:
        return [r[name] for r in rows if r[name] is not None]

    returned = col("officer_time_returned_seconds")
    total_returned = sum(returned) if len(returned) > small_cell_max else None
    out = {
        "response_seconds": stat(col("response_seconds"), small_cell_max),
        "time_on_scene_seconds": stat(col("time_on_scene_seconds"), small_cell_max),
        "officer_time_returned_seconds": {**stat(returned, small_cell_max), "total": total_returned},
    }
    for name in out:
        if name in unmeasured:
            out[name] = not_measured_stat(unmeasured[name]) | (
                {"total": None} if name == "officer_time_returned_seconds" else {})
    return out


def stage_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many referrals reached each funnel stage (by ``furthest_stage``; monotone:
    requested ≥ delivered ≥ accepted ≥ completed). Rows with no stage (the request is
    not known) are not in the funnel."""
    rank = {s: i for i, s in enumerate(FUNNEL_STAGES)}
    counts = dict.fromkeys(FUNNEL_STAGES, 0)
    for r in rows:
        furthest = r.get("furthest_stage")
        if furthest is None:
            continue
        for s in FUNNEL_STAGES[: rank[furthest] + 1]:
            counts[s] += 1
    return counts


def funnel_values(counts: Mapping[str, int]) -> tuple[dict[str, int], list[Equation], set[str]]:
    """The funnel's cells, equations and hidden cells (:func:`nested_values` over
    :data:`FUNNEL_STAGES`: each stage = any later stage + those that stopped between them,
    ``<a>_not_<b>``, hidden). Requires monotone counts, so every equation holds exactly."""
    return nested_values(counts, FUNNEL_STAGES, "funnel")


def nested_values(
    counts: Mapping[str, int], chain: Sequence[str], what: str
) -> tuple[dict[str, int], list[Equation], set[str]]:
    """Cells, equations and hidden complements of counts that nest (each of ``chain`` a
    subset of the one before): for EVERY pair, not only neighbours, ``a = b + <a>_not_<b>``
    — two shown cells two steps apart tell their difference, a sum of withheld cells, which
    must be protected like a cell of its own."""
    values = dict(counts)
    eqs: list[Equation] = []
    hidden: set[str] = set()
    for i, a in enumerate(chain):
        for b in chain[i + 1:]:
            if values[a] < values[b]:
                raise ValueError(f"{what} not monotone: {a} {values[a]} < {b} {values[b]}")
            values[f"{a}_not_{b}"] = values[a] - values[b]
            hidden.add(f"{a}_not_{b}")
            eqs.append(Equation(a, (b, f"{a}_not_{b}")))
    return values, eqs, hidden


def funnel_release(rows: Sequence[Mapping[str, Any]], small_cell_max: int,
                   known_before: Known | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """The funnel's stage cells (suppressed as one table, shares of requested) and what a
    reader knows of them (for the next release)."""
    values, eqs, hidden = funnel_values(stage_counts(rows))
    hide, known = guarded_suppress(values, eqs, hidden, small_cell_max, known_before)
    out: dict[str, Any] = {
        s: cell(None if s in hide else values[s], None if "requested" in hide else values["requested"])
        for s in FUNNEL_STAGES
    }
    return out, known


def referral_funnel(rows: Sequence[Mapping[str, Any]], small_cell_max: int) -> dict[str, Any]:
    """How many referrals reached each stage (suppressed as one table, shares of
    requested), and the time spent between observed stages (median seconds; suppressed
    over ``small_cell_max`` or fewer referrals; implied stages have no time)."""
    out = funnel_release(rows, small_cell_max)[0]
    for name in STAGE_SECONDS:
        out[name] = stat([r[name] for r in rows if r.get(name) is not None], small_cell_max)
    return out


def report_document(
    *,
    table: dict[str, Any],
    repeat: dict[str, Any],
    times: dict[str, Any],
    funnel: dict[str, Any],
    force: dict[str, Any] | None = None,
    demographics: dict[str, Any] | None = None,
    date_from: Any = None,
    date_to: Any = None,
    by: str | None = None,
    small_cell_max: int = 10,
    vocabulary: Mapping[str, Any] | None = None,
    unmeasured: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    custom: Definitions = EMPTY,
    population: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report document (``hub report --json``, version 2) from its sections.
    ``vocabulary``: the label and vocabularies the read models were derived with.
    ``custom``: the county's definitions; with metrics, their cells are in ``outcomes`` and
    ``metrics``, and ``custom_metrics`` states the definitions (a county metric over an
    unmeasured outcome or flag is listed in ``not_measured`` too). ``population``: the source
    and year of the population table the rates per 1,000 residents used (None: none
    configured)."""
    unmeasured = {**(unmeasured or {})}
    unmeasured.update(custom_metrics.unmeasured_custom(custom, unmeasured))
    total = table["total"]
    headline = {"calls": total["calls"]}
    headline.update({name: total[metric] for name, metric in HEADLINES.items()})
    enrolled = "repeat_three_plus_enrolled"
    headline[enrolled] = (
        not_measured_cell(unmeasured[enrolled]) if enrolled in unmeasured else repeat["three_plus_enrolled"]
    )
    return {
        "report": "outcomes",
        "version": REPORT_VERSION,
        "vocabulary": dict(vocabulary or {"label": None, "vocabularies": []}),
        "not_measured": dict(unmeasured),
        "footnotes": list(notes),
        "population": dict(population) if population is not None else None,
        "from": date_from.isoformat() if date_from else None,
        "to": date_to.isoformat() if date_to else None,
        "by": by,
        "segment": "behavioral_health",
        "small_cell_max": small_cell_max,
        "metrics": [*PUBLISHED_METRICS, *custom_metrics.metric_names(custom)],
        "headline": headline,
        "outcomes": table,
        "repeat_encounters": repeat,
        "response_times": times,
        "referral_funnel": funnel,
        **({"use_of_force": force} if force is not None else {}),
        **({"demographics": demographics} if demographics is not None else {}),
        **({"custom_metrics": custom_metrics.section(custom)} if custom.metrics else {}),
    }


def published_cells(doc: Any, path: str = "") -> Iterable[tuple[str, int]]:
    """Every published count in a report document, with its path: cells' ``value`` and
    statistics' ``n`` (for checking the small-cell rule on a whole report)."""
    if isinstance(doc, dict):
        if "suppressed" in doc:
            for key in ("value", "n"):
                if isinstance(doc.get(key), int) and not isinstance(doc.get(key), bool):
                    yield f"{path}.{key}", doc[key]
        for k, v in doc.items():
            if isinstance(v, dict | list):
                yield from published_cells(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from published_cells(v, f"{path}[{i}]")


def cell_text(cell: Mapping[str, Any]) -> tuple[str, str]:
    """A published cell as text for a reader: (count with thousands separators, share as a
    percentage or ``""``); a suppressed cell reads ``suppressed (1-10)`` with no share, a
    metric the sources cannot express ``not measured``."""
    if cell.get("measured") is False:
        return "not measured", ""
    if cell.get("suppressed"):
        return "suppressed (1-10)", ""
    share = cell.get("share")
    return f"{cell['value']:,}", ("" if share is None else f"{share:.1%}")
