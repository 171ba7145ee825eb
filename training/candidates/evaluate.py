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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from features import store as fstore
from features.item_index import item_features
from features.pairs import PairContext
from jobcare.config import CandidatesConfig
from jobcare.world.io import read_manifest, read_tables
from training.candidates.als import ALSRecommender
from training.candidates.base import top_k
from training.candidates.popularity import PopularityRecommender
from training.candidates.rules import rule_scores
from training.candidates.two_tower import TwoTowerRecommender
from training.candidates.union import union
from training.candidates.world import ACTION, ITEM_KEY, item_side_table, open_mask, seeker_side_table
from training.interactions import world_interactions

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


def context(repo: Path, n_units: int) -> PairContext:
    return PairContext.from_occupation_profile(
        pd.read_parquet(Path(repo) / "data" / "occupation_profile.parquet"), n_units
    )


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
    """Fit popularity, ALS and two-tower on the events of ``item_type`` before ``until``."""
    import time

    weights = cfg.event_weights
    inter = world_interactions(events, item_type, until, weights)
    secs = {}
    t = time.perf_counter()
    pop = PopularityRecommender(random_state=cfg.seed).fit(inter)
    secs["popularity"] = time.perf_counter() - t
    t = time.perf_counter()
    als = ALSRecommender(**cfg.als.model_dump(), random_state=cfg.seed).fit(inter)
    secs["als"] = time.perf_counter() - t
    users = pd.DataFrame({"seeker_id": np.unique(inter["user"]).astype(np.int64), "event_timestamp": until})
    ufeat = fstore.historical_features(store, users, "seeker_online_v1")
    items = item_side_table(item_type, item_features(repo, item_type, catalogue_at), ctx)
    t = time.perf_counter()
    tt = TwoTowerRecommender(**cfg.two_tower.model_dump(), random_state=cfg.seed).fit(
        inter, seeker_side_table(ufeat), items
    )
    tt.set_item_index(items)  # every item of the catalogue, including those opened after ``until``
    secs["two_tower"] = time.perf_counter() - t
    return StageOne(item_type, pop, als, tt, secs)


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


