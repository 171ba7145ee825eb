"""Generic implicit feedback: (user, item, timestamp, weight) tables, id maps and confidence matrices.

Nothing here knows about the world: any interactions table with columns ``user``, ``item`` and
optional ``timestamp`` and ``weight`` works, so the engine can run on public benchmark datasets too.
:func:`world_interactions` turns a world's events into such a table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from jobcare.config import EventWeights
from jobcare.errors import JobcareError

REQUIRED = ("user", "item")


class InteractionsError(JobcareError):
    """An interactions table breaks its contract (missing column, nulls, negative weights...)."""


def check_interactions(df: pd.DataFrame, name: str = "interactions") -> pd.DataFrame:
    """Validate a generic interactions table; return it with ``weight`` filled (1.0 when absent)."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InteractionsError(f"{name}: missing column(s) {missing}; need user, item [, timestamp, weight]")
    for c in REQUIRED:
        bad = df[c].isna().to_numpy()
        if bad.any():
            raise InteractionsError(
                f"{name}.{c}: {int(bad.sum())} null value(s), e.g. rows {np.flatnonzero(bad)[:5].tolist()}"
            )
    out = df if "weight" in df.columns else df.assign(weight=1.0)
    w = pd.to_numeric(out["weight"], errors="coerce").to_numpy()
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise InteractionsError(
            f"{name}.weight: {int(bad.sum())} value(s) not a finite number >= 0, e.g. rows "
            f"{np.flatnonzero(bad)[:5].tolist()}"
        )
    return out


@dataclass
class IdMap:
    """Stable mapping between external keys and dense row indices."""

    keys: np.ndarray

    def __post_init__(self):
        self._index = pd.Index(self.keys)

    @classmethod
    def fit(cls, keys) -> IdMap:
        """Sorted unique keys (ints or strings)."""
        return cls(pd.Index(pd.unique(np.asarray(keys))).sort_values().to_numpy())

    def __len__(self) -> int:
        return len(self.keys)

    def index(self, keys) -> np.ndarray:
        """Row indices of ``keys``; -1 for unknown keys."""
        return self._index.get_indexer(np.asarray(keys))


def confidence_matrix(df: pd.DataFrame, users: IdMap, items: IdMap) -> sp.csr_matrix:
    """Sum of weights per (user, item) as a CSR matrix (rows: users, columns: items); unknown ids dropped."""
    u, i = users.index(df["user"].to_numpy()), items.index(df["item"].to_numpy())
    ok = (u >= 0) & (i >= 0)
    m = sp.coo_matrix((df["weight"].to_numpy(np.float32)[ok], (u[ok], i[ok])), shape=(len(users), len(items)))
    m = m.tocsr()
    m.sum_duplicates()
    return m


def decayed(weight: np.ndarray, age_seconds: np.ndarray, half_life_days: float) -> np.ndarray:
    """Event weights halved every ``half_life_days`` of age (the one formula of every event history)."""
    return weight * 0.5 ** (age_seconds / 86_400 / half_life_days)


def world_interactions(
    events: pd.DataFrame, item_type: str, until: pd.Timestamp, weights: EventWeights
) -> pd.DataFrame:
    """A world's events on one item type before ``until`` as (user, item, timestamp, weight).

    weight = event-type weight * 0.5 ** (age_days / half_life_days), age measured at ``until``.
    """
    ev = events[(events["item_type"] == item_type) & (events["ts"] < until)]
    w = ev["event_type"].map(weights.by_type).fillna(0.0).to_numpy(np.float64)
    w = decayed(w, (until - ev["ts"]).dt.total_seconds().to_numpy(), weights.half_life_days)
    out = pd.DataFrame(
        {
            "user": ev["seeker_id"].to_numpy(np.int64),
            "item": ev["item_id"].to_numpy(np.int64),
            # the column as it is (tz-aware, in ns as before): ``to_numpy()`` would make 10M Timestamp
            # objects and the frame would parse them back (national postings 26.3 s a call, now 3.7 s:
            # benchmarks/national_parts.py, run on 8c33f5b)
            "timestamp": ev["ts"].dt.as_unit("ns").array,
            "weight": w,
        }
    )
    return out[out["weight"] > 0].reset_index(drop=True)
