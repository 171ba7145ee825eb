"""The package (``POST /package``): ranked bundles of up to 2 courses and 2 certificates that close a
seeker's competency gap to one occupation, then the occupation's open postings.

France's PES "parcours": not three separate lists but one path to a target job. The gap and its
coverage are :func:`serving.gap.competency_gap`'s (importance-weighted, :func:`jobcare.competency.coverage`);
this module adds the timing, the success chances and the search over bundles.

Rules (:class:`PackageRules` holds the constants):

- **Items.** Courses recruiting now (the state's static mask: recruiting, not full) and certificates the
  seeker does not hold; a caller may narrow both with per-seeker ``allowed`` masks (e.g. without the
  courses already enrolled in), held certificates are removed in every case.
- **Success.** A course's units count with probability ``completion_rate``, a certificate's with
  probability ``pass_rate`` (one planned attempt), independently. A unit's level after a bundle is the max
  of the held level and the levels of the items that succeeded (how the world raises competencies).
- **Time.** A course run has fixed dates: it is done ``max(0, start - now) + duration_days`` days from
  now; the bundle's courses may overlap (the world lets a seeker attend overlapping runs), so the course
  track ends with the later one. A certificate exam takes ``exam_days = exam_base_days +
  exam_days_per_grade * (grade_level - 1)`` days (45 / 75 / 105 / 135 for craftsman / industrial engineer /
  engineer / master: the world announces a result 30-60 days after registration, and each grade up is a
  month more of preparation), and a failed exam is retaken, so its expected days are ``exam_days /
  pass_rate`` (the mean of a geometric number of attempts). Exams are taken one after another, in
  parallel with the course track: ``duration = max(course track, sum of the certificates' expected
  days)``. The **cost** is the seeker's days of effort, waiting for a start not counted: ``sum of the
  courses' duration_days + sum of the certificates' expected days``.
- **Objective.** ``score = demand_weight * E[coverage gain] / max(duration, 1)``: expected coverage gain
  per expected day, the expectation exact over the 2^n success outcomes of the bundle's n <= 4 items.
  The pass rate therefore counts twice for a certificate (in the gain and in the retake time): a
  deliberately risk-averse choice, a hard exam is both slower and less sure. ``demand_weight`` is the
  occupation's regional demand (:func:`demand_weight`) or 1; it is the same for every bundle of one
  request, so it scales the scores (comparable across target occupations and regions) without reordering
  them.
- **Search.** Per item type, the ``pre_select`` items with the best single-item score among those that
  raise the coverage; every combination of 0-2 courses and 0-2 certificates of them (at most 56 x 56 - 1
  = 3,135 bundles), scored at once with numpy. A bundle is kept when it closes at least one missing unit
  (reaches its required level) and each of its items adds coverage (a bundle with a passenger is
  dominated by the bundle without it). Ties: higher expected gain, shorter, fewer items, lower ids.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from jobcare.competency import coverage
from serving.errors import ServingError
from serving.gap import competency_gap

MAX_K = 20
COURSE, CERT = "course_attributes", "certificate_attributes"
OBJECTIVE = (
    "demand_weight * E[coverage gain] / max(duration_days, 1); courses count with their completion rate, "
    "certificates with their pass rate; duration = max(latest course end, sum of exam_days / pass_rate)"
)


class PackageError(ServingError):
    """A package request the service refuses (400, the message names field and rule)."""


class UnknownOccupationError(PackageError):
    """``occupation_id`` is not an occupation of the world."""


class PackageSizeError(PackageError):
    """``k`` (number of bundles) is outside 1-20."""


@dataclass(frozen=True)
class PackageRules:
    """The constants of the package rules (module docstring)."""

    max_courses: int = 2
    max_certificates: int = 2
    pre_select: int = 10  # best single items per type that enter the combinations
    exam_base_days: float = 45.0  # the world's mean time from registration to the exam result
    exam_days_per_grade: float = 30.0  # more preparation per grade above craftsman
    n_postings: int = 5
    max_course_km: float | None = None  # courses only within this distance of the seeker's region (None: all)


RULES = PackageRules()


def exam_days(grade_level, rules: PackageRules = RULES) -> np.ndarray:
    """Days of one exam attempt by grade level (1 craftsman ... 4 master)."""
    g = np.asarray(grade_level, dtype=np.float64)
    return rules.exam_base_days + rules.exam_days_per_grade * (np.maximum(g, 1.0) - 1.0)


def demand_weight(state, occupation_id: int, region_id: int) -> dict:
    """The occupation's demand in a region: its share of the region's open postings over its share of all
    open postings (a location quotient, add-one smoothed so that an empty market gives 1).

    Returns:
        ``{"weight", "open_in_region", "open_nationally"}`` (open postings of the occupation).
    """
    post = state.arrays["posting"]
    open_ = state.base["posting"] if "posting" in state.base else post.open_mask(state.as_of)
    in_region = open_ & (post.region == region_id)
    occ = post.occ == occupation_id
    n_or, n_o = int((in_region & occ).sum()), int((open_ & occ).sum())
    n_r, n = int(in_region.sum()), int(open_.sum())
    weight = ((n_or + 1) / (n_r + 1)) / ((n_o + 1) / (n + 1))
    return {"weight": float(weight), "open_in_region": n_or, "open_nationally": n_o}


def package(
    state,
    catalog,
    ctx,
    seeker: dict,
    occupation_id: int,
    k: int,
    demand: float | None = None,
    allowed: dict | None = None,
    rules: PackageRules = RULES,
) -> dict:
    """Ranked bundles that close the seeker's gap to ``occupation_id``, then its open postings.

    Args:
        state: the service state (``arrays``, ``base`` and ``as_of`` are read).
        catalog: names (:class:`serving.engine.Catalog`).
        ctx: occupation requirements (:class:`features.pairs.PairContext`).
        seeker: the seeker's ``seeker_online_v1`` feature row.
        occupation_id: the target occupation.
        k: number of bundles, 1-20.
        demand: the occupation's demand weight in the seeker's region (:func:`demand_weight`); None: 1.
        allowed: optional per item type ("course", "certificate") boolean masks over ``state.arrays``
            narrowing the items (e.g. :func:`training.offers.allowed_mask` for a known seeker).
        rules: the rule constants.

    Returns:
        The response as a dict (:class:`serving.package_schemas.PackageResponse`).

    Raises:
        UnknownOccupationError: ``occupation_id`` is not an occupation.
        PackageSizeError: ``k`` is outside 1-20.
    """
    n_occ = ctx.req_units.shape[0]
    if not 0 <= occupation_id < n_occ:
        raise UnknownOccupationError(f"occupation_id: {occupation_id} is not an occupation (0-{n_occ - 1})")
    if not 1 <= k <= MAX_K:
        raise PackageSizeError(f"k: {k} is outside 1-{MAX_K} (rule: number of bundles)")
    gap = competency_gap(state, catalog, ctx, occupation_id, seeker)
    region = int(seeker["seeker_profile__region_id"])
    weight = 1.0 if demand is None else float(demand)
    out = {
        "occupation_id": occupation_id,
        "occupation": gap["occupation"],
        "coverage": gap["coverage"],
        "missing_units": len(gap["missing"]),
        "demand_weight": weight,
        "objective": OBJECTIVE,
        "bundles": [],
        "postings": open_postings(state, catalog, ctx, occupation_id, region, rules.n_postings),
        "reason": None,
    }
    if not gap["missing"]:
        out["reason"] = "no gap: the seeker holds every required unit of this occupation at its level"
        return out
    units, need, imp, held = _requirements(gap)
    now = state.as_of.value / 86_400e9
    sides = [
        _course_side(state, allowed, units, ctx.n_units, now, _near(ctx, region, rules.max_course_km)),
        _certificate_side(state, seeker, allowed, units, ctx.n_units, rules),
    ]
    picks = [_pre_select(s, held, need, imp, rules.pre_select) for s in sides]
    bundles = _score_bundles(sides, picks, held, need, imp, gap["coverage"], weight, rules)
    if bundles is None:
        out["reason"] = "no open course and no certificate the seeker lacks closes a missing unit"
        return out
    out["bundles"] = _describe(bundles, sides, catalog, units, held, need, k)
    return out


def bundle_coverage(
    state, catalog, ctx, seeker: dict, occupation_id: int, course_ids=(), certificate_ids=()
) -> dict:
    """The coverage of ``occupation_id`` a given set of courses and certificates gives the seeker (any
    set, e.g. another list's items or what the seeker did), under the package's success rules.

    Returns:
        ``{"coverage": now, "reached": if every item succeeds, "expected": with the completion and pass
        rates}``; ids not in the state are ignored.
    """
    gap = competency_gap(state, catalog, ctx, occupation_id, seeker)
    units, need, imp, held = _requirements(gap)
    if units.size == 0:
        return {"coverage": gap["coverage"], "reached": gap["coverage"], "expected": gap["coverage"]}
    L, P = [], []
    for item_type, ids in (("course", course_ids), ("certificate", certificate_ids)):
        items = state.arrays[item_type]
        pos = items.positions(np.asarray(list(ids), dtype=np.int64))
        pos = np.unique(pos[pos >= 0])
        L.append(_levels_on(items, pos, units, ctx.n_units))
        P.append(_success(items, pos))
    L, P = np.vstack(L), np.concatenate(P)
    reached = coverage(np.maximum(held, L.max(axis=0, initial=0.0))[None], need[None], imp[None])[0]
    return {
        "coverage": gap["coverage"],
        "reached": float(reached),
        "expected": _expected(L, P, held, need, imp),
    }


def _expected(L: np.ndarray, P: np.ndarray, held, need, imp) -> float:
    """E[coverage] of n items (levels ``L`` (n, U), success chances ``P`` (n,)), exact and linear in n:
    coverage adds up over units, and a unit's credit is that of the best item that succeeded (items sorted
    by credit; the k-th counts when it succeeds and all better ones fail), else the held level's."""
    credit = np.minimum(1.0, np.maximum(held, L) / np.maximum(need, 1.0))  # (n, U)
    order = np.argsort(-credit, axis=0, kind="stable")
    c = np.take_along_axis(credit, order, axis=0)
    p = P[order]
    fail_before = np.cumprod(np.vstack([np.ones((1, need.size)), 1.0 - p]), axis=0)  # (n + 1, U)
    unit = (c * p * fail_before[:-1]).sum(axis=0) + np.minimum(
        1.0, held / np.maximum(need, 1.0)
    ) * fail_before[-1]
    return float((imp * unit).sum() / imp.sum())


