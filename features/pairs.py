"""Seeker x item pair features: the ONE function that training and serving both call.

Input is a frame whose columns are named as Feast returns them with ``full_feature_names=True``
(``seeker_competency__unit_ids``, ``posting_attributes__region_id``, ...) plus ``event_timestamp``.
The training path gets that frame from ``get_historical_features`` over a FeatureService; the
serving path builds it from one online-store read of the seeker and the in-memory item table.
Static occupation lookups come from :class:`PairContext`, built from the ``occupation_profile``
feature table in both paths.

A plain function rather than a Feast on-demand feature view: the features need per-row list
arithmetic over units (competency coverage), which in an ODFV runs row by row inside Feast's
transformation layer at ~ms per row, and the serving path reads item features from memory, not
from Feast. One vectorised function keeps both paths identical and fast (tested for equality).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from jobcare.competency import coverage, missing_units, riasec_congruence
from jobcare.world.regions import distance_matrix_km, regions_table
from jobcare.world.taxonomy import RIASEC, WORK_VALUES

PAIR_FEATURES = {
    "posting": [
        "coverage",
        "missing_units",
        "n_required_units",
        "riasec_congruence",
        "work_values_congruence",
        "region_distance_km",
        "same_region",
        "log_wage_ratio",
        "education_gap",
        "career_gap",
        "certificates_required",
        "certificates_missing",
        "desired_occupation_match",
        "desired_group_match",
        "days_since_open",
        "days_to_close",
    ],
    "course": [
        "new_unit_share",
        "desired_gap_closure",
        "riasec_congruence",
        "region_distance_km",
        "same_region",
        "desired_occupation_match",
        "desired_group_match",
        "days_to_start",
    ],
    "certificate": [
        "readiness",
        "already_held",
        "riasec_congruence",
        "desired_occupation_match",
        "desired_group_match",
        "education_gap",
        "desired_requires_units",
    ],
}
OCCUPATION_COLUMN = {
    "posting": "occupation_id",
    "course": "target_occupation_id",
    "certificate": "anchor_occupation_id",
}
ITEM_VIEW = {
    "posting": "posting_attributes",
    "course": "course_attributes",
    "certificate": "certificate_attributes",
}
SEEKER_COLUMNS = [
    "seeker_profile__region_id",
    "seeker_profile__education_level",
    "seeker_profile__career_years",
    "seeker_profile__desired_occupation_ids",
    "seeker_profile__reservation_wage",
    "seeker_competency__unit_ids",
    "seeker_competency__unit_levels",
    "seeker_competency__certificate_ids",
    *(f"seeker_psych__{c}" for c in RIASEC + WORK_VALUES),
]


def pad_lists(values, pad, width: int | None = None) -> np.ndarray:
    """Lists (or None) -> (n, width) int64 array padded with ``pad``."""
    lists = [v if v is not None and not (isinstance(v, float) and np.isnan(v)) else [] for v in values]
    lens = np.fromiter((len(v) for v in lists), dtype=np.int64, count=len(lists))
    w = max(1, int(lens.max()) if lens.size else 1) if width is None else width
    out = np.full((len(lists), w), pad, dtype=np.int64)
    if lens.sum():
        flat = np.concatenate([np.asarray(v, dtype=np.int64)[:w] for v in lists if len(v)])
        lens_c = np.minimum(lens, w)
        rows = np.repeat(np.arange(len(lists)), lens_c)
        cols = np.arange(lens_c.sum()) - np.repeat(np.cumsum(lens_c) - lens_c, lens_c)
        out[rows, cols] = flat
    return out


@dataclass
class PairContext:
    """Static lookups: occupation requirements and profiles (from ``occupation_profile``) and distances."""

    group: np.ndarray
    riasec: np.ndarray
    work_values: np.ndarray
    req_units: np.ndarray
    req_imp: np.ndarray
    req_lvl: np.ndarray
    n_units: int
    distance_km: np.ndarray

    @classmethod
    def from_occupation_profile(cls, occ: pd.DataFrame, n_units: int) -> PairContext:
        """Build from the occupation_profile feature table (bare column names)."""
        occ = occ.sort_values("occupation_id")
        if not np.array_equal(occ["occupation_id"].to_numpy(), np.arange(len(occ))):
            raise ValueError("occupation_profile: occupation ids must be 0..n-1")
        units = pad_lists(occ["required_unit_ids"], n_units)
        return cls(
            group=occ["group_id"].to_numpy(np.int64),
            riasec=occ[[f"occ_{c}" for c in RIASEC]].to_numpy(np.float64),
            work_values=occ[[f"occ_{c}" for c in WORK_VALUES]].to_numpy(np.float64),
            req_units=units,
            req_imp=pad_lists(occ["required_unit_importance"], 0, units.shape[1]).astype(np.float64),
            req_lvl=pad_lists(occ["required_unit_levels"], 1, units.shape[1]).astype(np.float64),
            n_units=n_units,
            distance_km=distance_matrix_km(regions_table()).astype(np.float64),
        )


def _held_levels(df: pd.DataFrame, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense (n_states, n_units + 1) held-level matrix and each row's state index (rows sharing a state
    share a matrix row; the last column is an all-zero pad)."""
    ids, lv = df["seeker_competency__unit_ids"], df["seeker_competency__unit_levels"]
    keys = [(tuple(a) if a is not None else (), tuple(b) if b is not None else ()) for a, b in zip(ids, lv)]
    codes, uniques = pd.factorize(pd.Series(keys, dtype=object))
    H = np.zeros((len(uniques), n_units + 1), dtype=np.int8)
    u = pad_lists([k[0] for k in uniques], n_units)
    v = pad_lists([k[1] for k in uniques], 0, u.shape[1])
    rows = np.repeat(np.arange(len(uniques)), u.shape[1])
    np.maximum.at(H, (rows, u.ravel()), v.ravel().astype(np.int8))
    H[:, n_units] = 0
    return H, codes


