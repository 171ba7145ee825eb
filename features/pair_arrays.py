"""Pair features of ONE seeker over many items, on arrays: what the request path computes.

Same features, names and formulas as the reference :func:`features.pairs.pair_features` (a pandas frame
with one row per (seeker, item); kept as the reference the parity tests compare with), organised for a
request:

- :class:`SeekerArrays` holds one seeker's features as arrays (dense held-level vector, desired
  occupations, psych profile) - built once per request from the online row;
- :func:`occupation_features` computes what depends on the seeker and an item's occupation only
  (coverage, missing units, RIASEC / work-value congruence, desired occupation and group match) for
  every occupation at once; items gather it by their occupation;
- :func:`pair_matrix` adds the genuinely item-level features (wage ratio, distance, certificates,
  days to close, units taught) for the given item positions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.item_arrays import ItemArrays
from features.pairs import ITEM_VIEW, PAIR_FEATURES, PairContext
from jobcare.competency import coverage, missing_units, riasec_congruence
from jobcare.world.taxonomy import RIASEC, WORK_VALUES

OCCUPATION_LEVEL = (
    "coverage",
    "missing_units",
    "n_required_units",
    "riasec_congruence",
    "work_values_congruence",
    "desired_occupation_match",
    "desired_group_match",
)


def _ints(v) -> np.ndarray:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return np.zeros(0, np.int64)
    return np.asarray(v, dtype=np.int64).ravel()


def days(ts: pd.Timestamp) -> float:
    """A moment as days since the epoch, computed as the reference does (microseconds / 86,400e6)."""
    return (pd.Timestamp(ts).value // 1000) / 86_400e6


@dataclass(frozen=True)
class SeekerArrays:
    """One seeker's features as arrays. ``row`` keeps the scalar features by Feast name."""

    seeker_id: int
    row: dict
    held: np.ndarray  # (n_units + 1,) int8 held level per unit; the last entry is the all-zero pad
    desired: np.ndarray  # (3,) int64, padded with -1
    desired_group: np.ndarray  # (3,) int64, -1 where no desired occupation
    certificates: np.ndarray  # held certificate ids
    region: int
    education: float
    career_years: float
    reservation_wage: float
    psych: np.ndarray  # (6,) RIASEC
    work_values: np.ndarray

    @classmethod
    def from_row(cls, row, ctx: PairContext, seeker_id: int | None = None) -> SeekerArrays:
        """From a ``seeker_online_v1`` row (pd.Series or dict, Feast column names)."""
        get = row.get
        held = np.zeros(ctx.n_units + 1, np.int8)
        u = _ints(get("seeker_competency__unit_ids"))
        lv = _ints(get("seeker_competency__unit_levels"))
        u = np.where((u >= 0) & (u < ctx.n_units), u, ctx.n_units)
        np.maximum.at(held, u[: lv.size], lv[: u.size].astype(np.int8))
        held[ctx.n_units] = 0
        desired = np.full(3, -1, np.int64)
        d = _ints(get("seeker_profile__desired_occupation_ids"))[:3]
        desired[: d.size] = d
        group = np.where(desired >= 0, ctx.group[np.maximum(desired, 0)], -1)
        sid = int(get("seeker_id", -1)) if seeker_id is None else int(seeker_id)
        return cls(
            seeker_id=sid,
            row=dict(row),
            held=held,
            desired=desired,
            desired_group=group,
            certificates=_ints(get("seeker_competency__certificate_ids")),
            region=int(get("seeker_profile__region_id")),
            education=float(get("seeker_profile__education_level")),
            career_years=float(get("seeker_profile__career_years")),
            reservation_wage=float(get("seeker_profile__reservation_wage")),
            psych=np.array([get(f"seeker_psych__{c}") for c in RIASEC], np.float64),
            work_values=np.array([get(f"seeker_psych__{c}") for c in WORK_VALUES], np.float64),
        )


