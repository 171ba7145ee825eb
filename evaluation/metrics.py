"""Ranking metrics: pure functions over arrays.

Conventions: ``ranked_rel`` is the graded relevance of the items in the order the model ranked them;
``all_rel`` holds the relevances of every relevant item (for the ideal ordering and recall's
denominator). Each function returns a float in [0, 1].
"""

from __future__ import annotations

import numpy as np


def dcg_at_k(ranked_rel, k: int) -> float:
    """Discounted cumulative gain, sum of rel_i / log2(i + 1) over ranks i = 1..k (linear gain)."""
    r = np.asarray(ranked_rel, dtype=np.float64)[:k]
    if r.size == 0:
        return 0.0
    return float((r / np.log2(np.arange(2, r.size + 2))).sum())


def ndcg_at_k(ranked_rel, k: int, all_rel=None) -> float:
    """DCG@k over the ideal DCG@k of ``all_rel`` (default: ``ranked_rel`` itself); 0 with nothing relevant."""
    ideal = np.sort(np.asarray(ranked_rel if all_rel is None else all_rel, dtype=np.float64))[::-1]
    idcg = dcg_at_k(ideal, k)
    return dcg_at_k(ranked_rel, k) / idcg if idcg > 0 else 0.0


def recall_at_k(ranked_rel, k: int, n_relevant: int) -> float:
    """Share of the ``n_relevant`` relevant items found in the top k."""
    if n_relevant <= 0:
        return 0.0
    return float((np.asarray(ranked_rel)[:k] > 0).sum() / n_relevant)


def precision_at_k(ranked_rel, k: int) -> float:
    return float((np.asarray(ranked_rel)[:k] > 0).sum() / k)


def hit_rate_at_k(ranked_rel, k: int) -> float:
    return float((np.asarray(ranked_rel)[:k] > 0).any())


def mrr_at_k(ranked_rel, k: int) -> float:
    hits = np.flatnonzero(np.asarray(ranked_rel)[:k] > 0)
    return float(1.0 / (hits[0] + 1)) if hits.size else 0.0


def average_precision_at_k(ranked_rel, k: int, n_relevant: int) -> float:
    r = np.asarray(ranked_rel)[:k] > 0
    if n_relevant <= 0 or not r.any():
        return 0.0
    prec = np.cumsum(r) / np.arange(1, r.size + 1)
    return float((prec * r).sum() / min(n_relevant, k))


# ---------------------------------------------------------------- beyond accuracy (over many lists)


def catalogue_coverage(lists, catalogue_size: int) -> float:
    """Share of the catalogue that appears in at least one recommended list."""
    if catalogue_size <= 0:
        return 0.0
    shown = set()
    for lst in lists:
        shown.update(np.asarray(lst).tolist())
    return len(shown) / catalogue_size


def gini_exposure(lists, catalogue_size: int, k: int | None = None) -> float:
    """Gini coefficient of item exposure (position-discounted, 1 / log2(rank + 1)) over the catalogue:
    0 = every item equally exposed, -> 1 = all exposure on one item."""
    exp: dict = {}
    for lst in lists:
        for r, it in enumerate(np.asarray(lst)[:k] if k else np.asarray(lst)):
            exp[it] = exp.get(it, 0.0) + 1.0 / np.log2(r + 2)
    x = np.zeros(max(catalogue_size, len(exp)))
    x[: len(exp)] = sorted(exp.values())
    x = np.sort(x)
    if x.sum() == 0:
        return 0.0
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def intra_list_diversity(categories) -> float:
    """Share of item pairs in one list that belong to different categories (e.g. occupation groups)."""
    c = np.asarray(categories)
    n = c.size
    if n < 2:
        return 0.0
    same = (c[:, None] == c[None, :]).sum() - n
    return float(1 - same / (n * (n - 1)))


def novelty(lst, popularity: dict, n_users: int) -> float:
    """Mean self-information -log2(p(item)) of a list, p = share of users who interacted with the item
    (unseen items count as seen by one user)."""
    lst = np.asarray(lst)
    if lst.size == 0 or n_users <= 0:
        return 0.0
    p = np.array([max(popularity.get(i, 0), 1) / n_users for i in lst.tolist()])
    return float(-np.log2(p).mean())