def pair_features(df: pd.DataFrame, item_type: str, ctx: PairContext) -> pd.DataFrame:
    """Pair features for each row of ``df`` (one seeker x one item at ``event_timestamp``).

    Args:
        df: seeker columns (:data:`SEEKER_COLUMNS`), the item view's columns and ``event_timestamp``.
        item_type: "posting", "course" or "certificate".
        ctx: static occupation lookups.

    Returns:
        A frame with the columns :data:`PAIR_FEATURES[item_type]`, index aligned with ``df``.
    """
    if item_type not in PAIR_FEATURES:
        raise ValueError(f"item_type must be one of {sorted(PAIR_FEATURES)}, got {item_type!r}")
    n = len(df)
    occ_col = f"{ITEM_VIEW[item_type]}__{OCCUPATION_COLUMN[item_type]}"
    missing = df[occ_col].isna().to_numpy() if occ_col in df else np.ones(n, bool)
    if missing.any():
        raise ValueError(
            f"pair_features({item_type}): {int(missing.sum())} row(s) have no item features "
            f"({occ_col} is null), e.g. rows {np.flatnonzero(missing)[:5].tolist()}; "
            "was an item scored before it existed?"
        )
    H, state = _held_levels(df, ctx.n_units)
    desired = pad_lists(df["seeker_profile__desired_occupation_ids"], -1, 3)
    desired_group = np.where(desired >= 0, ctx.group[np.maximum(desired, 0)], -1)
    edu = df["seeker_profile__education_level"].to_numpy(np.float64)
    region = df["seeker_profile__region_id"].to_numpy(np.int64)
    psych = df[[f"seeker_psych__{c}" for c in RIASEC]].to_numpy(np.float64)
    now = df["event_timestamp"].to_numpy(dtype="datetime64[us]").astype("int64") / 86_400e6
    v = ITEM_VIEW[item_type]
    out: dict[str, np.ndarray] = {}

    def occ_match(occ: np.ndarray) -> None:
        out["desired_occupation_match"] = (desired == occ[:, None]).any(axis=1).astype(np.float32)
        out["desired_group_match"] = (desired_group == ctx.group[occ][:, None]).any(axis=1).astype(np.float32)
        out["riasec_congruence"] = riasec_congruence(psych, ctx.riasec[occ])

    if item_type == "posting":
        occ = df[f"{v}__occupation_id"].to_numpy(np.int64)
        units, imp, lvl = ctx.req_units[occ], ctx.req_imp[occ], ctx.req_lvl[occ]
        held = H[state[:, None], units]
        out["coverage"] = coverage(held, lvl, imp)
        out["missing_units"] = missing_units(held, lvl, imp)
        out["n_required_units"] = (imp > 0).sum(axis=1)
        occ_match(occ)
        wv = df[[f"seeker_psych__{c}" for c in WORK_VALUES]].to_numpy(np.float64)
        out["work_values_congruence"] = riasec_congruence(wv, ctx.work_values[occ])
        p_region = df[f"{v}__region_id"].to_numpy(np.int64)
        out["region_distance_km"] = ctx.distance_km[region, p_region]
        out["same_region"] = (region == p_region).astype(np.float32)
        out["log_wage_ratio"] = np.log(
            df[f"{v}__wage"].to_numpy(np.float64)
            / np.maximum(df["seeker_profile__reservation_wage"].to_numpy(np.float64), 1.0)
        )
        out["education_gap"] = df[f"{v}__education_required"].to_numpy(np.float64) - edu
        out["career_gap"] = df[f"{v}__career_required"].to_numpy(np.float64) - df[
            "seeker_profile__career_years"
        ].to_numpy(np.float64)
        req = pad_lists(df[f"{v}__required_certificate_ids"], -1)
        held_c = pad_lists(df["seeker_competency__certificate_ids"], -2)
        has = (req[:, :, None] == held_c[:, None, :]).any(axis=2)
        out["certificates_required"] = (req >= 0).sum(axis=1)
        out["certificates_missing"] = ((req >= 0) & ~has).sum(axis=1)
        out["days_since_open"] = now - df[f"{v}__open_days"].to_numpy(np.float64)
        out["days_to_close"] = df[f"{v}__close_days"].to_numpy(np.float64) - now
    elif item_type == "course":
        occ = df[f"{v}__target_occupation_id"].to_numpy(np.int64)
        cu = pad_lists(df[f"{v}__unit_ids"], ctx.n_units)
        cl = pad_lists(df[f"{v}__unit_levels"], 0, cu.shape[1]).astype(np.float64)
        held = H[state[:, None], cu]
        taught = cl > 0
        out["new_unit_share"] = (taught & (held < cl)).sum(axis=1) / np.maximum(taught.sum(axis=1), 1)
        out["desired_gap_closure"] = _desired_gap_closure(H, state, desired, cu, cl, ctx)
        occ_match(occ)
        c_region = df[f"{v}__region_id"].to_numpy(np.int64)
        out["region_distance_km"] = ctx.distance_km[region, c_region]
        out["same_region"] = (region == c_region).astype(np.float32)
        out["days_to_start"] = df[f"{v}__start_days"].to_numpy(np.float64) - now
    else:
        occ = df[f"{v}__anchor_occupation_id"].to_numpy(np.int64)
        cu = pad_lists(df[f"{v}__unit_ids"], ctx.n_units)
        cl = pad_lists(df[f"{v}__unit_levels"], 0, cu.shape[1]).astype(np.float64)
        held = H[state[:, None], cu]
        out["readiness"] = coverage(held, np.maximum(cl, 1), (cl > 0).astype(np.float64))
        held_c = pad_lists(df["seeker_competency__certificate_ids"], -2)
        cid = df["certificate_id"].to_numpy(np.int64) if "certificate_id" in df else np.full(n, -1)
        out["already_held"] = (held_c == cid[:, None]).any(axis=1).astype(np.float32)
        occ_match(occ)
        out["education_gap"] = df[f"{v}__min_education"].to_numpy(np.float64) - edu
        out["desired_requires_units"] = _desired_requires(desired, cu, ctx)
    return pd.DataFrame(
        {k: np.asarray(out[k], dtype=np.float32) for k in PAIR_FEATURES[item_type]}, index=df.index
    )