def _requirements(gap: dict) -> tuple[np.ndarray, ...]:
    """(units, required levels, importance, held levels) of the gap's required units."""
    req = gap["required"]
    return (
        np.array([r["unit_id"] for r in req], np.int64),
        np.array([r["required_level"] for r in req], np.float64),
        np.array([r["importance"] for r in req], np.float64),
        np.array([r["held_level"] for r in req], np.float64),
    )


def _success(items, pos: np.ndarray) -> np.ndarray:
    """The probability that an item's units count: a course's completion rate, a certificate's pass rate."""
    col = f"{COURSE}__completion_rate" if items.item_type == "course" else f"{CERT}__pass_rate"
    return np.clip(np.nan_to_num(items.num[col][pos], nan=0.0), 0.0, 1.0)


# ------------------------------------------------------------------------------------------- item sides
@dataclass
class _Side:
    """One item type's allowed items: positions, levels on the required units, success chance, days."""

    item_type: str
    items: object  # ItemArrays
    pos: np.ndarray  # (n,) positions in ``items``
    levels: np.ndarray  # (n, U) level each item gives on each required unit (0: none)
    p: np.ndarray  # (n,) probability that its units count
    end_days: np.ndarray  # (n,) days from now until done (courses: start wait + duration; certs: expected)
    effort_days: np.ndarray  # (n,) days of the seeker's effort
    extra: dict  # per-item fields for the response


