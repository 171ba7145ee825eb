"""Item-item nearest neighbours on implicit feedback (the ``implicit`` library's item similarity).

``fit`` builds the user x item confidence matrix X (:func:`training.interactions.confidence_matrix`)
and, with implicit's ``BM25Recommender`` (``measure="bm25"``: each item's column of X weighted by BM25
with ``k1`` and ``b`` before the dot products) or ``CosineRecommender`` (``measure="cosine"``: columns
normalised to unit length), keeps each item's ``neighbours`` most similar items as a sparse item x item
matrix S. A user's score for item j is the sum over the user's items i of X[u, i] * S[i, j], exactly what
implicit's ``NearestNeighboursScorer`` computes one user at a time; :meth:`ItemKNNRecommender.score_rows`
computes it for many users at once as one sparse product X_rows @ S. Items the user already has are
scored too (callers exclude them); a user without any history scores NaN.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobcare.config import ItemKNNParams
from jobcare.errors import JobcareError
from training.candidates.base import CandidateGenerator
from training.interactions import IdMap, check_interactions, confidence_matrix

_DEFAULT = ItemKNNParams()


class ItemKNNRecommender(CandidateGenerator):
    name = "item_knn"

    def __init__(
        self,
        measure: str = _DEFAULT.measure,
        neighbours: int = _DEFAULT.neighbours,
        k1: float = _DEFAULT.k1,
        b: float = _DEFAULT.b,
        num_threads: int = 0,
    ):
        self.measure = measure
        self.neighbours = neighbours
        self.k1 = k1
        self.b = b
        self.num_threads = num_threads

    def fit(self, interactions: pd.DataFrame, users=None, items=None) -> ItemKNNRecommender:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
        from implicit.utils import ParameterWarning

        ItemKNNParams(measure=self.measure, neighbours=self.neighbours, k1=self.k1, b=self.b)  # validates
        df = check_interactions(interactions)
        if df.empty:
            raise JobcareError("item_knn: no interactions to fit on (rule: non-empty input)")
        self.users_ = IdMap.fit(df["user"])
        self.items_ = IdMap.fit(df["item"])
        self.user_items_ = confidence_matrix(df, self.users_, self.items_)
        if self.measure == "bm25":
            model = BM25Recommender(K=self.neighbours, K1=self.k1, B=self.b, num_threads=self.num_threads)
        else:
            model = CosineRecommender(K=self.neighbours, num_threads=self.num_threads)
        with warnings.catch_warnings():  # implicit converts its own weighted COO matrix to CSR and says so
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(self.user_items_, show_progress=False)
        self.similarity_ = sp.csr_matrix(model.similarity, dtype=np.float32)
        return self

    def known_items(self) -> np.ndarray:
        return self.items_.keys

    def score_rows(self, user_items: sp.csr_matrix) -> np.ndarray:
        """Dense scores (rows, n_items) of users given as rows of a matrix over ``items_``; NaN rows for
        users without any history."""
        self._check_fitted()
        out = np.asarray((user_items @ self.similarity_).todense(), dtype=np.float32)
        out[np.diff(user_items.indptr) == 0] = np.nan
        return out

    def history_row(self, user, history: pd.DataFrame | None = None) -> sp.csr_matrix:
        """The user's row over ``items_``: from ``history`` (item [, weight]) when given, else trained."""
        if history is not None:
            cols = self.items_.index(history["item"].to_numpy())
            ok = cols >= 0
            w = history["weight"].to_numpy(np.float32)[ok] if "weight" in history else np.ones(ok.sum())
            row = sp.csr_matrix(
                (w.astype(np.float32), (np.zeros(ok.sum(), dtype=np.int64), cols[ok])),
                shape=(1, len(self.items_)),
            )
            row.sum_duplicates()
            return row
        u = self.users_.index([user])[0]
        if u < 0:
            return sp.csr_matrix((1, len(self.items_)), dtype=np.float32)
        return self.user_items_[u]

    def score(self, user, items, history=None, user_features=None) -> np.ndarray:
        self._check_fitted()
        items = np.asarray(items)
        row = self.score_rows(self.history_row(user, history))[0]
        idx = self.items_.index(items)
        out = np.full(items.size, np.nan)
        out[idx >= 0] = row[idx[idx >= 0]]
        return out