def _desired_gap_closure(H, state, desired, cu, cl, ctx: PairContext) -> np.ndarray:
    """Importance share of the first desired occupation's unmet requirements that the course raises."""
    occ = desired[:, 0]
    ok = occ >= 0
    o = np.maximum(occ, 0)
    units, imp, lvl = ctx.req_units[o], ctx.req_imp[o] * ok[:, None], ctx.req_lvl[o]
    held = H[state[:, None], units]
    unmet = (held < lvl) & (imp > 0)
    # course level for each required unit (0 when not taught)
    match = units[:, :, None] == cu[:, None, :]
    course_lvl = np.where(match, cl[:, None, :], 0).max(axis=2)
    closes = unmet & (course_lvl > held)
    den = (imp * unmet).sum(axis=1)
    return np.divide((imp * closes).sum(axis=1), den, out=np.zeros(len(den)), where=den > 0)


def _desired_requires(desired, cu, ctx: PairContext) -> np.ndarray:
    """Share of the certificate's units required by any desired occupation."""
    n = len(desired)
    score = np.zeros(n)
    taught = cu < ctx.n_units
    for j in range(desired.shape[1]):
        occ = desired[:, j]
        req = ctx.req_units[np.maximum(occ, 0)]
        hit = (cu[:, :, None] == req[:, None, :]).any(axis=2) & taught & (occ >= 0)[:, None]
        score = np.maximum(score, hit.sum(axis=1) / np.maximum(taught.sum(axis=1), 1))
    return score
