"""Time-split evaluation of stage one: recall@100/300 per source and of the union, by segment.

Train on the events before T = end - eval_days; replay every request (session) of the window in which
the seeker applied / enrolled / registered, at the session's start, with point-in-time seeker
features from Feast and the items open at that moment; the relevant items are those the seeker acted
on in that session. Segments: warm seekers (interactions of this item type before T), cold seekers
(none), and new items (relevant items with no interaction before T). The oracle row ranks the same
allowed items by the world's true expected utility.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from features import store as fstore
from features.item_index import item_features
from features.pairs import PairContext
from jobcare.config import CandidatesConfig
from jobcare.ids import unique_sorted
from jobcare.stages import stage
from jobcare.world.io import read_manifest, read_tables
from training.candidates.als import ALSRecommender
from training.candidates.popularity import PopularityRecommender
from training.candidates.two_tower import TwoTowerRecommender
from training.candidates.union import union
from training.candidates.world import ACTION, item_side_table, seeker_side_table
from training.interactions import world_interactions
from training.offers import OfferIndex
from training.request_path import ReplayDays, context

log = logging.getLogger(__name__)
SOURCES = ["als", "two_tower", "rules", "popularity", "union", "oracle"]
SEGMENTS = ["all", "warm", "cold", "new_items"]
KS = (100, 300)


@dataclass
class StageOne:
    """The fitted generators of one item type."""

    item_type: str
    popularity: PopularityRecommender
    als: ALSRecommender
    two_tower: TwoTowerRecommender
    fit_seconds: dict = field(default_factory=dict)


def fit_stage_one(
    item_type: str,
    events: pd.DataFrame,
    until: pd.Timestamp,
    store,
    repo: Path,
    ctx: PairContext,
    cfg: CandidatesConfig,
    catalogue_at: pd.Timestamp,
) -> StageOne:
    """Fit popularity, ALS and two-tower on the events of ``item_type`` before ``until``.

    ALS fits on one thread in a second thread of this process while the seeker features are read and the
    two-tower (one torch thread) fits here: each uses one core; once the two-tower is done, ALS's remaining
    iterations use every core. implicit's solver runs without the GIL and gives the same factors on any
    number of threads."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    with stage(f"{item_type}/stage_one"):
        weights = cfg.event_weights
        inter = world_interactions(events, item_type, until, weights)
        secs = {}
        t = time.perf_counter()
        pop = PopularityRecommender(random_state=cfg.seed).fit(inter)
        secs["popularity"] = time.perf_counter() - t
        tt_done = threading.Event()
        with ThreadPoolExecutor(1, thread_name_prefix=f"{item_type}-als") as beside:
            als = beside.submit(_fit_als, item_type, inter, cfg, secs, tt_done)
            user_ids = unique_sorted(inter["user"].to_numpy()).astype(np.int64)
            users = pd.DataFrame({"seeker_id": user_ids, "event_timestamp": until})
            with stage(f"{item_type}/stage_one/seeker_features"):
                ufeat = fstore.historical_features(store, users, "seeker_online_v1")
                items = item_side_table(item_type, item_features(repo, item_type, catalogue_at), ctx)
            t = time.perf_counter()
            with stage(f"{item_type}/stage_one/two_tower"):
                tt = TwoTowerRecommender(**cfg.two_tower.model_dump(), random_state=cfg.seed).fit(
                    inter, seeker_side_table(ufeat), items
                )
                tt.set_item_index(
                    items
                )  # every item of the catalogue, including those opened after ``until``
            secs["two_tower"] = time.perf_counter() - t
            tt_done.set()
            als = als.result()
    return StageOne(item_type, pop, als, tt, secs)


def _fit_als(item_type, inter: pd.DataFrame, cfg: CandidatesConfig, secs: dict, widen) -> ALSRecommender:
    import time

    t = time.perf_counter()
    with stage(f"{item_type}/stage_one/als"):
        als = ALSRecommender(**cfg.als.model_dump(), random_state=cfg.seed, num_threads=1)
        als.fit(inter, widen=widen)
    secs["als"] = time.perf_counter() - t
    return als


def build_queries(t: dict, item_type: str, start: pd.Timestamp, max_queries: int, rng) -> pd.DataFrame:
    """Sessions after ``start`` with at least one action: seeker, session time, acted items."""
    ev = t["events"]
    acts = ev[(ev["item_type"] == item_type) & (ev["event_type"] == ACTION[item_type]) & (ev["ts"] >= start)]
    q = (
        acts.groupby("session_id")
        .agg(seeker_id=("seeker_id", "first"), relevant=("item_id", list))
        .reset_index()
    )
    q = q.merge(t["sessions"][["session_id", "ts"]], on="session_id").rename(
        columns={"ts": "event_timestamp"}
    )
    if len(q) > max_queries:
        q = q.iloc[np.sort(rng.choice(len(q), max_queries, replace=False))]
    return q.sort_values("event_timestamp", kind="stable").reset_index(drop=True)