def _levels_on(items, pos: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    """(len(pos), U): the level each item gives on each required unit (its max if listed twice)."""
    col = np.full(n_units + 1, -1, np.int64)
    col[units] = np.arange(units.size)
    u, lv = items.units[pos], items.unit_levels[pos]
    c = col[np.minimum(u, n_units)]
    out = np.zeros((pos.size, units.size), np.float64)
    r, j = np.nonzero(c >= 0)
    np.maximum.at(out, (r, c[r, j]), lv[r, j].astype(np.float64))
    return out


def _near(ctx, region: int, km: float | None):
    """Regions within ``km`` of ``region`` as a boolean lookup (None: no limit)."""
    if km is None or not 0 <= region < ctx.distance_km.shape[0]:
        return None
    return ctx.distance_km[region] <= km


def _course_side(state, allowed, units, n_units: int, now: float, near=None) -> _Side:
    items = state.arrays["course"]
    mask = state.base["course"] if "course" in state.base else items.open_mask(state.as_of)
    if allowed is not None and "course" in allowed:
        mask = mask & allowed["course"]
    if near is not None:
        mask = mask & near[items.region]
    pos = np.flatnonzero(mask)
    wait = np.maximum(items.num[f"{COURSE}__start_days"][pos] - now, 0.0)
    dur = items.num[f"{COURSE}__duration_days"][pos]
    p = _success(items, pos)
    return _Side(
        "course",
        items,
        pos,
        _levels_on(items, pos, units, n_units),
        p,
        wait + dur,
        dur,
        {"start_in_days": wait, "duration_days": dur, "completion_rate": p},
    )


def _certificate_side(state, seeker, allowed, units, n_units: int, rules) -> _Side:
    items = state.arrays["certificate"]
    mask = np.ones(len(items), bool)
    if allowed is not None and "certificate" in allowed:
        mask &= allowed["certificate"]
    held = items.positions(np.asarray(seeker["seeker_competency__certificate_ids"], dtype=np.int64))
    mask[held[held >= 0]] = False
    pos = np.flatnonzero(mask)
    p = _success(items, pos)
    grade = items.num[f"{CERT}__grade_level"][pos]
    days = exam_days(grade, rules)
    expected = np.divide(days, p, out=np.full(p.size, np.inf), where=p > 0)
    return _Side(
        "certificate",
        items,
        pos,
        _levels_on(items, pos, units, n_units),
        p,
        expected,
        expected,
        {"grade_level": grade, "pass_rate": p, "exam_days": days, "expected_days": expected},
    )


def _pre_select(side: _Side, held, need, imp, top: int) -> np.ndarray:
    """Rows of ``side`` (at most ``top``) with the best single-item score among those that raise the
    coverage; ties: larger gain, then lower id."""
    if side.pos.size == 0:
        return np.zeros(0, np.int64)
    cov0 = coverage(held[None], need[None], imp[None])[0]
    after = coverage(np.maximum(held[None], side.levels), np.broadcast_to(need, side.levels.shape), imp[None])
    gain = after - cov0
    ok = (gain > 1e-12) & (side.p > 0) & np.isfinite(side.end_days)
    rows = np.flatnonzero(ok)
    score = side.p[rows] * gain[rows] / np.maximum(side.end_days[rows], 1.0)
    order = np.lexsort((side.items.keys[side.pos[rows]], -gain[rows], -score))
    return rows[order[:top]]


# ------------------------------------------------------------------------------------------- bundles
def _combos(n: int, most: int) -> np.ndarray:
    """(m, most) rows of 0..most distinct indices of ``range(n)``, padded with -1 (the empty one first)."""
    rows = [c + (-1,) * (most - len(c)) for r in range(most + 1) for c in itertools.combinations(range(n), r)]
    return np.array(rows, np.int64).reshape(-1, most)


def _score_bundles(sides, picks, held, need, imp, cov0, weight, rules):
    """Every bundle of the pre-selected items, scored; None when no bundle qualifies."""
    course, cert = sides
    cp, xp = picks
    cc = _combos(cp.size, rules.max_courses)
    xc = _combos(xp.size, rules.max_certificates)
    ci, xi = np.repeat(np.arange(len(cc)), len(xc)), np.tile(np.arange(len(xc)), len(cc))
    keep = (ci > 0) | (xi > 0)  # not the empty bundle
    slots_c, slots_x = cc[ci[keep]], xc[xi[keep]]  # (B, 2) indices into cp / xp, -1 empty
    U = need.size
    # one table of the selected items (courses then certificates) plus an empty row at the end
    L = np.vstack([course.levels[cp], cert.levels[xp], np.zeros((1, U))])
    P = np.concatenate([course.p[cp], cert.p[xp], [1.0]])
    empty = L.shape[0] - 1
    slots = np.concatenate(
        [np.where(slots_c >= 0, slots_c, empty), np.where(slots_x >= 0, cp.size + slots_x, empty)], axis=1
    )  # (B, 4) rows of L
    n_slots = slots.shape[1]
    lv, cov, prob = _outcomes(L[slots], P[slots], held, need, imp)
    e_cov = (prob * cov).sum(axis=1)
    full = 2**n_slots - 1
    nominal = cov[:, full]
    present = slots != empty
    drop_one = cov[:, full ^ (1 << np.arange(n_slots))]  # (B, 4): coverage without each slot
    adds = ~present | (nominal[:, None] > drop_one + 1e-12)
    closes = ((lv[:, full] >= need) & (held < need)).sum(axis=1)
    ok = adds.all(axis=1) & (closes > 0)
    if not ok.any():
        return None
    course_end = _per_slot(course.end_days[cp], slots_c, 0.0).max(axis=1, initial=0.0)
    course_effort = _per_slot(course.effort_days[cp], slots_c, 0.0).sum(axis=1)
    cert_days = _per_slot(cert.end_days[xp], slots_x, 0.0).sum(axis=1)
    duration = np.maximum(course_end, cert_days)
    cost = course_effort + cert_days
    e_gain = e_cov - cov0
    score = weight * e_gain / np.maximum(duration, 1.0)
    ids = np.concatenate(
        [
            _per_slot(course.items.keys[course.pos[cp]], slots_c, -1),
            _per_slot(cert.items.keys[cert.pos[xp]], slots_x, -1),
        ],
        axis=1,
    )
    ties = tuple(ids[:, j] for j in range(ids.shape[1] - 1, -1, -1))
    order = np.lexsort((*ties, present.sum(axis=1), duration, -e_gain, -score))
    order = order[ok[order]]
    return {
        "order": order,
        "slots_c": slots_c,
        "slots_x": slots_x,
        "picks": picks,
        "levels": lv[:, full],
        "coverage": nominal,
        "expected_coverage": e_cov,
        "cov0": cov0,
        "duration": duration,
        "cost": cost,
        "score": score,
    }


def _outcomes(Lb: np.ndarray, Pb: np.ndarray, held, need, imp):
    """Every success outcome of B bundles of n items each, as (levels (B, 2^n, U), coverage (B, 2^n),
    probability (B, 2^n)): outcome s has item j succeed when bit j of s is set, independently with
    probability ``Pb[:, j]``; a unit's level is the max of the held level and the succeeding items'.

    Args:
        Lb: (B, n, U) the level each item gives on each required unit.
        Pb: (B, n) each item's success probability (1 for an empty slot whose levels are 0).
    """
    B, n, U = Lb.shape
    S = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)  # (2^n, n)
    # outcome s is outcome s without its lowest item j, plus item j: one (B, U) maximum per outcome
    # (a (B, 2^n, n, U) product and its max took three quarters of a package request)
    lv = np.empty((B, 2**n, U))
    lv[:, 0] = held
    for s in range(1, 2**n):
        j = (s & -s).bit_length() - 1
        np.maximum(lv[:, s & (s - 1)], Lb[:, j], out=lv[:, s])
    flat = lv.reshape(-1, need.size)
    cov = coverage(flat, np.broadcast_to(need, flat.shape), np.broadcast_to(imp, flat.shape))
    prob = np.prod(np.where(S[None], Pb[:, None, :], 1.0 - Pb[:, None, :]), axis=2)
    return lv, cov.reshape(lv.shape[:2]), prob


