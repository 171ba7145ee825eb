"""Congestion-aware re-ranking of postings (issue 18), configured by ``serving.congestion`` and off by
default.

When every seeker is sent to the same few postings, applicants crowd them and fewer are hired overall:
the world screens each applicant with a chance that falls with the posting's applicants per opening. The
stage trades a seeker's own fit against that crowding: after the ranker's ``predict`` and before
exploration (:func:`serving.engine.explore_slate`), each candidate posting's score becomes

    score - weight * log1p(applicants so far / openings not yet filled)

with both counts live at the state's clock, from the :class:`training.offers.OfferIndex` the allowed mask
already uses (applies before the clock; hires at or before it). The service computes them once per
item refresh; the online A/B inside the world once per simulated day, from the continued world's events
(:class:`evaluation.online_engine.EngineDays`): one definition, one function (:func:`congestion`).
Exploration and its logged propensities then work over the re-ranked order, as the service logs them.
"""

from __future__ import annotations

import numpy as np

from jobcare.config import CongestionConfig

ITEM_TYPE = "posting"  # the stage re-ranks postings only (the objective is hires)


def expected_congestion(applicants, openings) -> np.ndarray:
    """log1p(applicants / openings left), openings floored at 1 (a posting still offered has one left)."""
    a = np.asarray(applicants, np.float64)
    o = np.maximum(np.asarray(openings, np.float64), 1.0)
    return np.log1p(a / o)


def discount(scores, congestion_values, weight: float) -> np.ndarray:
    """The re-ranked scores: ``scores - weight * congestion`` (:func:`expected_congestion` per item)."""
    return np.asarray(scores, np.float64) - weight * np.asarray(congestion_values, np.float64)


def congestion(state, item_type: str = ITEM_TYPE) -> np.ndarray:
    """Per position of ``state.arrays[item_type]``: the expected congestion at ``state.as_of`` (0 for an item
    without applies or capacity), built once per state (cached on the item arrays)."""
    arrays, offers, as_of = state.arrays[item_type], state.offers[item_type], state.as_of

    def build() -> np.ndarray:
        ids, applied, left = offers.load(as_of)
        out = np.zeros(len(arrays), np.float64)
        pos = arrays.positions(ids)
        ok = pos >= 0
        out[pos[ok]] = expected_congestion(applied[ok], left[ok])
        return out

    return arrays.derived(f"congestion@{as_of.value}", build)


def rerank(
    scores: np.ndarray, candidates: np.ndarray, state, item_type: str, cfg: CongestionConfig | None
) -> tuple[np.ndarray, dict | None]:
    """(scores to rank by, what to log). Off (``cfg`` None or not enabled) or not postings: the ranker's
    scores unchanged and None; else the discounted scores of the ``candidates`` (positions in the state's
    item arrays) and ``{"weight": ...}`` for the response's logging."""
    if cfg is None or not cfg.enabled or item_type != ITEM_TYPE:
        return scores, None
    return discount(scores, congestion(state, item_type)[candidates], cfg.weight), {
        "weight": float(cfg.weight)
    }
