"""Stage one of the generic path: weight transforms, the sources on one index, batched scoring, top-k
rows, the quota union and full-catalogue metrics.

Interaction tables here are tables of distinct (user, item) pairs: :func:`pairs` sums the weights of
repeated pairs and keeps their latest timestamp, so a pair is either seen or held out, never both.

Weight transforms (each source has its own, chosen on validation; :func:`transform`):
``raw`` (the summed weight), ``binary`` (1 per pair), ``log1p`` (log(1 + weight)) and ``ge:<t>`` (only the
pairs with weight >= t, each as 1, e.g. ratings >= 4 as likes).

:class:`StageOne` fits the three sources on one set of pairs, each with its transform, and addresses
them on one index of that set's users and items: ALS (:class:`ALSRecommender`), item-kNN
(:class:`ItemKNNRecommender`) and popularity (:class:`PopularityRecommender`). Its scorers give a dense
(users, items) block for many users at once by matrix products (ALS: U V^T, kNN: X S, popularity: one
row repeated); a user or item a source does not know scores NaN (a new user; a user or item whose
pairs a ``ge:`` threshold dropped). :meth:`StageOne.ranked` is a source's ranking as served: seen items
removed, best first, and for a user the source cannot score, popularity's ranking instead.

:func:`union_rows` is :func:`training.candidates.union.union` vectorised over users: each source in turn
contributes its best ``quota`` items not taken yet (quotas add up to ``n``, so a user every source knows
gets ``n`` candidates), then the sources in the same order fill any row still short (a user some source
cannot score, e.g. a new user, whose candidates come from popularity).

:func:`rank_metrics`: per user NDCG@10 and recall@50 of ranked lists against held-out items, computed
with :mod:`evaluation.metrics`; a held-out item outside the index counts as relevant and missed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from evaluation.metrics import ndcg_at_k, recall_at_k
from jobcare.config import GenericConfig
from jobcare.errors import JobcareError
from training.candidates.als import ALSRecommender
from training.candidates.item_knn import ItemKNNRecommender
from training.candidates.popularity import PopularityRecommender
from training.interactions import IdMap, confidence_matrix

SOURCES = ("als", "knn", "popularity")
K_NDCG, K_RECALL = 10, 50
BLOCK_CELLS = 20_000_000  # users x items per dense score block (80 MB of float32)


class StageOneError(JobcareError):
    """A stage-one setting cannot be applied to the data (e.g. a threshold that drops every pair)."""


def pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Distinct (user, item) pairs: weights summed, the latest timestamp kept."""
    agg = {"weight": "sum"} | ({"timestamp": "max"} if "timestamp" in df.columns else {})
    out = df.groupby(["user", "item"], as_index=False, sort=False).agg(agg)
    return out.assign(weight=out["weight"].astype(np.float64))


def transform(df: pd.DataFrame, how: str) -> pd.DataFrame:
    """The pairs with their weights transformed (see the module docstring)."""
    if how == "raw":
        return df
    if how == "binary":
        return df.assign(weight=1.0)
    if how == "log1p":
        return df.assign(weight=np.log1p(df["weight"].to_numpy(np.float64)))
    if how.startswith("ge:"):
        kept = df.loc[df["weight"].to_numpy(np.float64) >= float(how[3:])]
        if kept.empty:
            raise StageOneError(f"weight transform {how!r} keeps no pair (rule: threshold below the maximum)")
        return kept.assign(weight=1.0)
    raise StageOneError(f"weight transform {how!r}: not raw, binary, log1p or ge:<t> (rule: transforms)")


def transform_choices(weights: np.ndarray) -> list[str]:
    """The transforms worth trying on these weights: one (``binary``) if they are all equal; else raw,
    binary, log1p and thresholds at the weights' quartiles that drop something and keep >= 10% of pairs."""
    w = np.asarray(weights, np.float64)
    if np.unique(w).size <= 1:
        return ["binary"]
    out = ["raw", "binary", "log1p"]
    for t in np.unique(np.quantile(w, [0.25, 0.5, 0.75])):
        name = f"ge:{t:g}"
        if (w < float(name[3:])).any() and (w >= float(name[3:])).mean() >= 0.1:
            out.append(name)
    return out


