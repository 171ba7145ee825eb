"""Rule-based candidates, built on the pair features (the same function the ranker uses).

- postings: desired occupation (2) + same region (1) + popularity applies_7d / (1 + applies_7d);
- courses: closure of the desired occupation's competency gap (3), desired occupation / group,
  same region, new units taught;
- certificates: demand by open postings of the desired occupations that require it (share), plus
  relevance of its units to the desired occupations and readiness; held ones are filtered out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.pairs import PairContext, pad_lists, pair_features


def rule_scores(
    item_type: str, pairs_frame: pd.DataFrame, ctx: PairContext, open_postings: pd.DataFrame | None = None
) -> np.ndarray:
    """Scores for each row of ``pairs_frame`` (seeker columns + item columns + event_timestamp)."""
    f = pair_features(pairs_frame, item_type, ctx)
    if item_type == "posting":
        pop = pairs_frame["posting_popularity__applies_7d"].fillna(0).to_numpy(np.float64)
        return 2 * f["desired_occupation_match"] + f["same_region"] + pop / (1 + pop)
    if item_type == "course":
        return (
            3 * f["desired_gap_closure"]
            + 1.5 * f["desired_occupation_match"]
            + 0.5 * f["desired_group_match"]
            + f["same_region"]
            + 0.5 * f["new_unit_share"]
        ).to_numpy()
    demand = np.zeros(len(pairs_frame))
    if open_postings is not None and len(open_postings):
        desired = pad_lists(pairs_frame["seeker_profile__desired_occupation_ids"], -1, 3)
        occ = open_postings["posting_attributes__occupation_id"].to_numpy(np.int64)
        req = pad_lists(open_postings["posting_attributes__required_certificate_ids"], -1)
        cert = pairs_frame["certificate_id"].to_numpy(np.int64)
        for r in range(len(pairs_frame)):
            of_desired = np.isin(occ, desired[r][desired[r] >= 0])
            if of_desired.any():
                demand[r] = (req[of_desired] == cert[r]).any(axis=1).mean()
    return (
        3 * demand
        + 2 * f["desired_requires_units"]
        + f["desired_group_match"]
        + 0.5 * f["readiness"]
        - 10 * f["already_held"]
    ).to_numpy()
