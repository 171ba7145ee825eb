"""Stage-two rows: for each request (a session of one item type), the candidates stage one would have
produced at that moment plus the items the session showed, with graded labels and features.

Labels: hire / complete / acquire 3 > apply / enrol / register 2 > view 1 > shown or candidate 0.
Negative sampling: every item the session showed is kept (shown-not-clicked is the informative
negative); of the remaining candidates, ``negatives_per_request`` are drawn at random and labelled 0.
Each row carries its logged display position (``shown_position``; ``NOT_SHOWN`` for sampled
candidates), which the unbiased ranker uses to learn the position bias; it is never a feature.
Requests without any positive label are dropped (LambdaRank learns nothing from them).

Features of a row (built by :mod:`training.request_path`, the same code the service runs): the seeker's
point-in-time features from Feast, the item and occupation features of that day, the pair features,
and each stage-one source's rank of the item (``cand_rank_<source>``, ``n_candidates + 1`` when the
source did not propose it). They equal the item type's FeatureService read point-in-time from Feast
plus :func:`features.pairs.pair_features` (tested).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.request_path import source_ranks

LABEL = {"view": 1, "apply": 2, "enrol": 2, "register": 2, "hire": 3, "complete": 3, "acquire": 3}
SERVICE = {"posting": "job_ranker_v1", "course": "course_ranker_v1", "certificate": "certificate_ranker_v1"}
SOURCES = ("als", "two_tower", "rules", "popularity")
NOT_SHOWN = 1000  # the position id of a candidate the session did not show


def session_labels(t: dict, item_type: str, session_ids, until: pd.Timestamp | None = None) -> pd.DataFrame:
    """(session_id, item_id, label): the best outcome of each item in each session (hire counts for
    the session whose apply led to it). ``until``: only events before it (a window's labels come from
    events inside the window: a hire after the window's end does not label its sessions)."""
    ev = t["events"]
    ev = ev[(ev["item_type"] == item_type) & ev["session_id"].isin(session_ids)]
    if until is not None:
        ev = ev[ev["ts"] < until]
    lab = ev.assign(label=ev["event_type"].map(LABEL)).dropna(subset=["label"])
    return lab.groupby(["session_id", "item_id"])["label"].max().astype(int).reset_index()


def request_columns(
    request_id: int,
    session_id: int,
    candidates: dict[str, np.ndarray],
    shown: np.ndarray,
    labels: dict[int, int],
    n_candidates: int,
    negatives: int,
    rng,
    require_positive: bool = True,
) -> dict[str, np.ndarray] | None:
    """The rows of one request as columns (name -> array, in the rows' column order): shown items,
    positives and sampled candidate negatives, with source ranks (None for a request without a positive
    label, unless ``require_positive`` is False). Arrays, not a DataFrame: the replay calls this once per
    request (20,000 a window at national scale) and builds one DataFrame at the end."""
    union_items = np.unique(np.concatenate([*candidates.values(), shown]).astype(np.int64))
    pos = {i for i, lab in labels.items() if lab > 0}
    if not pos and require_positive:
        return None
    keep = set(shown.tolist()) | pos
    rest = np.setdiff1d(union_items, np.fromiter(keep, dtype=np.int64))
    if rest.size:
        keep |= set(rng.choice(rest, min(negatives, rest.size), replace=False).tolist())
    items = np.sort(np.fromiter(keep, dtype=np.int64))
    at = {int(x): j for j, x in enumerate(shown)}  # ``shown`` is in display order
    cols = {
        "request_id": np.full(items.size, request_id, np.int64),
        "item_id": items,
        "label": np.array([labels.get(int(i), 0) for i in items], dtype=np.int64),
        "shown": np.isin(items, shown).astype(np.int8),
        "shown_position": np.array([at.get(int(i), NOT_SHOWN) for i in items], dtype=np.int32),
    }
    for src, ranks in source_ranks(candidates, items, n_candidates).items():
        cols[f"cand_rank_{src}"] = ranks
    return cols