def block_size(n_items: int) -> int:
    """Users per dense score block."""
    return max(1, BLOCK_CELLS // max(n_items, 1))


def top_rows(block: np.ndarray, k: int) -> np.ndarray:
    """Per row, the positions of the ``k`` largest finite values, best first (ties by position among
    those kept; which of several tied values at the k-th place are kept is argpartition's, deterministic);
    -1 pads rows with fewer than ``k`` finite values."""
    m, n = block.shape
    k = min(k, n)
    if k <= 0:
        return np.zeros((m, 0), np.int64)
    s = np.where(np.isnan(block), -np.inf, block)
    part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (m, 1))
    vals = np.take_along_axis(s, part, 1)
    order = np.lexsort((part, -vals), axis=1)
    top = np.take_along_axis(part, order, 1)
    top[np.take_along_axis(vals, order, 1) == -np.inf] = -1
    return top.astype(np.int64)


def remove_seen(block: np.ndarray, seen: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """``block`` with NaN at the items each known row (``rows`` >= 0, rows of ``seen``) has seen."""
    ok = np.flatnonzero(rows >= 0)
    if ok.size:
        sub = seen[rows[ok]]
        block[np.repeat(ok, np.diff(sub.indptr)), sub.indices] = np.nan
    return block


def ranks_in(lists: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Per row, the rank (1 = first) of each of ``items`` (rows of item positions) in the row's ranked
    ``lists`` (-1 padded, no repeats within a row); ``lists.shape[1] + 1`` where absent."""
    m, depth = lists.shape
    base = np.arange(m, dtype=np.int64)[:, None] * (n_items + 1)
    keys = (base + np.where(lists < 0, n_items, lists)).ravel()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if sorted_keys.size == 0:
        return np.full(items.shape, depth + 1, np.int64)
    want = (base + np.where(items < 0, n_items, items)).ravel()
    pos = np.minimum(np.searchsorted(sorted_keys, want), sorted_keys.size - 1)
    found = (sorted_keys[pos] == want) & (items.ravel() >= 0)
    found &= lists.ravel()[order[pos]] >= 0
    return np.where(found, order[pos] % depth + 1, depth + 1).reshape(items.shape)


def union_rows(
    lists: dict[str, np.ndarray], quotas: dict[str, int], n: int, n_items: int, fill: str = "popularity"
) -> np.ndarray:
    """(rows, n) union of the sources' ranked ``lists`` (item positions, -1 padded), -1 padded.

    Round one: each source in the order of ``quotas`` adds its first ``quota`` items not taken yet. Round
    two tops up the rows still short of ``n`` from the same sources in the same order, then from
    ``fill`` if it has no quota."""
    m = next(iter(lists.values())).shape[0]
    taken = np.zeros((m, n_items + 1), bool)
    taken[:, n_items] = True  # the -1 padding maps to a column that is always taken
    out = np.full((m, n), -1, np.int64)
    count = np.zeros(m, np.int64)
    steps = [(s, np.full(m, q)) for s, q in quotas.items() if q > 0]
    steps += [(s, None) for s in quotas] + ([] if fill in quotas else [(fill, None)])
    rows = np.arange(m)[:, None]
    for name, quota in steps:
        room = n - count if quota is None else np.minimum(quota, n - count)
        lst = lists[name]
        col = np.where(lst < 0, n_items, lst)
        fresh = ~taken[rows, col]
        csum = np.cumsum(fresh, axis=1)
        keep = fresh & (csum <= room[:, None])
        r, c = np.nonzero(keep)
        out[r, count[r] + csum[r, c] - 1] = lst[r, c]
        taken[r, lst[r, c]] = True
        count += keep.sum(axis=1)
    return out


def rank_metrics(ranked: np.ndarray, truth: sp.csr_matrix, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Per row NDCG@10 and recall@50 of ``ranked`` (item positions, -1 padded) against the rows of the
    binary ``truth`` matrix; ``n_relevant`` counts every held-out item, also those outside the index."""
    dense = truth.toarray() > 0
    hits = np.zeros(ranked.shape, bool)
    r, c = np.nonzero(ranked >= 0)
    hits[r, c] = dense[r, ranked[r, c]]
    hits = hits.astype(np.float64)
    ndcg = np.zeros(len(ranked))
    recall = np.zeros(len(ranked))
    for i, n_rel in enumerate(n_relevant.tolist()):
        if n_rel > 0:
            ndcg[i] = ndcg_at_k(hits[i, :K_NDCG], K_NDCG, np.ones(n_rel))
            recall[i] = recall_at_k(hits[i], K_RECALL, n_rel)
    return {"ndcg_at_10": ndcg, "recall_at_50": recall}


def recall_of_sets(cands: np.ndarray, truth: sp.csr_matrix, n_relevant: np.ndarray) -> np.ndarray:
    """Per row, the share of the held-out items found anywhere in ``cands``."""
    dense = truth.toarray() > 0
    r, c = np.nonzero(cands >= 0)
    found = np.zeros(len(cands))
    np.add.at(found, r, dense[r, cands[r, c]])
    return np.divide(found, n_relevant, out=np.zeros(len(cands)), where=n_relevant > 0)


class FactorScorer:
    """Dense blocks of user-factor x item-factor products; users or items without a factor score NaN.

    ``user_pos[g]`` / ``item_pos[j]``: the factor row of index user g / item j, -1 if none."""

    def __init__(self, user_factors, item_factors, user_pos: np.ndarray, item_pos: np.ndarray):
        self.user_factors = np.asarray(user_factors, np.float32)
        self.user_pos = user_pos
        self.cols = np.flatnonzero(item_pos >= 0)
        self.item_factors = np.asarray(item_factors, np.float32)[item_pos[self.cols]]
        self.n_items = item_pos.size

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = np.full((rows.size, self.n_items), np.nan, np.float32)
        pos = np.where(rows >= 0, self.user_pos[np.maximum(rows, 0)], -1)
        ok = np.flatnonzero(pos >= 0)
        if ok.size and self.cols.size:
            out[np.ix_(ok, self.cols)] = self.user_factors[pos[ok]] @ self.item_factors.T
        return out


class KNNScorer:
    """Dense blocks of a fitted :class:`ItemKNNRecommender` on another user and item index."""

    def __init__(self, knn: ItemKNNRecommender, users: IdMap, items: IdMap):
        self.knn = knn
        self.user_pos = knn.users_.index(users.keys)
        item_pos = knn.items_.index(items.keys)
        self.cols = np.flatnonzero(item_pos >= 0)
        self.knn_cols = item_pos[self.cols]
        self.n_items = len(items)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        out = np.full((rows.size, self.n_items), np.nan, np.float32)
        pos = np.where(rows >= 0, self.user_pos[np.maximum(rows, 0)], -1)
        ok = np.flatnonzero(pos >= 0)
        if ok.size:
            out[np.ix_(ok, self.cols)] = self.knn.score_rows(self.knn.user_items_[pos[ok]])[:, self.knn_cols]
        return out


class PopScorer:
    """Popularity on an item index: the same row for every user (0 for items it does not know)."""

    def __init__(self, pop: PopularityRecommender, items: IdMap):
        self.scores = np.asarray(pop.score(None, items.keys), np.float32)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self.scores, (rows.size, 1))


def als_model(cfg: GenericConfig) -> ALSRecommender:
    return ALSRecommender(**cfg.als.model_dump(), random_state=cfg.seed, num_threads=cfg.num_threads)


class StageOne:
    """The three sources fitted on one set of pairs (settings from ``cfg``), on one user and item index."""

    def __init__(self, cfg: GenericConfig):
        self.cfg = cfg

    def fit(self, df: pd.DataFrame) -> StageOne:
        cfg = self.cfg
        self._index(df)
        self.als_ = als_model(cfg).fit(transform(df, cfg.als_weights))
        knn = ItemKNNRecommender(**cfg.knn.model_dump(), num_threads=cfg.num_threads)
        self.knn_ = knn.fit(transform(df, cfg.knn_weights))
        self.pop_ = PopularityRecommender(random_state=cfg.seed).fit(transform(df, cfg.popularity_weights))
        return self._scorers()

    def _index(self, df: pd.DataFrame) -> None:
        self.users_ = IdMap.fit(df["user"])
        self.items_ = IdMap.fit(df["item"])
        self.seen_ = confidence_matrix(df.assign(weight=1.0), self.users_, self.items_)
        self.user_n_ = np.diff(self.seen_.indptr).astype(np.float64)
        self.item_n_ = np.bincount(self.seen_.indices, minlength=len(self.items_)).astype(np.float64)

    def _scorers(self) -> StageOne:
        self.scorers_ = {
            "als": FactorScorer(
                self.als_.user_factors_,
                self.als_.item_factors_,
                self.als_.users_.index(self.users_.keys),
                self.als_.items_.index(self.items_.keys),
            ),
            "knn": KNNScorer(self.knn_, self.users_, self.items_),
            "popularity": PopScorer(self.pop_, self.items_),
        }
        return self

    def save(self, path: Path) -> None:
        self.als_.save(path / "als")
        self.knn_.save(path / "item_knn")
        self.pop_.save(path / "popularity")

    @classmethod
    def load(cls, path: Path, cfg: GenericConfig, df: pd.DataFrame) -> StageOne:
        """The sources saved in ``path``, on the index of the pairs ``df`` they were fitted on."""
        stage = cls(cfg)
        stage._index(df)
        stage.als_ = ALSRecommender.load(path / "als")
        stage.knn_ = ItemKNNRecommender.load(path / "item_knn")
        stage.pop_ = PopularityRecommender.load(path / "popularity")
        return stage._scorers()

    @property
    def n_items(self) -> int:
        return len(self.items_)

    def block(self, source: str, rows: np.ndarray, exclude_seen: bool = True) -> np.ndarray:
        """Dense scores (len(rows), n_items) of one source; rows: index users, -1 for unknown ones."""
        b = self.scorers_[source](rows)
        return remove_seen(b, self.seen_, rows) if exclude_seen else b

    def ranked(self, source: str, rows: np.ndarray, k: int, exclude_seen: bool = True):
        """(items, scores): each row's top ``k`` by ``source``; rows it cannot score get popularity's."""
        seen = self.seen_ if exclude_seen else None
        fallback = None if source == "popularity" else self.scorers_["popularity"]
        return ranked_lists(self.scorers_[source], fallback, seen, rows, k)


def ranked_lists(score, fallback, seen: sp.csr_matrix | None, rows: np.ndarray, k: int):
    """(items, scores) of each row's top ``k`` by the scorer ``score`` (a callable rows -> dense block),
    ``seen`` items removed; rows ``score`` cannot score at all are ranked by ``fallback`` instead."""
    b = score(rows)
    if seen is not None:
        remove_seen(b, seen, rows)
    top = top_rows(b, k)
    none = top[:, 0] < 0 if top.shape[1] else np.zeros(rows.size, bool)
    if fallback is not None and none.any():
        fb = fallback(rows[none])
        b[none] = fb if seen is None else remove_seen(fb, seen, rows[none])
        top[none] = top_rows(b[none], k)
    return top, np.where(top >= 0, np.take_along_axis(b, np.maximum(top, 0), 1), np.nan)