def _per_slot(values: np.ndarray, slots: np.ndarray, fill) -> np.ndarray:
    """``values`` gathered at ``slots`` (rows of indices, -1 for an empty slot, which gets ``fill``)."""
    padded = np.append(values, np.asarray(fill, dtype=values.dtype))
    return padded[np.where(slots >= 0, slots, values.size)]


def _describe(b: dict, sides, catalog, units, held, need, k: int) -> list[dict]:
    out = []
    for rank, j in enumerate(b["order"][:k], start=1):
        parts = {}
        for side, slots, pick in zip(sides, (b["slots_c"], b["slots_x"]), b["picks"]):
            rows = pick[slots[j][slots[j] >= 0]]
            parts[side.item_type] = [_item(side, r, catalog, units, held, need) for r in rows]
        closed = (b["levels"][j] >= need) & (held < need)
        out.append(
            {
                "rank": rank,
                "courses": parts["course"],
                "certificates": parts["certificate"],
                "closes_units": [
                    {"unit_id": int(u), "name": str(catalog.units.get(int(u), int(u)))} for u in units[closed]
                ],
                "coverage": float(b["coverage"][j]),
                "expected_coverage": float(b["expected_coverage"][j]),
                "expected_gain": float(b["expected_coverage"][j] - b["cov0"]),
                "duration_days": float(b["duration"][j]),
                "cost_days": float(b["cost"][j]),
                "score": float(b["score"][j]),
            }
        )
    return out


