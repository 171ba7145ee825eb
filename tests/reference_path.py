"""The reference request path: the pandas implementation the fast one (``training/request_path.py``)
replaced, kept only for the parity tests.

One row per (seeker, item) with the seeker's columns broadcast, :func:`features.pairs.pair_features`
over every allowed item, the loop-based union, frames re-indexed per request and the Feast
point-in-time read of the ranker's FeatureService. Slow by construction, obviously right by reading.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features import store as fstore
from features.pairs import PairContext, pad_lists, pair_features
from training.candidates.base import top_k
from training.candidates.world import ITEM_KEY, open_mask
from training.ranking_data import SERVICE

REGION_COLUMN = {"posting": "posting_attributes__region_id", "course": "course_attributes__region_id"}
OCC_COLUMN = {
    "posting": "posting_attributes__occupation_id",
    "course": "course_attributes__target_occupation_id",
    "certificate": "certificate_attributes__anchor_occupation_id",
}


def union(lists: dict, quotas: dict, n: int) -> np.ndarray:
    """Round one: up to quota new items per source in quota order; round two: fill to n, same order."""
    taken: dict = {}
    pos = {name: 0 for name in quotas}
    for rnd in (1, 2):
        for name, quota in quotas.items():
            items = lists.get(name, np.zeros(0))
            budget = quota if rnd == 1 else n
            got = 0
            while pos[name] < len(items) and got < budget and len(taken) < n:
                it = int(items[pos[name]])
                pos[name] += 1
                if it not in taken:
                    taken[it] = name
                    got += 1
    return np.asarray(list(taken.keys()), dtype=np.int64)


def allowed_items(
    index, seeker: int, ts, items: pd.DataFrame, held_certificates, regions=None, occupations=None
):
    key = ITEM_KEY[index.item_type]
    items = items[open_mask(index.item_type, items, ts)]
    gone = [index.closed(ts), index.blocked(seeker, ts)]
    if index.item_type == "certificate" and held_certificates is not None:
        gone.append(np.asarray(held_certificates, dtype=np.int64))
    items = items[~items[key].isin(np.concatenate(gone))]
    if regions:
        items = items[items[REGION_COLUMN[index.item_type]].isin(regions)]
    if occupations:
        items = items[items[OCC_COLUMN[index.item_type]].isin(occupations)]
    return items.reset_index(drop=True)


def rule_scores(item_type, pairs_frame: pd.DataFrame, ctx: PairContext, open_postings=None) -> np.ndarray:
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


def broadcast(items: pd.DataFrame, seeker_row: pd.Series, ts) -> pd.DataFrame:
    frame = items.copy()
    for c, v in seeker_row.items():
        if "__" in c:
            frame[c] = [v] * len(frame)
    frame["event_timestamp"] = ts
    return frame


def candidates_for(
    stage, ctx, item_type, seeker_row, ts, items, user_vec, history, trained_until, k, op=None
):
    key = ITEM_KEY[item_type]
    allowed = items[key].to_numpy(np.int64)
    s = int(seeker_row["seeker_id"])
    newer = history is not None and bool(len(history)) and bool((history["timestamp"] >= trained_until).any())
    out = {"als": stage.als.recommend(s, k, items=allowed, history=history if newer else None)[0]}
    emb = stage.two_tower.item_embeddings_[pd.Index(stage.two_tower.item_keys_).get_indexer(allowed)]
    out["two_tower"] = top_k(allowed, (emb @ user_vec).astype(np.float64), k)[0]
    out["popularity"] = stage.popularity.recommend(s, k, items=allowed)[0]
    frame = broadcast(items, seeker_row, ts)
    out["rules"] = top_k(allowed, np.asarray(rule_scores(item_type, frame, ctx, op), dtype=float), k)[0]
    return out


def ranker_frame(item_type, frame, seeker, ts, lists, n_candidates, ctx, occupation_profile) -> pd.DataFrame:
    """The candidates' ranker inputs: item columns, the seeker broadcast, occupation profile, pairs, ranks."""
    key_col = ITEM_KEY[item_type]
    n = len(frame)
    cols = pd.DataFrame({c: [v] * n for c, v in seeker.items() if "__" in c}, index=frame.index)
    frame = pd.concat([frame, cols], axis=1)
    if item_type == "posting":
        occ = frame["posting_attributes__occupation_id"].to_numpy(np.int64)
        prof = occupation_profile.reindex(occ).reset_index(drop=True)
        prof.index = frame.index
        frame = pd.concat([frame, prof], axis=1)
    frame["event_timestamp"] = ts
    frame = pd.concat([frame, pair_features(frame, item_type, ctx)], axis=1)
    ids = frame[key_col].to_numpy()
    for src, lst in lists.items():
        rank = pd.Series(np.arange(1, len(lst) + 1), index=pd.Index(np.asarray(lst, dtype=np.int64)))
        frame[f"cand_rank_{src}"] = rank.reindex(ids).fillna(n_candidates + 1).to_numpy(np.int64)
    return frame


def occupation_profile(repo) -> pd.DataFrame:
    occ = pd.read_parquet(repo / "data" / "occupation_profile.parquet")
    occ = occ.sort_values(["occupation_id", "event_timestamp"]).drop_duplicates("occupation_id", keep="last")
    occ = occ.drop(columns=["event_timestamp", "created_timestamp"]).set_index("occupation_id")
    occ.columns = [f"occupation_profile__{c}" for c in occ.columns]
    return occ


def recommend(
    stage, bundle, ctx, item_type, seeker_row, ts, items, user_vec, history, trained_until, op, occ_prof
):
    """(candidate ids in union order, ranker frame, scores) of the reference path for one request."""
    key = ITEM_KEY[item_type]
    lists = candidates_for(
        stage,
        ctx,
        item_type,
        seeker_row,
        ts,
        items,
        user_vec,
        history,
        trained_until,
        bundle.n_candidates,
        op,
    )
    lists = {name: lst for name, lst in lists.items() if name in bundle.quotas}
    cand = union(lists, bundle.quotas, bundle.n_candidates)
    frame = items.set_index(key).loc[cand].reset_index()
    frame = ranker_frame(item_type, frame, seeker_row, ts, lists, bundle.n_candidates, ctx, occ_prof)
    return cand, frame, bundle.ranker.predict(frame)


def feast_rows(store, item_type: str, entity: pd.DataFrame, ctx: PairContext) -> pd.DataFrame:
    """The ranker's FeatureService read point in time from Feast for (seeker_id, item key, event_timestamp
    [, occupation_id]) rows, plus the pandas pair features: what training read before the request path."""
    feats = fstore.historical_features(store, entity, SERVICE[item_type])
    return pd.concat([feats, pair_features(feats, item_type, ctx)], axis=1)
