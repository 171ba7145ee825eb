"""Closed-loop fairness (evaluation/online_fairness.py): group rates, ratios and the bootstrap of B - A."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.online_fairness import fairness


def _sessions(rates: dict, arm: str, first_id: int, per_seeker: int = 4, seekers: int = 30):
    """Per group, ``seekers`` seekers of ``arm`` with ``per_seeker`` sessions each, every seeker hitting
    at exactly the group's rate (so any resample of seekers gives the same group rates)."""
    rows, seg = [], []
    sid = first_id
    for (gender, band), rate in rates.items():
        for _ in range(seekers):
            hits = round(rate * per_seeker)
            for j in range(per_seeker):
                rows.append({"seeker_id": sid, "hit": float(j < hits), "exposure": 2.0 * rate})
            seg.append({"seeker_id": sid, "arm": arm, "gender": gender, "age_band": band})
            sid += 1
    return rows, seg


def test_identical_seekers_give_exact_ratios_and_a_zero_width_interval():
    a_rows, a_seg = _sessions({("F", "<30"): 0.25, ("M", "50+"): 0.5}, "A", 0)
    b_rows, b_seg = _sessions({("F", "<30"): 0.5, ("M", "50+"): 0.5}, "B", 1000)
    so = pd.DataFrame(a_rows + b_rows)
    seg = pd.DataFrame(a_seg + b_seg).set_index("seeker_id")
    res = fairness(so, seg, ["A", "B"], n_boot=200, seed=0)
    for dim in ("gender", "age_band"):
        r = res["dims"][dim]
        assert r["arms"]["A"]["hit_rate_ratio"] == pytest.approx(0.5)
        assert r["arms"]["A"]["exposure_ratio"] == pytest.approx(0.5)
        assert r["arms"]["B"]["hit_rate_ratio"] == pytest.approx(1.0)
        assert not r["arms"]["A"]["hit_rate_ratio_meets_0.8"] and r["arms"]["B"]["hit_rate_ratio_meets_0.8"]
        d = r["b_minus_a"]["hit_rate_ratio"]
        assert d["diff"] == pytest.approx(0.5) and d["ci_low"] == pytest.approx(0.5) == d["ci_high"]


def test_the_interval_widens_with_seeker_heterogeneity_and_covers_the_truth_mostly():
    rng = np.random.default_rng(0)
    rows, seg = [], []
    for arm, off in (("A", 0), ("B", 10_000)):
        for i in range(400):
            g = "F" if i % 2 else "M"
            p = 0.3 if g == "F" else 0.4  # true ratio 0.75 in both arms
            for _ in range(5):
                rows.append({"seeker_id": off + i, "hit": float(rng.random() < p), "exposure": p})
            seg.append({"seeker_id": off + i, "arm": arm, "gender": g, "age_band": "30-39"})
    res = fairness(pd.DataFrame(rows), pd.DataFrame(seg).set_index("seeker_id"), ["A", "B"], 500, 1)
    d = res["dims"]["gender"]["b_minus_a"]["hit_rate_ratio"]
    assert d["ci_low"] < 0 < d["ci_high"]  # same true ratio in both arms
    assert 0.05 < d["ci_high"] - d["ci_low"] < 0.5
    assert res["dims"]["gender"]["arms"]["A"]["exposure_ratio"] == pytest.approx(0.75)
    assert np.isnan(res["dims"]["age_band"]["arms"]["A"]["hit_rate_ratio"])  # one group: no ratio
