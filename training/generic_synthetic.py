"""Generated datasets with known structure for the generic path's tests and benchmark, the held-out
protocol they are scored with, and nothing about any particular public dataset.

Each generator returns ``(interactions, users, items)`` (side tables may be None): interactions
``user, item, timestamp, weight`` with weights 1-5 like explicit ratings. A user's items are drawn
without replacement with probabilities proportional to exp(logit) (the Gumbel top-k trick), where:
- :func:`low_rank`: logit = 3 * u.v / sqrt(dim), u and v standard normal of ``dim`` dimensions; no side
  tables, no item bias: a purely collaborative signal that matrix factorisation can recover;
- :func:`planted_genres`: logit = 2.5 * [item genre = the user's genre] + 1.5 * quality, with ``genre``
  and ``quality`` in the items table (and a ``region`` and a protected ``age`` in the users table);
- :func:`long_tail`: logit = -1.1 * log(popularity rank) + 0.3 * u.v / sqrt(dim) + 1.5 * [item region =
  user region]: a Zipf head that popularity ranks about as well as any collaborative source, a weak
  personal signal, a heavy-tailed number of items per user (from 3), and ``region`` in both side tables.
Ratings are 3 + the item's personal appeal + noise, rounded and clipped to 1-5. Users have a log-normal
number of items around ``per_user``.

Protocol (:func:`split_per_item`, :func:`heldout_ndcg`): a random ``share`` of each item's interactions
is the test set; a model fitted on the rest recommends its top 10 with seen items removed, and every
test interaction is relevant (NDCG@10 averaged over the users with test interactions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.metrics import ndcg_at_k

START = pd.Timestamp("2025-01-01")


def _counts(rng, n_users: int, per_user: float, sigma: float, lo: int, hi: int) -> np.ndarray:
    return np.clip(np.round(per_user * rng.lognormal(-(sigma**2) / 2, sigma, n_users)), lo, hi).astype(int)


def _draw(rng, logit: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user, item) rows: each user's ``counts[u]`` items, drawn without replacement by exp(logit)."""
    keys = logit + rng.gumbel(size=logit.shape)
    order = np.argsort(-keys, axis=1)
    take = np.arange(logit.shape[1])[None, :] < counts[:, None]
    u, pos = np.nonzero(take)
    return u, order[u, pos]


def _frame(rng, u: np.ndarray, i: np.ndarray, appeal: np.ndarray) -> pd.DataFrame:
    rating = np.clip(np.round(3 + appeal + rng.normal(0, 0.7, u.size)), 1, 5)
    return pd.DataFrame(
        {
            "user": np.char.add("u", u.astype(str)),
            "item": np.char.add("i", i.astype(str)),
            "timestamp": START + pd.to_timedelta(rng.integers(0, 365 * 86_400, u.size), unit="s"),
            "weight": rating,
        }
    )


def _affinity(rng, n_users: int, n_items: int, dim: int) -> np.ndarray:
    return rng.normal(size=(n_users, dim)) @ rng.normal(size=(dim, n_items)) / np.sqrt(dim)


def low_rank(n_users: int = 600, n_items: int = 400, per_user: float = 30, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = _affinity(rng, n_users, n_items, dim)
    u, i = _draw(rng, 3 * a, _counts(rng, n_users, per_user, 0.5, 5, n_items // 2))
    return _frame(rng, u, i, a[u, i]), None, None


def planted_genres(
    n_users: int = 1200,
    n_items: int = 800,
    genres: int = 12,
    per_user: tuple[int, int] = (6, 12),
    seed: int = 0,
):
    rng = np.random.default_rng(seed)
    quality = rng.normal(0, 1, n_items)
    genre = np.arange(n_items) % genres
    fav = rng.integers(0, genres, n_users)
    items = pd.DataFrame(
        {"item": [f"i{j}" for j in range(n_items)], "genre": [f"g{g}" for g in genre], "quality": quality}
    )
    users = pd.DataFrame(
        {"user": [f"u{k}" for k in range(n_users)], "region": rng.integers(0, 5, n_users), "age": 30}
    )
    match = (genre[None, :] == fav[:, None]).astype(float)
    logit = 2.5 * match + 1.5 * quality[None, :]
    u, i = _draw(rng, logit, rng.integers(per_user[0], per_user[1] + 1, n_users))
    return _frame(rng, u, i, 0.8 * match[u, i] + 0.8 * quality[i]), users, items


def long_tail(
    n_users: int = 1200,
    n_items: int = 600,
    per_user: float = 20,
    dim: int = 8,
    regions: int = 8,
    seed: int = 0,
):
    rng = np.random.default_rng(seed)
    pop_rank = rng.permutation(n_items) + 1
    item_region = rng.integers(0, regions, n_items)
    user_region = rng.integers(0, regions, n_users)
    a = _affinity(rng, n_users, n_items, dim)
    match = (item_region[None, :] == user_region[:, None]).astype(float)
    logit = -1.1 * np.log(pop_rank)[None, :] + 0.3 * a + 1.5 * match
    u, i = _draw(rng, logit, _counts(rng, n_users, per_user, 1.0, 3, n_items // 2))
    items = pd.DataFrame(
        {"item": [f"i{j}" for j in range(n_items)], "region": [f"r{c}" for c in item_region]}
    )
    users = pd.DataFrame(
        {"user": [f"u{k}" for k in range(n_users)], "region": [f"r{c}" for c in user_region]}
    )
    return _frame(rng, u, i, 0.6 * a[u, i] + 0.4 * match[u, i]), users, items


def split_per_item(df: pd.DataFrame, share: float = 0.25, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test): a random ``share`` (rounded) of each item's interactions is the test set."""
    rng = np.random.default_rng(seed)
    order = df.assign(_r=rng.random(len(df))).sort_values(["item", "_r"], kind="stable")
    n = order.groupby("item")["user"].transform("size").to_numpy()
    k = order.groupby("item").cumcount().to_numpy()
    test = order.index[k < np.floor(share * n + 0.5)]
    return df.drop(index=test), df.loc[test]


def heldout_ndcg(recs: pd.DataFrame, test: pd.DataFrame, k: int = 10) -> float:
    """Mean NDCG@k over the users of ``test`` (each test pair relevant; users without recs score 0)."""
    truth = test[["user", "item"]].drop_duplicates()
    n_rel = truth.groupby("user").size()
    top = recs[recs["rank"] <= k].merge(truth.assign(hit=1.0), on=["user", "item"], how="left")
    top = top.sort_values(["user", "rank"])
    hits = top.groupby("user")["hit"].apply(lambda s: s.fillna(0).to_numpy())
    total = sum(ndcg_at_k(hits[u], k, np.ones(n)) for u, n in n_rel.items() if u in hits.index)
    return float(total / len(n_rel))