def union_at(lists: dict[str, np.ndarray], quotas: dict[str, int], k: int, n: int) -> np.ndarray:
    """The union cut to ``k`` candidates, with each source's quota scaled by k / n (a candidate set of
    size k, not the first k of a larger set)."""
    scaled = {name: max(1, round(q * k / n)) for name, q in quotas.items()}
    return union({name: lists[name] for name in quotas}, scaled, k)[0]


def evaluate_item_type(
    item_type: str,
    t: dict,
    oracle,  # None: no oracle row (a world or log export without truth)
    store,
    repo: Path,
    ctx: PairContext,
    cfg: CandidatesConfig,
    T: pd.Timestamp,
    end: pd.Timestamp,
    show_progress: bool = True,
) -> tuple[list[dict], StageOne]:
    rng = np.random.default_rng(cfg.seed)
    stage = fit_stage_one(item_type, t["events"], T, store, repo, ctx, cfg, end)
    q = build_queries(t, item_type, T, cfg.max_queries, rng)
    qfeat = fstore.historical_features(store, q[["seeker_id", "event_timestamp"]], "seeker_online_v1")
    user_emb = stage.two_tower.embed_users(seeker_side_table(qfeat))
    offers = OfferIndex(t, item_type)
    weights = cfg.event_weights
    replay = ReplayDays(repo, item_type, ctx, stage)
    hits = {s: {seg: {k: [] for k in KS} for seg in SEGMENTS} for s in SOURCES}
    K = cfg.n_candidates
    for i in tqdm(range(len(q)), desc=f"replay {item_type} requests", disable=not show_progress):
        s, ts, relevant = int(q.at[i, "seeker_id"]), q.at[i, "event_timestamp"], set(q.at[i, "relevant"])
        req = replay.request(offers, qfeat.iloc[i], s, ts, user_emb[i], weights, T, K)
        allowed = req.items.keys[req.mask]
        rel = relevant & set(allowed.tolist())
        if not rel:
            continue
        lists = req.key_lists()
        unions = {k: union_at(lists, cfg.quotas, k, K) for k in KS}
        if oracle is not None:
            lists["oracle"] = oracle.rank(item_type, s, ts, k=K, items=allowed)[0]
        warm = stage.als.users_.index([s])[0] >= 0
        new_rel = {r for r in rel if stage.als.items_.index([r])[0] < 0}
        for src, lst in [*lists.items(), ("union", None)]:
            for k in KS:
                top = set(np.asarray(unions[k] if src == "union" else lst[:k]).tolist())
                hits[src]["all"][k].append(len(rel & top) / len(rel))
                hits[src]["warm" if warm else "cold"][k].append(len(rel & top) / len(rel))
                if new_rel:
                    hits[src]["new_items"][k].append(len(new_rel & top) / len(new_rel))
    rows = []
    for src in SOURCES:
        for seg in SEGMENTS:
            n = len(hits[src][seg][KS[0]])
            rows.append(
                {
                    "item_type": item_type,
                    "source": src,
                    "segment": seg,
                    "n_requests": n,
                    **{
                        f"recall_at_{k}": (round(float(np.mean(hits[src][seg][k])), 4) if n else None)
                        for k in KS
                    },
                }
            )
    return rows, stage


def evaluate_candidates(
    world: str | Path, repo: str | Path, cfg: CandidatesConfig, show_progress: bool = True, oracle=None
) -> dict:
    """Run the stage-one evaluation for every configured item type; return rows and fit times. ``oracle``
    (evaluation code passes it in for a simulated world) adds the oracle's row."""
    span = read_manifest(world)["span"]
    end = pd.Timestamp(span["end"])
    T = end - pd.Timedelta(days=cfg.eval_days)
    t = read_tables(world, ["events", "sessions", "postings", "courses", "competency_units"])
    store = fstore.open_store(repo)
    ctx = context(Path(repo), len(t["competency_units"]))
    rows, fit_seconds = [], {}
    for it in cfg.item_types:
        r, stage = evaluate_item_type(it, t, oracle, store, Path(repo), ctx, cfg, T, end, show_progress)
        rows += r
        fit_seconds[it] = {k: round(v, 2) for k, v in stage.fit_seconds.items()}
    return {"split": str(T), "end": str(end), "rows": rows, "fit_seconds": fit_seconds}