def _item(side: _Side, row: int, catalog, units, held, need) -> dict:
    iid = int(side.items.keys[side.pos[row]])
    lv = side.levels[row]
    return {
        "id": iid,
        "title": str(catalog.titles[side.item_type].get(iid, f"{side.item_type} {iid}")),
        "closes_units": [int(u) for u in units[(lv >= need) & (held < need)]],
        **{name: round(float(v[row]), 6) for name, v in side.extra.items()},  # float32 columns
    }


# ------------------------------------------------------------------------------------------- postings
def open_postings(state, catalog, ctx, occupation_id: int, region_id: int, n: int) -> list[dict]:
    """Up to ``n`` open postings of the occupation: the seeker's region first, then by distance, then id."""
    post = state.arrays["posting"]
    open_ = state.base["posting"] if "posting" in state.base else post.open_mask(state.as_of)
    pos = np.flatnonzero(open_ & (post.occ == occupation_id))
    if pos.size == 0:
        return []
    reg = post.region[pos]
    dist = (
        ctx.distance_km[region_id, reg] if 0 <= region_id < ctx.distance_km.shape[0] else np.zeros(pos.size)
    )
    order = np.lexsort((post.keys[pos], dist, reg != region_id))[:n]
    return [
        {
            "id": int(post.keys[pos[j]]),
            "title": str(catalog.titles["posting"].get(int(post.keys[pos[j]]), "")),
            "region_id": int(reg[j]),
            "region": str(catalog.regions.get(int(reg[j]), int(reg[j]))),
        }
        for j in order
    ]
