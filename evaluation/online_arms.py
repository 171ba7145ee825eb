"""Arm policies for the online A/B inside the world: who shows the slate of each continued session.

Every policy is called by the world's loop once per day and item type with that day's sessions
(``policy(item_type, session_ids, seekers, days, open_items, excluded)``) and returns, per session, None
or (shown columns of ``open_items``, P(item at its position), P(item in the slate), explored, n available),
as :func:`jobcare.world.simulate.choose_slate` does.

- ``baseline:legacy``: None in :class:`ArmRouter`: the world's own logging policy (with its epsilon).
- ``baseline:random``: a uniformly random K-permutation of the available items (exact propensities).
- ``baseline:oracle``: the available items by the world's true expected utility at the session, then the
  service's exploration (:func:`serving.engine.explore_slate`, ``serving.explore``).
- a registry model URI (``models:/...``, ``runs:/...``): :class:`evaluation.online_engine.EngineArm`, the
  service's request path (stage one, union, ranker) over the continued world's features as of the day,
  then the same exploration.
"""

from __future__ import annotations

import hashlib

import numpy as np

from jobcare.config import ExploreConfig
from jobcare.world.simulate import LEGACY
from serving.engine import explore_slate

BASELINE_ARMS = ("baseline:legacy", "baseline:random", "baseline:oracle")


def arm_of(seeker_ids, salt: str, split: float) -> np.ndarray:
    """1 (arm B) for a seeker whose hash of (salt, seeker id) falls below ``split``, else 0 (arm A): the
    service's routing rule (:func:`serving.engine.route_variant`), stable for a seeker across sessions."""
    out = np.zeros(len(seeker_ids), np.int8)
    for k, s in enumerate(seeker_ids):
        h = int.from_bytes(hashlib.sha256(f"{salt}:{int(s)}".encode()).digest()[:8], "big") / 2**64
        out[k] = h < split
    return out


def available(item_type: str, seeker: int, open_items: np.ndarray, excluded: dict, held) -> np.ndarray:
    """Columns of ``open_items`` the seeker may be shown: not acted on, certificates not held."""
    ok = np.ones(open_items.size, bool)
    gone = excluded.get(int(seeker), ())
    if gone:
        ok &= ~np.isin(open_items, np.fromiter(gone, np.int64, len(gone)))
    if item_type == "certificate":
        ok &= ~held[int(seeker), open_items]
    return np.flatnonzero(ok)


def served_slate(
    ranked_cols: np.ndarray, k: int, request_id: str, ecfg: ExploreConfig, n_available: int | None = None
):
    """The service's exploration over a ranking (columns, best first) as a world slate tuple; the number
    available is ``n_available`` (default: the ranking's length; a model ranks only its candidates)."""
    if ranked_cols.size == 0:
        return None
    shown, prop, explored, pool = explore_slate(np.arange(ranked_cols.size), k, request_id, ecfg)
    kk = shown.size
    slate_prop = (1 - ecfg.epsilon) * (shown < kk) + ecfg.epsilon * kk / pool * (shown < pool)
    n_av = int(ranked_cols.size) if n_available is None else int(n_available)
    return ranked_cols[shown], prop, slate_prop, explored, n_av


class RandomArm:
    """A uniformly random slate of the available items (its own seeded stream)."""

    def __init__(self, world_in, seed: int):
        self.inp = world_in
        self.rng = np.random.default_rng([int(seed), 7])

    def begin_day(self, d: int, live: dict) -> None:
        pass

    def __call__(self, it, sid, seeker, day, open_items, excluded):
        out = []
        for s in seeker:
            cols = available(it, s, open_items, excluded, self.inp.state.certificates)
            if cols.size == 0:
                out.append(None)
                continue
            k = min(self.inp.slate_size, cols.size)
            shown = self.rng.choice(cols, k, replace=False)
            out.append((shown, np.full(k, 1 / cols.size), np.full(k, k / cols.size), True, int(cols.size)))
        return out


class OracleArm:
    """The available items ranked by the world's true expected utility (live competencies), one batch
    of pairs per day and item type, then the service's exploration."""

    def __init__(self, world_in, ecfg: ExploreConfig, salt: str):
        self.inp, self.ecfg, self.salt = world_in, ecfg, salt

    def begin_day(self, d: int, live: dict) -> None:
        pass

    def __call__(self, it, sid, seeker, day, open_items, excluded):
        inp = self.inp
        cols = [available(it, s, open_items, excluded, inp.state.certificates) for s in seeker]
        n = np.array([c.size for c in cols])
        if n.sum() == 0:
            return [None] * len(seeker)
        s_rep = np.repeat(seeker, n)
        mu = inp.arrays.mu(inp.params, it, s_rep, open_items[np.concatenate(cols)], inp.state)[0]
        out, at = [], 0
        for g, c in enumerate(cols):
            m = mu[at : at + c.size]
            at += c.size
            ranked = c[np.lexsort((open_items[c], -m))]  # ties by item id
            out.append(served_slate(ranked, inp.slate_size, f"{self.salt}:{int(sid[g])}", self.ecfg))
        return out


class ArmRouter:
    """The slate policy of the continued world: each session goes to its seeker's arm (None: legacy)."""

    def __init__(self, arms: list, assignment: np.ndarray):
        self.arms, self.assignment = arms, assignment
        self.calls = {k: 0 for k in range(len(arms))}

    def begin_day(self, d: int, live: dict) -> None:
        for a in self.arms:
            if a is not None:
                a.begin_day(d, live)

    def __call__(self, it, sid, seeker, day, open_items, excluded):
        arm = self.assignment[seeker]
        out: list = [LEGACY] * len(seeker)
        for k, policy in enumerate(self.arms):
            idx = np.flatnonzero(arm == k)
            self.calls[k] += idx.size
            if idx.size == 0 or policy is None:
                continue
            for j, slate in zip(idx, policy(it, sid[idx], seeker[idx], day[idx], open_items, excluded)):
                out[j] = slate
        return out
