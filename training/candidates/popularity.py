"""Popularity: items ranked by their summed (time-decayed) interaction weight. Same list for everyone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.candidates.base import CandidateGenerator
from training.interactions import IdMap, check_interactions


class PopularityRecommender(CandidateGenerator):
    name = "popularity"

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def fit(self, interactions: pd.DataFrame, users=None, items=None) -> PopularityRecommender:
        df = check_interactions(interactions)
        w = df.groupby("item")["weight"].sum()
        self.items_ = IdMap(w.index.to_numpy())
        self.item_scores_ = w.to_numpy(np.float64)
        return self

    def known_items(self) -> np.ndarray:
        return self.items_.keys

    def score(self, user, items, history=None, user_features=None) -> np.ndarray:
        self._check_fitted()
        idx = self.items_.index(np.asarray(items))
        return np.where(idx >= 0, self.item_scores_[np.maximum(idx, 0)], 0.0)
