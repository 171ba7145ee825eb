"""The contract every candidate generator follows (scikit-learn style).

``__init__`` stores parameters only; ``fit`` validates, learns and returns ``self``; learned state
ends in ``_``. Generators speak in external keys (any user / item ids): ``score`` gives the scores of
given items for one user, ``recommend`` the top k of the allowed items. ``save``/``load`` round-trip
parameters (JSON) and learned state.
"""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from jobcare.errors import JobcareError


class NotFittedError(JobcareError):
    """A generator was used before ``fit``."""


def top_k(items: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (item, score) pairs, best first; NaN scores dropped.

    Deterministic: ordered by score, ties by position in ``items``, including the ties at the k-th
    score (argpartition alone would keep an arbitrary subset of those)."""
    ok = ~np.isnan(scores)
    if not ok.all():
        items, scores = items[ok], scores[ok]
    part = _best(scores, k)
    return items[part], scores[part]


def _best(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest of NaN-free ``scores``, best first, ties by position (also at the
    k-th score)."""
    n = scores.size
    if 0 < k < n:
        kth = np.partition(scores, n - k)[n - k]  # the k-th largest score
        above = np.flatnonzero(scores > kth)
        part = np.concatenate([above, np.flatnonzero(scores == kth)[: k - above.size]])
    else:
        part = np.arange(n if k > 0 else 0)
    return part[np.lexsort((part, -scores[part]))]


def top_k_allowed(scores: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_k` over the positions ``mask`` allows, given ``scores`` for every position.

    The allowed scores are gathered first. Selecting over the whole catalogue with the disallowed
    positions set to -inf gives the same answer, but ``np.partition`` slows down badly on an array that
    is mostly one repeated value: at the national catalogue (200,000 postings, about 5% open at a time) it
    took 18.6 ms against 0.14 ms for gathering then selecting (``benchmarks/topk_selection.py``), and 68%
    of the national posting rows' time in a profile (README, "National scale")."""
    idx = np.flatnonzero(mask)
    return top_k(idx, scores[idx], k)[0]


class CandidateGenerator:
    """Base class. Subclasses implement ``fit`` and ``score``."""

    name = "base"

    def get_params(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def _check_fitted(self) -> None:
        if not any(k.endswith("_") and not k.startswith("_") for k in vars(self)):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def fit(
        self, interactions: pd.DataFrame, users: pd.DataFrame | None = None, items: pd.DataFrame | None = None
    ) -> CandidateGenerator:
        raise NotImplementedError

    def score(
        self, user, items, history: pd.DataFrame | None = None, user_features: pd.DataFrame | None = None
    ) -> np.ndarray:
        """Scores of ``items`` for ``user`` (NaN where the generator cannot score).

        Args:
            user: external user key (may be unknown to the model).
            items: external item keys to score.
            history: the user's interactions (item, weight) up to now, when newer than training.
            user_features: one-row side-feature frame for users the model has not seen.
        """
        raise NotImplementedError

    def recommend(
        self,
        user,
        k: int,
        items=None,
        history: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
        exclude=(),
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``k`` of ``items`` (default: every item seen in training) minus ``exclude``."""
        self._check_fitted()
        items = self.known_items() if items is None else np.asarray(items)
        if len(exclude):
            items = items[~np.isin(items, np.asarray(list(exclude)))]
        if items.size == 0 or k <= 0:
            return items[:0], np.zeros(0)
        scores = np.asarray(
            self.score(user, items, history=history, user_features=user_features), dtype=np.float64
        )
        return top_k(items, scores, k)

    def recommend_batch(
        self, users, k: int, items=None, user_features: pd.DataFrame | None = None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``recommend`` for many users (same allowed items); subclasses may vectorise."""
        feats = None if user_features is None else user_features.set_index("user")
        return [
            self.recommend(u, k, items, user_features=None if feats is None else feats.loc[[u]].reset_index())
            for u in users
        ]

    def known_items(self) -> np.ndarray:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "params.json").write_text(json.dumps({"class": type(self).__name__, **self.get_params()}))
        state = {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}
        with open(path / "state.pkl", "wb") as f:
            pickle.dump(self._state_for_pickle(state), f, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    def _state_for_pickle(self, state: dict) -> dict:
        return state

    def _restore_state(self, state: dict) -> None:
        vars(self).update(state)

    @classmethod
    def load(cls, path: str | Path) -> CandidateGenerator:
        path = Path(path)
        params = json.loads((path / "params.json").read_text())
        name = params.pop("class")
        if name != cls.__name__:
            raise JobcareError(f"{path}: holds a {name}, not a {cls.__name__}")
        obj = cls(**params)
        with open(path / "state.pkl", "rb") as f:
            obj._restore_state(pickle.load(f))
        return obj
