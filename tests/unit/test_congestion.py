"""Congestion-aware re-ranking (serving/congestion.py): the discount by hand, its live counts from the
offer index, weight 0 and off keep the ranker's order, off is the default."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from jobcare.config import CongestionConfig, ProjectConfig
from serving.congestion import congestion, discount, expected_congestion, rerank
from training.offers import OfferIndex

T0 = pd.Timestamp("2024-01-10", tz="UTC")


def test_discount_by_hand():
    # applicants per opening: 0, 3/1, 2/2, 4/2, 5/0 (no opening left counts as one)
    c = expected_congestion([0, 3, 2, 4, 5], [1, 1, 2, 2, 0])
    got = discount([1.0, 1.0, 1.0, 2.0, 0.0], c, weight=0.5)
    want = [
        1.0,
        1.0 - 0.5 * math.log(4),
        1.0 - 0.5 * math.log(2),
        2.0 - 0.5 * math.log(3),
        -0.5 * math.log(6),
    ]
    assert np.allclose(got, want)
    assert np.allclose(expected_congestion([0, 3], [1, 1]), [0.0, 1.3862943611198906])


def test_more_applicants_per_opening_scores_lower():
    a = np.arange(10)
    got = discount(np.ones(10), expected_congestion(a, np.full(10, 2)), weight=0.3)
    assert (np.diff(got) < 0).all()
    # same applicants, more openings left: less discount
    assert (
        discount([1.0], expected_congestion([4], [4]), 0.3)[0]
        > discount([1.0], expected_congestion([4], [1]), 0.3)[0]
    )


class _Arrays:
    """The two things the stage reads of ItemArrays: positions of ids and the per-state cache."""

    def __init__(self, keys):
        self.keys = np.asarray(keys, np.int64)
        self._pos = np.full(int(self.keys.max()) + 1, -1, np.int64)
        self._pos[self.keys] = np.arange(self.keys.size)
        self._derived: dict = {}

    def __len__(self):
        return self.keys.size

    def positions(self, ids):
        ids = np.asarray(ids, np.int64)
        out = np.full(ids.size, -1, np.int64)
        ok = ids < self._pos.size
        out[ok] = self._pos[ids[ok]]
        return out

    def derived(self, name, build):
        if name not in self._derived:
            self._derived[name] = build()
        return self._derived[name]


def _state(as_of=T0):
    """Postings 0-3 (headcounts 1, 2, 3, 1). Posting 0: 3 applies, 1 hire (full); posting 1: 4 applies, 1
    hire; posting 2: 1 apply; posting 3: none; one apply to posting 2 after the clock."""
    ev = [
        (10, 0, "apply", "2024-01-01"),
        (11, 0, "apply", "2024-01-02"),
        (12, 0, "apply", "2024-01-02"),
        (10, 0, "hire", "2024-01-05"),
        *[(20 + s, 1, "apply", "2024-01-03") for s in range(4)],
        (21, 1, "hire", "2024-01-08"),
        (30, 2, "apply", "2024-01-04"),
        (31, 2, "apply", "2024-01-11"),  # after the clock: not counted
    ]
    events = pd.DataFrame(
        {
            "seeker_id": [e[0] for e in ev],
            "item_type": "posting",
            "item_id": [e[1] for e in ev],
            "event_type": [e[2] for e in ev],
            "ts": pd.to_datetime([e[3] for e in ev], utc=True),
        }
    )
    postings = pd.DataFrame({"posting_id": [0, 1, 2, 3], "headcount": [1, 2, 3, 1]})
    offers = OfferIndex({"events": events, "postings": postings}, "posting")
    arrays = _Arrays([3, 2, 1, 0])  # positions are not ids
    return SimpleNamespace(as_of=as_of, arrays={"posting": arrays}, offers={"posting": offers})


def test_live_counts_from_the_offer_index():
    st = _state()
    ids, applied, left = st.offers["posting"].load(T0)
    assert ids.tolist() == [0, 1, 2, 3]
    assert applied.tolist() == [3, 4, 1, 0] and left.tolist() == [0, 1, 3, 1]
    c = congestion(st)  # by position: postings 3, 2, 1, 0
    assert np.allclose(c, [0.0, math.log1p(1 / 3), math.log1p(4), math.log1p(3)])
    assert congestion(st) is c  # built once per state
    # before the hire of posting 1 it still had two openings
    _, applied, left = st.offers["posting"].load(pd.Timestamp("2024-01-06", tz="UTC"))
    assert applied.tolist() == [3, 4, 1, 0] and left.tolist() == [0, 2, 3, 1]


def test_weight_zero_keeps_the_order_and_off_keeps_the_scores():
    st = _state()
    cand = np.array([0, 1, 2])  # positions: postings 3, 2, 1
    scores = np.array([0.2, 0.5, 0.9])
    same, info = rerank(scores, cand, st, "posting", CongestionConfig(enabled=True, weight=0.0))
    assert info == {"weight": 0.0}
    assert np.argsort(-same, kind="stable").tolist() == np.argsort(-scores, kind="stable").tolist()
    got, info = rerank(scores, cand, st, "posting", CongestionConfig(enabled=True, weight=0.5))
    assert np.allclose(got, [0.2, 0.5 - 0.5 * math.log1p(1 / 3), 0.9 - 0.5 * math.log(5)])
    assert np.argsort(-got).tolist() == [1, 0, 2]  # the crowded posting 1 falls from first to last
    for cfg in (None, CongestionConfig(weight=0.5), ProjectConfig().serving.congestion):
        out, info = rerank(scores, cand, st, "posting", cfg)
        assert out is scores and info is None
    # courses and certificates are never re-ranked
    out, info = rerank(scores, cand, st, "course", CongestionConfig(enabled=True, weight=0.5))
    assert out is scores and info is None


def test_off_by_default():
    assert ProjectConfig().serving.congestion == CongestionConfig(enabled=False, weight=0.5)
    with pytest.raises(ValueError):
        CongestionConfig(weight=-1)


def test_arm_option_and_its_named_errors():
    from evaluation.online_ab import ArmOptionError, parse_arms

    a, b = parse_arms(
        "A=models:/jobcare-postings@champion,B=models:/jobcare-postings@champion?congestion=0.5"
    )
    assert a.congestion is None and a.model_uri == a.uri
    assert b.congestion == CongestionConfig(enabled=True, weight=0.5)
    assert b.model_uri == "models:/jobcare-postings@champion" and b.uri.endswith("?congestion=0.5")
    (c, _) = parse_arms("A=models:/x@champion?fairness=0.5&congestion=1,B=baseline:random")
    assert c.fairness == 0.5 and c.congestion.weight == 1.0 and c.model_uri == "models:/x@champion"
    assert a.fairness is None
    for bad, rule in (
        ("A=baseline:random?congestion=1,B=baseline:oracle", "model URIs only"),
        ("A=models:/x@champion?congestion=abc,B=baseline:random", "not a weight"),
        ("A=models:/x@champion?congestion=-1,B=baseline:random", "not a weight"),
        ("A=models:/x@champion?congestion=nan,B=baseline:random", "not a weight"),
        ("A=models:/x@champion?congestion,B=baseline:random", "not key=value"),
        ("A=models:/x@champion?diversity=1,B=baseline:random", "unknown or repeated"),
        ("A=models:/x@champion?fairness=1.5,B=baseline:random", "not a content weight"),
        ("A=models:/x@champion?fairness=x,B=baseline:random", "not a content weight"),
        ("A=models:/x@champion?fairness=nan,B=baseline:random", "not a content weight"),
        ("A=models:/x@champion?fairness=-0.1,B=baseline:random", "not a content weight"),
        ("A=baseline:random?fairness=1,B=baseline:oracle", "model URIs only"),
        ("A=models:/x@champion?congestion=1&congestion=2,B=baseline:random", "unknown or repeated"),
    ):
        with pytest.raises(ArmOptionError, match=rule):
            parse_arms(bad)
