"""Implicit ALS (the ``implicit`` library) on a user x item confidence matrix.

Warm users are scored with their trained factors; a user whose interactions changed after training
(or who was unknown) gets a factor recomputed from ``history`` by implicit's ``recalculate_user``.
A user with no history at all cannot be scored (NaN): cold users belong to the two-tower model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from threadpoolctl import ThreadpoolController

from training.candidates.base import CandidateGenerator
from training.interactions import IdMap, check_interactions, confidence_matrix

_CONTROLLER: ThreadpoolController | None = None


def one_blas_thread():
    """BLAS limited to one thread (implicit's own threads; BLAS threads only fight them). The controller
    scans the loaded libraries once per process, not per call (a scan costs milliseconds)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


class ALSRecommender(CandidateGenerator):
    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        random_state: int = 0,
        num_threads: int = 0,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def fit(self, interactions: pd.DataFrame, users=None, items=None, widen=None) -> ALSRecommender:
        """Fit on ``interactions``. ``widen``: a ``threading.Event``; once it is set, the remaining
        iterations run on every core (implicit reads its thread count before each half-iteration, and the
        factors do not depend on it: each user's and item's solve is independent)."""
        from implicit.cpu.als import AlternatingLeastSquares

        df = check_interactions(interactions)
        self.users_ = IdMap.fit(df["user"])
        self.items_ = IdMap.fit(df["item"])
        self.user_items_ = confidence_matrix(df, self.users_, self.items_)
        model = AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=self.num_threads,
        )

        def on_iteration(iteration, seconds, loss) -> None:
            if widen is not None and widen.is_set():
                model.num_threads = 0

        with one_blas_thread():
            model.fit(self.user_items_, show_progress=False, callback=on_iteration)
        model.num_threads = self.num_threads
        self.model_ = model
        self.user_factors_ = np.asarray(model.user_factors)
        self.item_factors_ = np.asarray(model.item_factors)
        return self

    def known_items(self) -> np.ndarray:
        return self.items_.keys

    def user_vector(self, user, history: pd.DataFrame | None = None) -> np.ndarray | None:
        """The user's factor: trained, or recomputed from ``history`` (item, weight); None if no basis."""
        if history is not None and len(history):
            cols = self.items_.index(history["item"].to_numpy())
            ok = cols >= 0
            if ok.any():
                w = (
                    history["weight"].to_numpy(np.float32)[ok]
                    if "weight" in history
                    else np.ones(ok.sum(), np.float32)
                )
                row = sp.csr_matrix(
                    (w, (np.zeros(ok.sum(), dtype=np.int64), cols[ok])), shape=(1, len(self.items_))
                )
                row.sum_duplicates()
                with one_blas_thread():
                    return np.asarray(self.model_.recalculate_user(0, row)).ravel()
        u = self.users_.index([user])[0]
        return self.user_factors_[u] if u >= 0 else None

    def score(self, user, items, history=None, user_features=None) -> np.ndarray:
        self._check_fitted()
        items = np.asarray(items)
        vec = self.user_vector(user, history)
        out = np.full(items.size, np.nan)
        if vec is None:
            return out
        idx = self.items_.index(items)
        ok = idx >= 0
        out[ok] = self.item_factors_[idx[ok]] @ vec
        return out
