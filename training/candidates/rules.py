"""Rule-based candidates, built on the pair features (the same features the ranker uses).

- postings: desired occupation (2) + same region (1) + popularity applies_7d / (1 + applies_7d);
- courses: closure of the desired occupation's competency gap (3), desired occupation / group,
  same region, new units taught;
- certificates: demand by open postings of the desired occupations that require it (share), plus
  relevance of its units to the desired occupations and readiness; held ones are filtered out.

Scores are computed over arrays for one seeker (the request path); the arithmetic follows the
reference (pandas ``pair_features`` in float32, popularity and demand in float64) so both rank alike.
"""

from __future__ import annotations

import numpy as np

from features.item_arrays import ItemArrays
from features.pair_arrays import SeekerArrays, occupation_features, pair_matrix
from features.pairs import PairContext

COURSE = (
    "desired_gap_closure",
    "desired_occupation_match",
    "desired_group_match",
    "same_region",
    "new_unit_share",
)
CERTIFICATE = ("desired_requires_units", "desired_group_match", "readiness", "already_held")


def _fraction(applies: np.ndarray) -> np.ndarray:
    pop = np.nan_to_num(applies, nan=0.0)
    return pop / (1 + pop)


def rule_scores(
    item_type: str,
    seeker: SeekerArrays,
    items: ItemArrays,
    idx: np.ndarray,
    now: float,
    ctx: PairContext,
    occ_feats: dict | None = None,
    demand: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Rule scores (float64) of the items at positions ``idx`` (an index array, or ``slice(None)`` for
    every item; postings only) for ``seeker`` at ``now`` (days).

    ``demand`` (certificates): :func:`features.item_arrays.certificate_demand` of the open postings."""
    occ_feats = occupation_features(seeker, ctx) if occ_feats is None else occ_feats
    if item_type == "posting":
        # 2 * desired match + same region depends on (occupation, region) only: a table per request,
        # one gather per item; the popularity term is static per item
        n_reg = ctx.distance_km.shape[0]
        code = items.derived("occupation_region", lambda: items.occ * n_reg + items.region)
        frac = items.derived(
            "popularity_fraction", lambda: _fraction(items.num["posting_popularity__applies_7d"])
        )
        same = (np.arange(n_reg) == seeker.region).astype(np.float32)
        table = (2 * occ_feats["desired_occupation_match"][:, None] + same[None, :]).ravel()
        return table[code[idx]] + frac[idx]
    if item_type == "course":
        f = pair_matrix(item_type, seeker, items, idx, now, ctx, occ_feats, COURSE)
        return (
            3 * f["desired_gap_closure"]
            + 1.5 * f["desired_occupation_match"]
            + 0.5 * f["desired_group_match"]
            + f["same_region"]
            + 0.5 * f["new_unit_share"]
        ).astype(np.float64)
    f = pair_matrix(item_type, seeker, items, idx, now, ctx, occ_feats, CERTIFICATE)
    share = np.zeros(idx.size)
    desired = np.unique(seeker.desired[seeker.desired >= 0])
    if demand is not None and desired.size:
        n_open, count = demand
        n = n_open[desired].sum()
        if n > 0:
            cert = items.keys[idx]
            ok = cert < count.shape[1]
            share[ok] = count[np.ix_(desired, cert[ok])].sum(axis=0) / n
    return (
        3 * share
        + 2 * f["desired_requires_units"]
        + f["desired_group_match"]
        + 0.5 * f["readiness"]
        - 10 * f["already_held"]
    )
