"""Stage two on three time windows (:mod:`training.windows`): build ranker rows from replayed requests,
fit LambdaRank on the train window, evaluate on validation, report on test.

Stage one is fitted on the events before each window's start, so every candidate list is what the
system could have produced at that time; a window's labels come from events inside it. NDCG@10 per
request, graded labels; the same rows are also ordered by each stage-one source alone and, when an
oracle is given (evaluation only), by the world's true expected utility.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from evaluation.metrics import ndcg_at_k
from evaluation.stats import ratio_ci
from features import store as fstore
from jobcare.config import CandidatesConfig
from jobcare.errors import JobcareError
from jobcare.stages import stage as timed
from training.candidates.evaluate import StageOne, fit_stage_one, union_at
from training.candidates.world import ITEM_KEY, seeker_side_table
from training.offers import OfferIndex
from training.ranker import LambdaRankRanker
from training.ranking_data import request_columns, session_labels
from training.request_path import RankerPlan, ReplayDays, acted_since, default_features, occupation_columns

log = logging.getLogger(__name__)


class NoRequestsError(JobcareError):
    """A window holds no request to replay (e.g. a world logged without explore slates)."""


@dataclass
class RankerData:
    rows: pd.DataFrame
    requests: pd.DataFrame
    stage: StageOne
    # per request: (seeker, allowed item ids, history or None when the trained factor was used), so that
    # ``cand_rank_als`` can be recomputed for another ALS (``jobcare tune`` searches ALS parameters)
    als_inputs: list = field(default_factory=list)
    # the ranker's inputs, listed explicitly (training.request_path.default_features: the seeker's scalar
    # FeatureService columns, the item and occupation features, the pair features, each source's rank;
    # no ids, lists, absolute moments or protected attributes), never chosen by dtype
    features: list = field(default_factory=list)
    # the Dask engine only (training.distributed): the same rows as futures on the workers, one pandas
    # partition per seeker-hash bucket, each holding whole requests sorted by (request_id, item_id)
    parts: list = field(default_factory=list)


@dataclass
class RequestBatch:
    """The requests of a window, chosen on one node, with what replaying each of them needs.

    Any subset (:meth:`take`) replays to the same rows as in the whole batch: each request draws its
    sampled negatives from its own generator, seeded by (seed, session id), so the rows do not depend on
    how the requests are partitioned."""

    requests: pd.DataFrame  # request_id, session_id, seeker_id, event_timestamp, policy
    seeker_features: pd.DataFrame  # the seeker's point-in-time features, one row per request
    user_emb: np.ndarray  # the two-tower's seeker embedding, one row per request
    shown: dict  # session id -> the shown item ids in display order
    labels: dict  # session id -> {item id: label}
    seeker_columns: list

    def take(self, positions: np.ndarray) -> RequestBatch:
        """The requests at ``positions`` (their request ids unchanged)."""
        req = self.requests.iloc[positions].reset_index(drop=True)
        sids = set(req["session_id"].tolist())
        return RequestBatch(
            req,
            self.seeker_features.iloc[positions].reset_index(drop=True),
            self.user_emb[positions],
            {s: v for s, v in self.shown.items() if s in sids},
            {s: v for s, v in self.labels.items() if s in sids},
            self.seeker_columns,
        )


@dataclass
class ReplayedRows:
    """The rows of some requests of a window (:func:`replay_requests`)."""

    rows: pd.DataFrame | None  # sorted by (request_id, item_id); None when no request kept a row
    als_inputs: dict  # request id -> (seeker, allowed item ids, history or None)
    features: list


def build_rows(
    item_type: str,
    t: dict,
    store,
    repo: Path,
    ctx,
    cfg: CandidatesConfig,
    start: pd.Timestamp,
    end: pd.Timestamp,
    max_requests: int,
    negatives: int,
    seed: int,
    show_progress: bool = False,
    policy: str | None = None,
    positive_only: bool | None = None,
    stage: StageOne | None = None,
    workers: int = 1,
) -> RankerData:
    """Replay the sessions of ``item_type`` in [start, end) with a stage one fitted before ``start``
    (or the given ``stage``, fitted so); ``workers`` > 1 replays them in that many forked processes
    (:func:`replay_forked`: the same rows).

    By default only sessions with a positive outcome (what the ranker learns from); with ``policy`` set
    ("explore"), only that logging policy's sessions, by default outcome or not (the off-policy
    estimates need the sessions without an apply too; ``positive_only=True`` keeps those with one).
    The Dask engine (:mod:`training.distributed`) runs the same two steps, :func:`select_requests` here
    and :func:`replay_requests` on its workers, one partition of the requests each.
    """
    if stage is None:  # timed on its own (``{item_type}/stage_one``), not as part of the rows
        stage = fit_stage_one(item_type, t["events"], start, store, repo, ctx, cfg, end)
    with timed(f"{item_type}/{'explore_rows' if policy == 'explore' else 'ranker_rows'}"):
        stage, batch, positive_only = prepare_requests(
            item_type, t, store, repo, ctx, cfg, start, end, max_requests, seed, policy, positive_only, stage
        )
        # indexed once here, before the fork (the workers inherit it), not once per run of requests: at
        # national scale one posting index takes ~7 s and a window has 4 runs per worker
        offers = OfferIndex(t, item_type)
        args = (item_type, t, repo, ctx, cfg, batch, stage, start, negatives, seed, positive_only)
        if workers > 1 and len(batch.requests) > 1:
            outs = replay_forked(args, workers, offers=offers)
        else:
            outs = [replay_requests(*args, show_progress, offers=offers)]
        return ranker_data(item_type, outs, batch.requests, stage)


def prepare_requests(
    item_type, t, store, repo, ctx, cfg, start, end, max_requests, seed, policy, positive_only, stage
) -> tuple[StageOne, RequestBatch, bool]:
    """What both engines do on the driver before the replay: the default of ``positive_only``, stage one
    (fitted before ``start`` unless given: ALS stays on one machine) and the window's requests.
    Returns (stage, batch, positive_only)."""
    if positive_only is None:
        positive_only = policy is None
    if stage is None:
        stage = fit_stage_one(item_type, t["events"], start, store, repo, ctx, cfg, end)
    batch = select_requests(item_type, t, store, stage, start, end, max_requests, seed, policy, positive_only)
    return stage, batch, positive_only


LOG_TABLES = ("events", "sessions", "postings", "courses", "competency_units")
# all the replay reads of the impressions: the shown items in order
REPLAY_IMPRESSION_COLUMNS = ["session_id", "position", "item_id"]


def read_logs(world) -> dict:
    """The tables stage two reads (``jobcare train`` and ``jobcare tune``), the impressions with only
    :data:`REPLAY_IMPRESSION_COLUMNS` (3 of 8 columns: the national world has 50M impressions)."""
    from jobcare.world.io import read_table, read_tables

    t = read_tables(world, list(LOG_TABLES))
    t["impressions"] = read_table(world, "impressions", columns=REPLAY_IMPRESSION_COLUMNS)
    return t


def select_requests(
    item_type: str,
    t: dict,
    store,
    stage: StageOne,
    start: pd.Timestamp,
    end: pd.Timestamp,
    max_requests: int,
    seed: int,
    policy: str | None,
    positive_only: bool,
) -> RequestBatch:
    """The window's requests (a seeded sample of at most ``max_requests`` sessions), their labels, shown
    items, point-in-time seeker features and two-tower embeddings (:func:`build_rows` for the filters)."""
    rng = np.random.default_rng(seed)
    sess = t["sessions"]
    sess = sess[(sess["item_type"] == item_type) & (sess["ts"] >= start) & (sess["ts"] < end)]
    labels = session_labels(t, item_type, sess["session_id"], until=end)
    if policy is not None:
        sess = sess[sess["policy"] == policy]
    if positive_only:
        sess = sess[sess["session_id"].isin(labels.loc[labels["label"] > 0, "session_id"].unique())]
    if sess.empty:
        what = f"{policy} " if policy else ""
        raise NoRequestsError(
            f"no {what}{item_type} request{' with an outcome' if positive_only else ''} in [{start}, {end})"
        )
    if len(sess) > max_requests:
        sess = sess.iloc[np.sort(rng.choice(len(sess), max_requests, replace=False))]
    requests = pd.DataFrame(
        {
            "request_id": np.arange(len(sess)),
            "session_id": sess["session_id"].to_numpy(),
            "seeker_id": sess["seeker_id"].to_numpy(np.int64),
            "event_timestamp": sess["ts"].to_numpy(),
            "policy": sess["policy"].to_numpy(),
        }
    )
    qfeat = fstore.historical_features(store, requests[["seeker_id", "event_timestamp"]], "seeker_online_v1")
    user_emb = stage.two_tower.embed_users(seeker_side_table(qfeat))
    imp = t["impressions"]
    shown_by = (
        imp[imp["session_id"].isin(requests["session_id"])]
        .sort_values(["session_id", "position"])
        .groupby("session_id")["item_id"]
        .apply(np.asarray)
    )
    labels = labels[labels["session_id"].isin(requests["session_id"])]
    lab_by = {sid: dict(zip(g["item_id"], g["label"])) for sid, g in labels.groupby("session_id")}
    seeker_columns = fstore.scalar_columns(store.get_feature_service("seeker_online_v1"))
    return RequestBatch(requests, qfeat, user_emb, shown_by.to_dict(), lab_by, seeker_columns)


def replay_requests(
    item_type: str,
    t: dict,
    repo: Path,
    ctx,
    cfg: CandidatesConfig,
    batch: RequestBatch,
    stage: StageOne,
    start: pd.Timestamp,
    negatives: int,
    seed: int,
    positive_only: bool,
    show_progress: bool = False,
    offers: OfferIndex | None = None,
) -> ReplayedRows:
    """Replay ``batch``'s requests through the request path (the code the service runs): each request's
    candidates, its shown items and sampled negatives, labels and features. ``offers``: the item type's
    :class:`OfferIndex` of ``t`` when the caller has it (default: indexed here)."""
    requests, qfeat, user_emb = batch.requests, batch.seeker_features, batch.user_emb
    offers = OfferIndex(t, item_type) if offers is None else offers
    replay = ReplayDays(repo, item_type, ctx, stage)
    seeker_columns = batch.seeker_columns
    occ_columns = occupation_columns(repo) if item_type == "posting" else None
    plan = None  # the rows' feature columns: every input a ranker may use (the same every day)
    features: list = []
    columns: dict[str, list] = {}  # each request's columns, joined once at the end
    blocks, als_inputs = [], {}
    # per request below: plain Python values and dicts, read once here (a pandas row per request costs more)
    keys = zip(*(requests[c].tolist() for c in ("request_id", "seeker_id", "event_timestamp", "session_id")))
    seeker_rows = qfeat.to_dict("records")
    for i, (rid, s, ts, sid) in enumerate(
        tqdm(keys, total=len(requests), desc=f"{item_type} requests", disable=not show_progress)
    ):
        req = replay.request(
            offers,
            seeker_rows[i],
            s,
            ts,
            user_emb[i],
            cfg.event_weights,
            start,
            cfg.n_candidates,
            tuple(cfg.quotas),
        )
        items, hist, mask = req.items, req.history, req.mask
        lists = req.key_lists()
        als_inputs[rid] = (s, items.keys[mask], hist if acted_since(hist, start) else None)
        cols = request_columns(
            rid,
            sid,
            lists,
            batch.shown.get(sid, np.zeros(0, np.int64)),
            batch.labels.get(sid, {}),
            cfg.n_candidates,
            negatives,
            np.random.default_rng((seed, int(sid))),  # per request: any partition draws the same negatives
            require_positive=positive_only,
        )
        if cols is None:
            continue
        # bookkeeping for val_recall_at_100: is the item in the 100-candidate union?
        cols["in_union_100"] = np.isin(cols["item_id"], union_at(lists, cfg.quotas, 100, cfg.n_candidates))
        if plan is None:
            names = default_features(item_type, seeker_columns, items, occ_columns, (), absolute_time=True)
            plan = RankerPlan(item_type, names, seeker_columns, items, occ_columns)
            features = default_features(item_type, seeker_columns, items, occ_columns, tuple(lists))
        pos = items.positions(cols["item_id"])
        if (pos < 0).any():
            raise JobcareError(
                f"{item_type} request {rid}: items {cols['item_id'][pos < 0].tolist()[:5]} have no features "
                f"on {ts.date()} (rule: a shown or candidate item exists at the request)"
            )
        cols["seeker_id"] = np.full(pos.size, s, np.int64)
        cols["occupation_id"] = items.occ[pos]
        for name, values in cols.items():
            columns.setdefault(name, []).append(values)
        blocks.append(plan.matrix(req.seeker, items, pos, req.now, ctx, occ_feats=req.occ_feats))
    if not blocks:
        return ReplayedRows(None, als_inputs, features)
    ids = ["seeker_id", "occupation_id"]  # after the features, as the rows have always had them
    meta = {name: np.concatenate(v) for name, v in columns.items() if name not in ids}
    rows = pd.concat(
        [
            pd.DataFrame(meta),
            pd.DataFrame(np.concatenate(blocks), columns=plan.features),
            pd.DataFrame({name: np.concatenate(columns[name]) for name in ids}),
        ],
        axis=1,
    )
    rows[ITEM_KEY[item_type]] = rows["item_id"]
    return ReplayedRows(sort_rows(rows), als_inputs, features)


# what the forked replay workers read, (args, OfferIndex): set in the parent right before they are forked
# (inherited, never pickled: the national world's events alone are ~16M rows)
_FORKED: tuple | None = None


def replay_forked(
    args: tuple, workers: int, *, offers: OfferIndex, chunks_per_worker: int = 4
) -> list[ReplayedRows]:
    """:func:`replay_requests` of ``args`` (its positional arguments) in ``workers`` forked processes, the
    window's requests cut into ``workers * chunks_per_worker`` runs of consecutive requests (in time order,
    so that each run compiles only its own days' items), handed out as workers free up.

    The rows are those of one process (:class:`RequestBatch`: any subset replays to the same rows;
    :func:`ranker_data` sorts them): the replay is single-threaded Python, and this uses the other cores.
    The children inherit the parent's memory (copy-on-write) instead of loading the world again, and
    ``offers`` (the window's :class:`OfferIndex`, built once in the parent) instead of indexing it per
    run; they run with one thread per native library, because libgomp (implicit, torch) hangs in a
    forked child whose parent already used its thread pool.

    Raises:
        ReplayWorkerError: a worker died (killed, out of memory) before returning its rows.
    """
    global _FORKED
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    batch = args[5]
    n = len(batch.requests)
    bounds = np.linspace(0, n, min(n, workers * chunks_per_worker) + 1).astype(np.int64)
    _FORKED = (args, offers)
    try:
        with ProcessPoolExecutor(
            workers, mp_context=mp.get_context("fork"), initializer=_forked_init
        ) as pool:
            futures = [pool.submit(_forked_replay, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
            return [f.result() for f in futures]
    except BrokenProcessPool as e:
        raise ReplayWorkerError(
            f"{args[0]} rows: a replay worker process died ({e}); nothing was kept (rerun with "
            "train.replay_workers: 1 to replay in this process, or free memory)"
        ) from None
    finally:
        _FORKED = None


class ReplayWorkerError(JobcareError):
    """A forked replay worker died before returning its rows."""


def _forked_init() -> None:
    """One thread per native library in a forked replay worker (libgomp's pool does not survive a fork)."""
    import sys

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    stage = _FORKED[0][6]
    model = getattr(getattr(stage, "als", None), "model_", None)
    if model is not None and hasattr(model, "num_threads"):
        model.num_threads = 1  # implicit's recalculate_user passes its own OpenMP thread count


def _forked_replay(lo: int, hi: int) -> ReplayedRows:
    (item_type, t, repo, ctx, cfg, batch, stage, start, negatives, seed, positive_only), offers = _FORKED
    part = batch.take(np.arange(lo, hi))
    return replay_requests(
        item_type, t, repo, ctx, cfg, part, stage, start, negatives, seed, positive_only, offers=offers
    )


def sort_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows in (request_id, item_id) order: each request's rows contiguous, as LightGBM's groups need."""
    return rows.sort_values(["request_id", "item_id"], kind="stable").reset_index(drop=True)


def ranker_data(
    item_type: str,
    outs: list[ReplayedRows],
    requests: pd.DataFrame,
    stage: StageOne,
    parts: list | None = None,
) -> RankerData:
    """The :class:`RankerData` of the replayed partitions ``outs`` of one window's ``requests``."""
    kept = [o for o in outs if o.rows is not None]
    if not kept:
        raise NoRequestsError(f"no {item_type} request of {len(requests)} kept a row (none had a positive)")
    features = kept[0].features
    if any(o.features != features for o in kept):
        raise JobcareError(
            f"{item_type}: partitions disagree on the ranker's features (rule: one feature list)"
        )
    als = {rid: v for o in outs for rid, v in o.als_inputs.items()}
    als_inputs = [als[rid] for rid in requests["request_id"]]
    rows = sort_rows(pd.concat([o.rows for o in kept], ignore_index=True))
    return RankerData(rows, requests, stage, als_inputs, features, list(parts or []))


def als_ranks(data: RankerData, als, n_candidates: int) -> np.ndarray:
    """``cand_rank_als`` of ``data.rows`` recomputed with another fitted ALS (same requests, same rows)."""
    out = np.empty(len(data.rows), np.int64)
    items = data.rows["item_id"].to_numpy()
    for rid, idx in data.rows.groupby("request_id", sort=True).indices.items():
        s, allowed, hist = data.als_inputs[rid]
        top = als.recommend(s, n_candidates, items=allowed, history=hist)[0]
        rank = pd.Series(np.arange(1, top.size + 1), index=top)
        out[idx] = rank.reindex(items[idx]).fillna(n_candidates + 1).to_numpy(np.int64)
    return out


def group_sizes(rows: pd.DataFrame) -> np.ndarray:
    return rows.groupby("request_id", sort=True).size().to_numpy()


def ndcg_by_request(rows: pd.DataFrame, score: np.ndarray, k: int = 10) -> pd.Series:
    """NDCG@k of ordering each request's rows by ``score`` (descending) against their labels."""
    df = pd.DataFrame(
        {"request_id": rows["request_id"].to_numpy(), "label": rows["label"].to_numpy(), "s": score}
    )
    out = {}
    for rid, g in df.groupby("request_id", sort=True):
        order = np.argsort(-g["s"].to_numpy(), kind="stable")
        out[rid] = ndcg_at_k(g["label"].to_numpy()[order], k, g["label"].to_numpy())
    return pd.Series(out)


def oracle_requests(rows: pd.DataFrame, requests: pd.DataFrame, oracle):
    """Per request of ``rows``: (its rows' positions, the seeker's ids repeated, the items, the seeker's
    competency state at the request's moment), for evaluation code that asks the oracle about rows."""
    req = requests.set_index("request_id")
    item_ids = rows["item_id"].to_numpy()
    for rid, idx in rows.groupby("request_id").indices.items():
        s, ts = int(req.at[rid, "seeker_id"]), req.at[rid, "event_timestamp"]
        yield idx, np.full(idx.size, s), item_ids[idx], oracle.seeker_state(s, ts)


def oracle_scores(
    rows: pd.DataFrame, requests: pd.DataFrame, item_type: str, oracle, part: int = 0
) -> np.ndarray:
    """The oracle's expected utility of each row (``part`` 1: its observable part only, what a model of
    the observable features could at best learn)."""
    out = np.empty(len(rows))
    for idx, seekers, items, state in oracle_requests(rows, requests, oracle):
        out[idx] = oracle.arrays.mu(oracle.params, item_type, seekers, items, state)[part]
    return out


SOURCE_BASELINES = ("als", "two_tower", "rules", "popularity")  # each stage-one source alone, by its rank
# the ranker without collaborative features: stage-one ranks and the item statistics counted from other
# seekers' behaviour are left out; a GBDT on profile, psych-test, competency, item and pair features only
CONTENT = "content_gbdt"
BASELINES = (*SOURCE_BASELINES, CONTENT, "legacy")
# the single-signal baselines the "best baseline" is chosen from (on validation): one stage-one source or
# the legacy rule; the content GBDT is a two-stage model itself (the ablation without collaborative
# features) and is reported with its own ratio, ``ratio_to_content_gbdt``
SINGLE_BASELINES = (*SOURCE_BASELINES, "legacy")
# the logging (legacy) policy's documented rule (jobcare.world.simulate): desired occupation 2, same
# occupation group 1, same region 1, and a popularity term below 1
LEGACY_RULE = {"desired_occupation_match": 2.0, "desired_group_match": 1.0, "same_region": 1.0}


def legacy_scores(rows: pd.DataFrame) -> np.ndarray:
    """The legacy policy re-scored from the rows' pair features by its rule, its popularity term
    pop / (1 + pop) stood in for by 1 / (1 + the stage-one popularity rank) (also below 1). Approximate:
    the simulator's group term uses the first desired occupation's group, ours any desired one's."""
    sc = np.zeros(len(rows))
    for col, w in LEGACY_RULE.items():
        if col in rows:
            sc += w * rows[col].fillna(0).to_numpy(float)
    if "cand_rank_popularity" in rows:
        sc += 1.0 / (1.0 + rows["cand_rank_popularity"].to_numpy(float))
    return sc


COLLABORATIVE = ("cand_rank_", "posting_popularity__", "completion_rate", "employment_rate", "pass_rate")


def content_features(feats: list[str]) -> list[str]:
    """``feats`` without the collaborative ones (:data:`COLLABORATIVE`)."""
    return [f for f in feats if not any(mark in f for mark in COLLABORATIVE)]


def explore_rows(
    item_type, t, store, repo, ctx, cfg, start, end, max_requests, seed, show_progress, stage, workers=1
):
    """The window's explore slates with an outcome, replayed with ``stage`` (None when there are none)."""
    try:
        return build_rows(
            item_type,
            t,
            store,
            repo,
            ctx,
            cfg,
            start,
            end,
            max_requests,
            0,
            seed,
            show_progress,
            policy="explore",
            positive_only=True,
            stage=stage,
            workers=workers,
        )
    except NoRequestsError:
        return None


def explore_ndcg(
    data: RankerData | None, ranker, feats, item_type: str, oracle=None, content=None, X=None
) -> pd.DataFrame:
    """Per explore request with an outcome (rows: request_id): NDCG@10 of ordering the ten shown items by
    the ranker (``model``), by each stage-one source alone, by the ``content`` ranker (without
    collaborative features), by the legacy policy's rule and, with an ``oracle``, by the true expected
    utility; plus the request's ``seeker_id``. ``X``: the ranker's inputs aligned with ``data.rows`` when
    they differ from the rows' own columns (``jobcare tune`` swaps ``cand_rank_als``)."""
    if data is None:
        return pd.DataFrame()
    shown = (data.rows["shown"] == 1).to_numpy()
    ex = data.rows[shown]
    has_pos = ex.groupby("request_id")["label"].max() > 0
    scores = {"model": ranker.predict((ex if X is None else X[shown])[feats])}
    scores.update(
        {b: -ex[f"cand_rank_{b}"].to_numpy(float) for b in SOURCE_BASELINES if f"cand_rank_{b}" in ex}
    )
    if content is not None:
        scores[CONTENT] = content.predict(ex[content.feature_names_])
    scores["legacy"] = legacy_scores(ex)
    if oracle is not None:
        scores["oracle"] = oracle_scores(ex, data.requests, item_type, oracle)
        scores["observable_oracle"] = oracle_scores(ex, data.requests, item_type, oracle, part=1)
    out = pd.DataFrame({k: ndcg_by_request(ex, sc) for k, sc in scores.items()})
    out = out[has_pos.reindex(out.index).to_numpy()]
    seeker = data.requests.set_index("request_id")["seeker_id"]
    return out.assign(seeker_id=seeker.reindex(out.index).to_numpy())


def explore_metrics(prefix: str, per: pd.DataFrame, best_baseline: str | None, seed: int) -> dict:
    """``{prefix}_explore_*`` metrics of a window: NDCG@10 of the model, each baseline and the oracle, and
    the model's ratio to the oracle, to ``best_baseline`` (the single-signal baseline best on validation)
    and to the content GBDT, with 95% intervals."""
    m = {f"{prefix}_explore_requests": int(len(per))}
    if len(per) < 2:
        return m
    m[f"{prefix}_explore_ndcg_at_10"] = float(per["model"].mean())
    for b in [*BASELINES, "oracle", "observable_oracle"]:
        if b in per:
            m[f"{prefix}_explore_{b}_ndcg_at_10"] = float(per[b].mean())
    dens = {"oracle": "oracle", "best_baseline": best_baseline, CONTENT: CONTENT}
    for name, col in dens.items():
        if col in per and per[col].mean() > 0:
            r, lo, hi = ratio_ci(per["model"], per[col], seed=seed)
            m.update(
                {
                    f"{prefix}_explore_ratio_to_{name}": r,
                    f"{prefix}_explore_ratio_to_{name}_ci_low": lo,
                    f"{prefix}_explore_ratio_to_{name}_ci_high": hi,
                }
            )
    if best_baseline in per:
        m[f"{prefix}_explore_best_baseline_ndcg_at_10"] = float(per[best_baseline].mean())
    return m


def fit_ranker(
    ranker_params: dict,
    seed: int,
    data: RankerData,
    feats: list[str],
    shuffle_labels: bool = False,
    eval_data: RankerData | None = None,
    engine=None,
) -> LambdaRankRanker:
    """A LambdaRank ranker on ``data``'s rows and ``feats``, fitted here or by ``engine`` (the Dask engine
    returns the same kind of object). ``shuffle_labels``: a deliberately worse model (the gate's test);
    ``eval_data``: rows whose NDCG is recorded per iteration (local fits only)."""
    if engine is not None:
        return engine.fit_ranker(ranker_params, seed, data, feats, shuffle_labels)
    labels = data.rows["label"].to_numpy()
    if shuffle_labels:
        labels = np.random.default_rng(seed).permutation(labels)
    eval_set = None
    if eval_data is not None:
        ev = eval_data.rows
        eval_set = (ev[feats], ev["label"], group_sizes(ev))
    return LambdaRankRanker(**ranker_params, random_state=seed).fit(
        data.rows[feats],
        labels,
        group_sizes(data.rows),
        eval_set=eval_set,
        position=data.rows["shown_position"].to_numpy(),
    )


def stack_windows(a: RankerData, b: RankerData, engine=None) -> RankerData:
    """``a``'s rows then ``b``'s, ``b``'s request ids shifted past ``a``'s (the final model's rows); with
    the Dask engine also its partitions, stacked on the workers."""
    offset = len(a.requests)
    rows = pd.concat([a.rows, b.rows.assign(request_id=b.rows["request_id"] + offset)], ignore_index=True)
    requests = pd.concat([a.requests, b.requests.assign(request_id=b.requests["request_id"] + offset)])
    parts = engine.stack_parts(a.parts, b.parts, offset) if engine is not None else []
    return RankerData(
        rows, requests.reset_index(drop=True), None, a.als_inputs + b.als_inputs, a.features, parts
    )


def fit_and_evaluate(
    item_type: str,
    t: dict,
    store,
    repo: Path,
    ctx,
    cfg: CandidatesConfig,
    ranker_params: dict,
    windows,
    max_requests: int,
    negatives: int,
    seed: int,
    show_progress: bool = False,
    shuffle_labels: bool = False,
    max_explore_requests: int = 1000,
    oracle=None,
    engine=None,
    replay_workers: int = 1,
) -> dict:
    """Train the ranker on the train window, evaluate on validation, report on test
    (:class:`training.windows.Windows`); return the model, data and metrics.

    Two protocols: "logged" (``val_ndcg_at_10``: a sample of the window's requests with an outcome, the
    shown items plus sampled candidates, labelled by what happened under the logging policy; it rewards
    imitating that policy) and "explore" (``{val,test}_explore_*``: every request of the window's uniformly
    random explore slates with an outcome, up to ``max_explore_requests``, each model ordering the ten
    shown items; free of the logging policy's position bias). The best single stage-one source is chosen
    on validation's explore slates and reported on test's. ``oracle`` (evaluation only: an object that
    reads the world's truth) adds the oracle's NDCG and the ratios to it; the model path never needs it.
    ``engine``: None (this process) or a :class:`training.distributed.DaskEngine`, which builds the train
    and validation rows on its workers and fits the rankers with ``lightgbm.dask``; the explore slates
    (evaluation only) and stage one stay here. ``replay_workers``: forked processes replaying the requests
    (local engine; :func:`replay_forked`)."""
    w = windows
    if engine is None:
        rows_of = partial(build_rows, workers=replay_workers)
    else:
        rows_of = engine.build_rows  # the Dask engine: rows on its workers
    train = rows_of(
        item_type,
        t,
        store,
        repo,
        ctx,
        cfg,
        w.train_start,
        w.valid_start,
        max_requests,
        negatives,
        seed,
        show_progress,
    )
    valid = rows_of(
        item_type,
        t,
        store,
        repo,
        ctx,
        cfg,
        w.valid_start,
        w.test_start,
        max_requests,
        negatives,
        seed + 1,
        show_progress,
    )
    feats = train.features
    fit_stage, eval_stage = f"{item_type}/ranker_fit", f"{item_type}/evaluation"
    with timed(fit_stage):
        ranker = fit_ranker(ranker_params, seed, train, feats, shuffle_labels, eval_data=valid, engine=engine)
    v = valid.rows
    with timed(eval_stage):
        nd = ndcg_by_request(v, ranker.predict(v[feats]))
        nd_als = ndcg_by_request(v, -v["cand_rank_als"].to_numpy(float))
        nd_oracle = None
        if oracle:
            nd_oracle = ndcg_by_request(v, oracle_scores(v, valid.requests, item_type, oracle))
        req = valid.requests.set_index("request_id")
        cold = ~pd.Series(valid.stage.als.users_.index(req["seeker_id"].to_numpy()) >= 0, index=req.index)
        cold = cold.reindex(nd.index)
    args = (item_type, t, store, repo, ctx, cfg)
    ex_workers = replay_workers if engine is None else 1
    val_ex = explore_rows(
        *args,
        w.valid_start,
        w.test_start,
        max_explore_requests,
        seed + 2,
        show_progress,
        valid.stage,
        ex_workers,
    )
    cfeats = content_features(feats)
    with timed(fit_stage):
        content = fit_ranker(ranker_params, seed, train, cfeats, shuffle_labels, engine=engine)
    with timed(eval_stage):
        val_per = explore_ndcg(val_ex, ranker, feats, item_type, oracle, content)
    best = max((b for b in SINGLE_BASELINES if b in val_per), key=lambda b: val_per[b].mean(), default=None)
    # the shipped recipe: the same settings refitted on train + validation rows (what a model trained at
    # T1 would be); the test window, with its own stage one (fitted on the events before T1), reports it
    # once and is never chosen on
    both = stack_windows(train, valid, engine)
    with timed(fit_stage):
        final = fit_ranker(ranker_params, seed, both, feats, shuffle_labels, engine=engine)
    test_ex = explore_rows(
        *args, w.test_start, w.end, max_explore_requests, seed + 3, show_progress, None, ex_workers
    )
    with timed(fit_stage):
        final_content = fit_ranker(ranker_params, seed, both, cfeats, shuffle_labels, engine=engine)
    with timed(eval_stage):
        test_per = explore_ndcg(test_ex, final, feats, item_type, oracle, final_content)
    metrics = {
        **explore_metrics("val", val_per, best, seed),
        **explore_metrics("test", test_per, best, seed),
        "val_recall_at_100": float(v[v["label"] > 0].groupby("request_id")["in_union_100"].mean().mean()),
        "val_ndcg_at_10": float(nd.mean()),
        "val_als_only_ndcg_at_10": float(nd_als.mean()),
        "val_ndcg_at_10_cold": float(nd[cold].mean()) if cold.any() else float("nan"),
        "val_requests": int(len(nd)),
        "val_requests_cold": int(cold.sum()),
        "train_rows": int(len(train.rows)),
        "train_requests": int(train.rows["request_id"].nunique()),
        "final_rows": int(len(both.rows)),
    }
    if nd_oracle is not None:
        metrics["val_oracle_ndcg_at_10"] = float(nd_oracle.mean())
        metrics["val_oracle_ndcg_at_10_cold"] = float(nd_oracle[cold].mean()) if cold.any() else float("nan")
    return {
        "final_ranker": final,  # the same settings on train + validation: what is registered
        "final_content": final_content,  # its ablation without collaborative features (a reference)
        "features": feats,
        "metrics": metrics,
        "best_baseline": best,
        "valid": valid,  # the gate's logged-label fallback
        "valid_explore": val_ex,  # the gate's evidence: the champion orders the same slates
        "per_request": pd.DataFrame({"ndcg": nd}),  # of the ranker trained on the train window
        "per_request_explore": val_per,
    }
