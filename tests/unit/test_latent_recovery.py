"""benchmarks/latent_recovery.py: the seekers' activity figures and the bound with the items' true factors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.benchmark_scripts import load


def test_activity_counts_sessions_and_applies_per_seeker_and_month_registered():
    """Seeker 0 leaves after 30 days with 3 sessions and 2 applies; seeker 1 stays to the last session (60
    days) with 1 session and no apply: 90 days registered in all."""

    def ts(days):
        return pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=days)

    t = {
        "seekers": pd.DataFrame({"seeker_id": [0, 1], "registered_at": [ts(0), ts(0)]}),
        "seeker_exits": pd.DataFrame({"seeker_id": [0], "exited_at": [ts(30)]}),
        "sessions": pd.DataFrame({"seeker_id": [0, 0, 0, 1], "ts": [ts(1), ts(2), ts(3), ts(60)]}),
        "events": pd.DataFrame({"seeker_id": [0, 0, 0], "event_type": ["apply", "view", "apply"]}),
    }
    months = 90 / 30.4
    assert load("latent_recovery").activity(t) == {
        "seekers": 2,
        "months_registered": round(months / 2, 3),
        "sessions_per_seeker": 2.0,
        "sessions_per_seeker_month": round(4 / months, 3),
        "applies_per_seeker_month": round(2 / months, 3),
        "median_applies_per_seeker": 1.0,
    }


def test_held_item_factors_stay_fixed_and_the_tastes_are_learnt_against_them():
    """Views drawn from known key factors and planted tastes: with the factors held, the fit keeps them
    bit for bit and recovers the tastes' scores; without them it must learn both (and the same seed
    gives a different, freely learnt factor table)."""
    rng = np.random.default_rng(0)
    n_s, n_k, dim, n = 60, 30, 8, 60_000
    taste, factors = rng.normal(0, 1, (n_s, dim)), rng.normal(0, 1, (n_k, dim))
    s, k = rng.integers(0, n_s, n), rng.integers(0, n_k, n)
    pos = rng.integers(0, 10, n)
    offset = rng.normal(0, 1, n)
    logit = offset + (taste[s] * factors[k]).sum(1) / np.sqrt(dim) - 1.0 - 0.1 * pos
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    mf = load("latent_recovery").ImpressionMF(epochs=10).fit(s, k, pos, offset, y, fixed_b=factors)
    np.testing.assert_array_equal(mf.b.weight.detach().numpy(), factors.astype(np.float32))
    true = (taste[:, None, :] * factors[None, :, :]).sum(2)  # (seeker, key)
    corr = [np.corrcoef(mf.score(i, np.arange(n_k)), true[i])[0, 1] for i in range(n_s)]
    assert np.mean(corr) > 0.9 and min(corr) > 0.6
    # 1,000 impressions a seeker: one history bin; the learnt tastes' scores (without the key biases)
    # against the true ones, over the keys
    (rec,) = load("latent_recovery").taste_recovery(mf, taste, n_k)
    learnt = mf.a.weight.detach().numpy() @ factors.T
    taste_corr = [np.corrcoef(learnt[i], true[i])[0, 1] for i in range(n_s)]
    assert rec["impressions"] == "over 400" and rec["seekers"] == n_s
    assert rec["corr_mean"] == pytest.approx(np.mean(taste_corr), abs=1e-4) and rec["corr_mean"] > 0.9
    free = load("latent_recovery").ImpressionMF(epochs=10).fit(s, k, pos, offset, y)
    assert not np.allclose(free.b.weight.detach().numpy(), factors)


def test_true_key_factors_average_each_parents_items_and_known_taste_scores_against_them():
    s = load("latent_recovery")
    items = pd.DataFrame(
        {
            "item_type": "posting",
            "item_id": [2, 0, 1],
            "bias": 0.0,
            "z0": [5.0, 1.0, 3.0],
            "z1": [0.0, 2.0, 4.0],
        }
    )
    parent = {0: 0, 1: 0, 2: 2}  # items 0 and 1 share parent 0; parent 1 has no item
    b = s.true_key_factors(items, lambda ids: np.array([parent[int(i)] for i in ids]))
    np.testing.assert_array_equal(b, [[2.0, 3.0], [0.0, 0.0], [5.0, 0.0]])
    known = s.KnownTaste(np.array([[1.0, -1.0], [0.0, 2.0]]), b)
    np.testing.assert_array_equal(known.score(1, [2, 0]), [0.0, 6.0])