class OfferIndex:
    """Per item type, what limits the offer at a moment, indexed once per replay (not per request):
    capacity events (hires fill postings, enrolments fill courses), each seeker's blocking events
    (applied, enrolled, registered or acquired) and each seeker's events for ALS history."""

    _BLOCKING = {"posting": ["apply"], "course": ["enrol"], "certificate": ["register", "acquire"]}
    _CAPACITY = {
        "posting": ("hire", "postings", "posting_id", "headcount"),
        "course": ("enrol", "courses", "course_id", "capacity"),
    }

    def __init__(self, t: dict, item_type: str):
        ev = t["events"]
        self.item_type = item_type
        self.events = ev
        self._by_seeker = ev.groupby("seeker_id").indices
        b = ev[(ev["item_type"] == item_type) & ev["event_type"].isin(self._BLOCKING[item_type])]
        self._blocked = {s: (_us(g["ts"]), g["item_id"].to_numpy()) for s, g in b.groupby("seeker_id")}
        self._cap = None
        if item_type in self._CAPACITY:
            kind, table, key, limit = self._CAPACITY[item_type]
            c = ev[(ev["item_type"] == item_type) & (ev["event_type"] == kind)].sort_values(
                "ts", kind="stable"
            )
            ids = t[table][key].to_numpy()
            self._cap = (_us(c["ts"]), c["item_id"].to_numpy(), ids, t[table][limit].to_numpy())

    def closed(self, ts: pd.Timestamp) -> np.ndarray:
        """Items full at ``ts`` (capacity events at or before ``ts``)."""
        if self._cap is None:
            return np.zeros(0, np.int64)
        cts, items, ids, limit = self._cap
        n = np.searchsorted(cts, ts.value // 1000, side="right")
        used = np.bincount(items[:n], minlength=ids.max() + 1)[ids]
        return ids[used >= limit]

    def blocked(self, seeker: int, ts: pd.Timestamp) -> np.ndarray:
        """Items the seeker already acted on before ``ts``."""
        if seeker not in self._blocked:
            return np.zeros(0, np.int64)
        bts, items = self._blocked[seeker]
        return items[bts < ts.value // 1000]

    def history(self, seeker: int, ts: pd.Timestamp, weights) -> pd.DataFrame:
        """The seeker's weighted interactions with this item type before ``ts``."""
        rows = self._by_seeker.get(seeker, np.zeros(0, np.int64))
        return world_interactions(self.events.iloc[rows], self.item_type, ts, weights)


def _us(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch (UTC)."""
    return ts.to_numpy(dtype="datetime64[us]").astype("int64")


def allowed_items(
    index: OfferIndex, seeker: int, ts: pd.Timestamp, items: pd.DataFrame, held_certificates
) -> pd.DataFrame:
    """The items the seeker may be offered at ``ts``: open (postings not yet closed or filled, courses still
    recruiting with seats), not already applied to / enrolled in, certificates not held or pending."""
    key = ITEM_KEY[index.item_type]
    items = items[open_mask(index.item_type, items, ts)]
    gone = [index.closed(ts), index.blocked(seeker, ts)]
    if index.item_type == "certificate" and held_certificates is not None:
        gone.append(np.asarray(held_certificates, dtype=np.int64))
    return items[~items[key].isin(np.concatenate(gone))].reset_index(drop=True)


def candidates_for(
    stage: StageOne,
    ctx: PairContext,
    item_type: str,
    seeker_row: pd.Series,
    ts: pd.Timestamp,
    items: pd.DataFrame,
    user_vec: np.ndarray,
    history: pd.DataFrame,
    trained_until: pd.Timestamp,
    k: int,
    open_postings: pd.DataFrame | None = None,
) -> dict[str, np.ndarray]:
    """Each source's top ``k`` of the allowed ``items`` for one request.

    ALS uses the trained factor, or one recomputed from ``history`` when the seeker acted after
    ``trained_until`` (recalculate_user); the two-tower scores the precomputed item embeddings against
    ``user_vec``; rules score the pair features of (seeker, item) at ``ts``.
    """
    key = ITEM_KEY[item_type]
    allowed = items[key].to_numpy(np.int64)
    s = int(seeker_row["seeker_id"])
    newer = bool(len(history)) and bool((history["timestamp"] >= trained_until).any())
    out = {"als": stage.als.recommend(s, k, items=allowed, history=history if newer else None)[0]}
    emb = stage.two_tower.item_embeddings_[pd.Index(stage.two_tower.item_keys_).get_indexer(allowed)]
    out["two_tower"] = top_k(allowed, emb @ user_vec, k)[0]
    out["popularity"] = stage.popularity.recommend(s, k, items=allowed)[0]
    frame = items.copy()
    for c, v in seeker_row.items():
        if "__" in c:
            frame[c] = [v] * len(frame)
    frame["event_timestamp"] = ts
    out["rules"] = top_k(
        allowed, np.asarray(rule_scores(item_type, frame, ctx, open_postings), dtype=float), k
    )[0]
    return out


def union_at(lists: dict[str, np.ndarray], quotas: dict[str, int], k: int, n: int) -> np.ndarray:
    """The union cut to ``k`` candidates, with each source's quota scaled by k / n (a candidate set of
    size k, not the first k of a larger set)."""
    scaled = {name: max(1, round(q * k / n)) for name, q in quotas.items()}
    return union({name: lists[name] for name in quotas}, scaled, k)[0]


def evaluate_item_type(
    item_type: str,
    t: dict,
    oracle,
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
    key = ITEM_KEY[item_type]
    postings_by_day: dict = {}
    items_by_day: dict = {}
    hits = {s: {seg: {k: [] for k in KS} for seg in SEGMENTS} for s in SOURCES}
    K = cfg.n_candidates
    for i in tqdm(range(len(q)), desc=f"replay {item_type} requests", disable=not show_progress):
        s, ts, relevant = int(q.at[i, "seeker_id"]), q.at[i, "event_timestamp"], set(q.at[i, "relevant"])
        day = ts.floor("D")
        if day not in items_by_day:
            items_by_day = {
                day: item_features(repo, item_type, day + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1))
            }
            if item_type == "certificate":
                postings_by_day = {
                    day: item_features(
                        repo, "posting", day + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
                    )
                }
        items = allowed_items(
            offers, s, ts, items_by_day[day], qfeat.at[i, "seeker_competency__certificate_ids"]
        )
        allowed = items[key].to_numpy(np.int64)
        rel = relevant & set(allowed.tolist())
        if not rel:
            continue
        hist = offers.history(s, ts, weights)
        op = None
        if item_type == "certificate":
            op = postings_by_day[day]
            op = op[open_mask("posting", op, ts)]
        lists = candidates_for(stage, ctx, item_type, qfeat.iloc[i], ts, items, user_emb[i], hist, T, K, op)
        unions = {k: union_at(lists, cfg.quotas, k, K) for k in KS}
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
    world: str | Path, repo: str | Path, cfg: CandidatesConfig, show_progress: bool = True
) -> dict:
    """Run the stage-one evaluation for every configured item type; return rows and fit times."""
    from jobcare.world.oracle import WorldOracle

    span = read_manifest(world)["span"]
    end = pd.Timestamp(span["end"])
    T = end - pd.Timedelta(days=cfg.eval_days)
    t = read_tables(world, ["events", "sessions", "postings", "courses", "competency_units"])
    oracle = WorldOracle(world)
    store = fstore.open_store(repo)
    ctx = context(Path(repo), len(t["competency_units"]))
    rows, fit_seconds = [], {}
    for it in cfg.item_types:
        r, stage = evaluate_item_type(it, t, oracle, store, Path(repo), ctx, cfg, T, end, show_progress)
        rows += r
        fit_seconds[it] = {k: round(v, 2) for k, v in stage.fit_seconds.items()}
    return {"split": str(T), "end": str(end), "rows": rows, "fit_seconds": fit_seconds}
