"""Stage two of the generic path: features of union candidates, rows from the validation split, and the
cross-fitted check that decides whether the ranker is used.

Candidates (:meth:`PairFeatures.block`, one block of users at a time): each source's top
``n_candidates`` (seen items removed) merged by :func:`training.generic_sources.union_rows` with the
chosen quotas. Features of a (user, candidate) pair:
- per source s (als, knn, popularity): ``s_rank`` (1 = best; n_candidates + 1 outside its top list) and
  ``s_score``: ALS u.v; kNN the summed similarity over the user's best kNN score (scale-free, since a
  history grows from validation to serving); popularity log(1 + popularity / mean popularity);
- ``user_n``, ``item_n``: the user's and the item's pairs over the mean per user / per item (ratios, so
  the 80% fit part and the full data give one scale);
- the side columns of both tables (categoricals as codes of a vocabulary fitted once) and the user's
  history profile: per categorical item column c, ``hist_share__c``, the share of the user's items with
  the candidate's value; per numeric item column, ``hist_gap__c``, |candidate value - mean over the
  user's items|; per column in both side tables, ``match__c`` (1 if equal). Columns named in
  ``protected`` are dropped before anything is built.

Rows (:func:`candidate_rows`): every evaluated validation user's whole candidate list, labelled 1 for
the user's held-out items (all of them, not one), so the ranker learns on the lists it will re-rank.

Check (:func:`crossfit`): users are split into ``ranker_folds`` folds; a LambdaRank ranker fitted on
the others' lists (users with at least one held-out item among their candidates) ranks each fold's lists.
Its per-user NDCG@10 is compared with the best single source's full-catalogue NDCG@10 on the same users
by :func:`evaluation.stats.paired_bootstrap`; the ranker is used only if the interval's lower end is
above ``ranker_min_gain``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from evaluation.stats import paired_bootstrap
from jobcare.config import GenericConfig
from training.generic_sources import (
    K_RECALL,
    SOURCES,
    StageOne,
    block_size,
    rank_metrics,
    ranks_in,
    top_rows,
    union_rows,
)
from training.generic_tune import Validation
from training.ranker import LambdaRankRanker

MAX_BLOCK_USERS = 2000


class SideFeatures:
    """Side columns as numbers: numeric columns as they are, the others as codes of a fitted vocabulary."""

    def __init__(self, table: pd.DataFrame | None, prefix: str, vocab: dict | None = None):
        self.prefix = prefix
        self.table = table if table is not None else pd.DataFrame()
        if vocab is None:
            vocab = {
                c: sorted(self.table[c].dropna().astype(str).unique().tolist())
                for c in self.table.columns
                if not pd.api.types.is_numeric_dtype(self.table[c].dtype)
                or pd.api.types.is_bool_dtype(self.table[c].dtype)
            }
        self.vocab = vocab
        self.coded = pd.DataFrame(index=self.table.index)
        for c in self.table.columns:
            if c in vocab:
                codes = pd.Index(vocab[c]).get_indexer(self.table[c].astype(str))
                self.coded[c] = np.where(self.table[c].isna(), -1, codes).astype(np.int64)
            else:
                self.coded[c] = pd.to_numeric(self.table[c], errors="coerce").astype(float)

    @property
    def categorical(self) -> list[str]:
        return list(self.vocab)

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.coded.columns if c not in self.vocab]

    def arrays(self, keys: np.ndarray) -> dict[str, np.ndarray]:
        """Coded columns for ``keys`` (unknown keys: -1 / NaN), by column name."""
        out = self.coded.reindex(keys)
        return {
            c: out[c].fillna(-1).to_numpy(np.int64) if c in self.vocab else out[c].to_numpy(np.float64)
            for c in out.columns
        }

    def strings(self, column: str, keys: np.ndarray) -> np.ndarray:
        """Raw values of ``column`` for ``keys`` as text (None where missing)."""
        v = self.table[column].reindex(keys)
        return np.where(v.isna(), None, v.astype(str)).astype(object)


class PairFeatures:
    """Candidates and their features for blocks of users, on one fitted :class:`StageOne`."""

    def __init__(self, stage: StageOne, users: SideFeatures, items: SideFeatures, quotas: dict[str, int]):
        self.stage, self.users, self.items, self.quotas = stage, users, items, quotas
        keys = stage.items_.keys
        self.item_side = items.arrays(keys)
        pop = stage.scorers_["popularity"].scores.astype(np.float64)
        self.pop_score = np.log1p(pop / pop.mean()) if pop.mean() > 0 else np.zeros_like(pop)
        self.onehot = {}
        for c in items.categorical:
            code = self.item_side[c]
            ok = np.flatnonzero(code >= 0)
            self.onehot[c] = sp.csr_matrix(
                (np.ones(ok.size), (ok, code[ok])), shape=(len(keys), max(len(items.vocab[c]), 1))
            )
        self.shared = sorted(set(users.table.columns) & set(items.table.columns))
        self.match_codes = {}
        for c in self.shared:
            i_str = items.strings(c, keys)
            vocab = pd.Index(sorted({*users.table[c].dropna().astype(str), *(s for s in i_str if s)}))
            self.match_codes[c] = (vocab, vocab.get_indexer(i_str))  # missing values: -1
        self.names = (
            [f"{s}_{kind}" for s in SOURCES for kind in ("score", "rank")]
            + ["user_n", "item_n"]
            + [f"{users.prefix}{c}" for c in users.coded.columns]
            + [f"{items.prefix}{c}" for c in items.coded.columns]
            + [f"hist_share__{c}" for c in items.categorical]
            + [f"hist_gap__{c}" for c in items.numeric]
            + [f"match__{c}" for c in self.shared]
        )

    def block_users(self) -> int:
        return min(MAX_BLOCK_USERS, block_size(self.stage.n_items))

    def block(self, rows: np.ndarray, user_keys: np.ndarray, exclude_seen: bool = True):
        """(candidates (m, n) item positions -1 padded, features (m, n, F), each source's top lists) of one
        block of users: ``rows`` their positions in the stage's index (-1: unknown), ``user_keys`` their
        keys."""
        st, n = self.stage, self.stage.cfg.n_candidates
        blocks = {s: st.block(s, rows, exclude_seen) for s in SOURCES}
        lists = {s: top_rows(blocks[s], n) for s in SOURCES}
        cand = union_rows(lists, self.quotas, n, st.n_items)
        c0 = np.maximum(cand, 0)
        f: dict[str, np.ndarray] = {}
        for s in SOURCES:
            if s == "popularity":
                score = self.pop_score[c0]
            else:
                score = np.take_along_axis(blocks[s], c0, 1).astype(np.float64)
            if s == "knn":
                finite = np.isfinite(blocks[s])
                top = np.where(
                    finite.any(axis=1), np.max(np.where(finite, blocks[s], -np.inf), axis=1), np.nan
                )
                score = np.divide(
                    score, top[:, None], out=np.full_like(score, np.nan), where=top[:, None] > 0
                )
            f[f"{s}_score"] = score
            f[f"{s}_rank"] = ranks_in(lists[s], cand, st.n_items)
        known = rows >= 0
        r0 = np.maximum(rows, 0)
        user_n = np.where(known, st.user_n_[r0], 0.0)
        f["user_n"] = np.broadcast_to((user_n / st.user_n_.mean())[:, None], cand.shape)
        f["item_n"] = st.item_n_[c0] / st.item_n_.mean()
        for c, v in self.users.arrays(user_keys).items():
            f[f"{self.users.prefix}{c}"] = np.broadcast_to(v[:, None], cand.shape)
        for c, v in self.item_side.items():
            f[f"{self.items.prefix}{c}"] = v[c0]
        hist = st.seen_[r0].multiply(known[:, None]).tocsr()
        denom = np.maximum(user_n, 1.0)[:, None]
        for c, oh in self.onehot.items():
            share = np.asarray((hist @ oh).todense()) / denom
            code = self.item_side[c][c0]
            f[f"hist_share__{c}"] = np.where(
                code >= 0, np.take_along_axis(share, np.maximum(code, 0), 1), 0.0
            )
        for c in self.items.numeric:
            x = self.item_side[c]
            ok = np.isfinite(x)
            total, count = hist @ np.where(ok, x, 0.0), hist @ ok.astype(np.float64)
            mean = np.divide(total, count, out=np.full(rows.size, np.nan), where=count > 0)
            f[f"hist_gap__{c}"] = np.abs(x[c0] - mean[:, None])
        for c in self.shared:
            vocab, i_code = self.match_codes[c]
            u_code = vocab.get_indexer(self.users.strings(c, user_keys))
            f[f"match__{c}"] = ((u_code[:, None] >= 0) & (u_code[:, None] == i_code[c0])).astype(np.float64)
        X = np.stack([np.asarray(f[name], np.float32) for name in self.names], axis=-1)
        X[cand < 0] = np.nan
        return cand, X, lists


class RankerRows:
    """Every evaluated user's candidates, features and labels (held-out items = 1)."""

    def __init__(self, feats: PairFeatures, val: Validation):
        parts = []
        step = feats.block_users()
        for lo in range(0, val.rows.size, step):
            rows = val.rows[lo : lo + step]
            cand, X, _ = feats.block(rows, val.users.keys[rows])
            truth = val.truth[lo : lo + step].toarray() > 0
            label = np.take_along_axis(truth, np.maximum(cand, 0), 1) & (cand >= 0)
            parts.append((cand, X, label))
        self.names = feats.names
        self.cand = np.concatenate([p[0] for p in parts])
        self.X = np.concatenate([p[1] for p in parts])
        self.label = np.concatenate([p[2] for p in parts])
        self.trainable = self.label.any(axis=1)

    def flat(self, users: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """(features, labels, group sizes) of ``users`` (positions), one contiguous group per user."""
        valid = self.cand[users] >= 0
        X = pd.DataFrame(self.X[users][valid], columns=self.names)
        return X, self.label[users][valid].astype(np.int64), valid.sum(axis=1)

    def rank(
        self, ranker: LambdaRankRanker, users: np.ndarray, num_threads: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidates, scores) of ``users`` re-ranked by ``ranker`` (see :func:`rank_by`)."""
        return rank_by(ranker, self.cand[users], self.X[users], num_threads)


def rank_by(ranker: LambdaRankRanker, cand: np.ndarray, X: np.ndarray, num_threads: int):
    """(candidates, scores): ``cand`` (m, n) re-ordered per row by the ranker's scores of ``X`` (m, n, F),
    ties in union order; -1 (score -inf) stays last."""
    valid = cand >= 0
    score = np.full(cand.shape, -np.inf)
    if valid.any():
        score[valid] = ranker.predict(X[valid], num_threads=num_threads)
    order = np.lexsort((np.broadcast_to(np.arange(cand.shape[1]), cand.shape), -score), axis=1)
    return np.take_along_axis(cand, order, 1), np.take_along_axis(score, order, 1)


def fit_ranker(rows: RankerRows, users: np.ndarray, cfg: GenericConfig) -> LambdaRankRanker:
    X, y, g = rows.flat(users)
    ranker = LambdaRankRanker(
        **cfg.ranker.model_dump(),
        random_state=cfg.seed,
        num_threads=cfg.num_threads,
        protected=tuple(cfg.protected),
    )
    return ranker.fit(X, y, g)


def crossfit(rows: RankerRows, val: Validation, cfg: GenericConfig, best: str, best_ndcg: np.ndarray) -> dict:
    """The ranker's cross-fitted validation metrics and the paired check against the best source."""
    rng = np.random.default_rng(cfg.seed)
    fold = rng.permutation(rows.cand.shape[0]) % cfg.ranker_folds
    ranked = np.full((rows.cand.shape[0], K_RECALL), -1, np.int64)
    for f in range(cfg.ranker_folds):
        train = np.flatnonzero((fold != f) & rows.trainable)
        test = np.flatnonzero(fold == f)
        if train.size == 0 or test.size == 0:
            continue
        order, _ = rows.rank(fit_ranker(rows, train, cfg), test, cfg.num_threads)
        ranked[test, : min(K_RECALL, order.shape[1])] = order[:, :K_RECALL]
    m = rank_metrics(ranked, val.truth, val.n_relevant)
    keys = val.user_keys
    gain = paired_bootstrap(
        pd.Series(m["ndcg_at_10"], index=keys), pd.Series(best_ndcg, index=keys), cfg.n_boot, cfg.seed
    )
    used = bool(gain["ci_low"] > cfg.ranker_min_gain)
    reason = (
        f"ranker NDCG@10 {gain['mean_b']:.4f} vs {best} {gain['mean_a']:.4f} on {gain['n_seekers']} "
        f"validation users: gain {gain['mean_diff']:+.4f}, "
        f"95% CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}]; "
        + (
            f"above {cfg.ranker_min_gain:g}: the ranker is used"
            if used
            else f"not above {cfg.ranker_min_gain:g}: the model ranks by {best} alone"
        )
    )
    return {
        "per_user": m,
        "used": used,
        "reason": reason,
        "gain": {k: v for k, v in gain.items() if k != "n_seekers"} | {"n_users": gain["n_seekers"]},
        "train_users": int(rows.trainable.sum()),
        "rows": int((rows.cand >= 0).sum()),
    }