def occupation_features(s: SeekerArrays, ctx: PairContext) -> dict[str, np.ndarray]:
    """The seeker x occupation features for every occupation, (n_occ,) arrays (float32 as the reference)."""
    n = ctx.group.size
    held = s.held[ctx.req_units]
    occ = np.arange(n)
    out = {
        "coverage": coverage(held, ctx.req_lvl, ctx.req_imp),
        "missing_units": missing_units(held, ctx.req_lvl, ctx.req_imp),
        "n_required_units": (ctx.req_imp > 0).sum(axis=1),
        "riasec_congruence": riasec_congruence(np.tile(s.psych, (n, 1)), ctx.riasec),
        "work_values_congruence": riasec_congruence(np.tile(s.work_values, (n, 1)), ctx.work_values),
        "desired_occupation_match": (s.desired[None, :] == occ[:, None]).any(axis=1),
        "desired_group_match": (s.desired_group[None, :] == ctx.group[:, None]).any(axis=1),
    }
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def _course_gap_closure(s: SeekerArrays, cu: np.ndarray, cl: np.ndarray, ctx: PairContext) -> np.ndarray:
    """Importance share of the first desired occupation's unmet requirements that each course raises."""
    o = int(s.desired[0])
    if o < 0:
        return np.zeros(cu.shape[0])
    units, imp, lvl = ctx.req_units[o], ctx.req_imp[o], ctx.req_lvl[o]
    held = np.broadcast_to(s.held[units], (cu.shape[0], units.size))
    unmet = (held < lvl) & (imp > 0)
    match = units[None, :, None] == cu[:, None, :]
    course_lvl = np.where(match, cl[:, None, :], 0).max(axis=2)
    closes = unmet & (course_lvl > held)
    den = (np.broadcast_to(imp, unmet.shape) * unmet).sum(axis=1)
    num = (imp * closes).sum(axis=1)
    return np.divide(num, den, out=np.zeros(len(den)), where=den > 0)


def _desired_requires(s: SeekerArrays, cu: np.ndarray, ctx: PairContext) -> np.ndarray:
    """Share of each certificate's units required by any desired occupation."""
    score = np.zeros(cu.shape[0])
    taught = cu < ctx.n_units
    n_taught = np.maximum(taught.sum(axis=1), 1)
    for occ in s.desired:
        if occ < 0:
            continue
        req = ctx.req_units[occ]
        hit = (cu[:, :, None] == req[None, None, :]).any(axis=2) & taught
        score = np.maximum(score, hit.sum(axis=1) / n_taught)
    return score


def pair_matrix(
    item_type: str,
    s: SeekerArrays,
    items: ItemArrays,
    idx: np.ndarray,
    now: float,
    ctx: PairContext,
    occ_feats: dict[str, np.ndarray] | None = None,
    names=None,
) -> dict[str, np.ndarray]:
    """Pair features (float32, ``PAIR_FEATURES[item_type]`` or ``names``) of the seeker with items ``idx``.

    Args:
        idx: item positions in ``items``.
        now: the request moment in days since the epoch (:func:`days`).
        occ_feats: :func:`occupation_features` of the seeker, when already computed for this request.
    """
    want = list(PAIR_FEATURES[item_type] if names is None else names)
    occ_feats = occupation_features(s, ctx) if occ_feats is None else occ_feats
    occ = items.occ[idx]
    out: dict[str, np.ndarray] = {}
    v = ITEM_VIEW[item_type]
    num = items.num
    for name in OCCUPATION_LEVEL:
        if name in want and name in PAIR_FEATURES[item_type]:
            out[name] = occ_feats[name][occ]
    if items.region is not None:
        reg = items.region[idx]
        out["region_distance_km"] = ctx.distance_km[s.region, reg]
        out["same_region"] = s.region == reg
    if item_type == "posting":
        out["log_wage_ratio"] = np.log(num[f"{v}__wage"][idx] / max(s.reservation_wage, 1.0))
        out["education_gap"] = num[f"{v}__education_required"][idx] - s.education
        out["career_gap"] = num[f"{v}__career_required"][idx] - s.career_years
        req = items.req_certs[idx]
        has = np.isin(req, s.certificates)
        out["certificates_required"] = (req >= 0).sum(axis=1)
        out["certificates_missing"] = ((req >= 0) & ~has).sum(axis=1)
        out["days_since_open"] = now - num[f"{v}__open_days"][idx]
        out["days_to_close"] = num[f"{v}__close_days"][idx] - now
    elif item_type == "course":
        cu, cl = items.units[idx], items.unit_levels[idx].astype(np.float64)
        if {"new_unit_share", "desired_gap_closure"} & set(want):
            held = s.held[cu]
            taught = cl > 0
            out["new_unit_share"] = (taught & (held < cl)).sum(axis=1) / np.maximum(taught.sum(axis=1), 1)
            out["desired_gap_closure"] = _course_gap_closure(s, cu, cl, ctx)
        out["days_to_start"] = num[f"{v}__start_days"][idx] - now
    else:
        cu, cl = items.units[idx], items.unit_levels[idx].astype(np.float64)
        out["readiness"] = coverage(s.held[cu], np.maximum(cl, 1), (cl > 0).astype(np.float64))
        out["already_held"] = np.isin(items.keys[idx], s.certificates)
        out["education_gap"] = num[f"{v}__min_education"][idx] - s.education
        if "desired_requires_units" in want:
            out["desired_requires_units"] = _desired_requires(s, cu, ctx)
    return {k: np.asarray(out[k], dtype=np.float32) for k in want}
