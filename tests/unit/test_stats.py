"""Paired statistics and off-policy estimators on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation import stats


def test_bootstrap_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_diff, covered, reps = 0.05, 0, 200
    for rep in range(reps):
        a = pd.Series(rng.beta(2, 5, 300))
        b = a + true_diff + rng.normal(0, 0.2, 300)
        ci = stats.paired_bootstrap(b, a, n_boot=500, seed=rep)
        covered += ci["ci_low"] <= true_diff <= ci["ci_high"]
    assert 0.90 <= covered / reps <= 0.99  # nominal 0.95, a coarse band for 200 seeded draws


def test_permutation_p_value_separates_a_real_effect_from_none():
    rng = np.random.default_rng(1)
    assert stats.paired_permutation_p(rng.normal(0.3, 1, 400)) < 0.001
    assert stats.paired_permutation_p(rng.normal(0.0, 1, 400)) > 0.05
    assert stats.paired_permutation_p(np.zeros(10)) == 1.0


def _bandit(seed: int, n: int = 40_000, n_actions: int = 5):
    """Contexts x, a uniform-ish logging policy mu, a different target policy pi, rewards Bernoulli(q)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    q = 1 / (1 + np.exp(-(np.arange(n_actions)[None, :] * 0.4 * x[:, None] - 1.5)))  # true reward model
    mu = np.full((n, n_actions), 1 / n_actions) * 0.5 + 0.5 * np.eye(n_actions)[rng.integers(0, n_actions, n)]
    a = np.array([rng.choice(n_actions, p=row) for row in mu])
    r = (rng.random(n) < q[np.arange(n), a]).astype(float)
    pi = np.eye(n_actions)[np.where(x > 0, n_actions - 1, 0)]  # deterministic, context-dependent
    true = float((pi * q).sum(axis=1).mean())
    return x, a, r, mu, pi, q, true


def test_ips_snips_and_dr_land_within_their_interval_of_the_true_rate():
    x, a, r, mu, pi, q, true = _bandit(3)
    idx = np.arange(len(a))
    tp, lp = pi[idx, a], mu[idx, a]
    for est in (stats.ips(r, tp, lp), stats.snips(r, tp, lp)):
        assert est["ci_low"] <= true <= est["ci_high"], (est, true)
    q_hat = np.clip(q + np.random.default_rng(4).normal(0, 0.05, q.shape), 0, 1)  # an imperfect model
    dr = stats.doubly_robust(r, tp, lp, q_hat[idx, a], (pi * q_hat).sum(axis=1))
    assert dr["ci_low"] <= true <= dr["ci_high"], (dr, true)
    assert dr["ci_high"] - dr["ci_low"] < stats.ips(r, tp, lp)["ci_high"] - stats.ips(r, tp, lp)["ci_low"]
    logged = r.mean()
    assert abs(logged - true) > 0.02  # the target policy really differs from the logging one


def test_slate_estimators_recover_a_reordered_policys_applies_from_uniform_slates():
    """Position-based world: P(apply | item x at position j) = examine(j) * appeal(x). Logged slates are
    uniformly random orders; the target orders them by a noisy appeal score."""
    from evaluation import ope

    rng = np.random.default_rng(7)
    K, n_slates = 5, 6000
    examine = 1 / (1 + np.arange(K))
    logged, orders, true = {}, {}, {}
    for s in range(n_slates):
        items = rng.choice(1000, K, replace=False)
        appeal = ((items * 7919) % 1000) / 1000 * 0.6  # fixed per item
        shown = rng.permutation(K)
        r = (rng.random(K) < examine * appeal[shown]).astype(float)
        logged[s] = (items[shown], r)
        score = appeal + rng.normal(0, 0.1, K)
        order = items[np.argsort(-score)]
        orders[s] = order
        true[s] = float((examine * (((order * 7919) % 1000) / 1000 * 0.6)).sum())
    est = ope.estimate(logged, orders, true)
    t = est["true"]["estimate"]
    for name in ("ips", "snips", "dr"):
        assert est[name]["ci_low"] <= t <= est[name]["ci_high"], (name, est[name], t)
    observed = np.mean([r.sum() for _, r in logged.values()])
    assert t - observed > 0.05  # the target really differs from the random logging order


def test_explore_slate_propensities_equal_the_empirical_frequencies():
    """The service's logging policy: the logged propensity of (item, position) is what it does."""
    from jobcare.config import ExploreConfig
    from serving.engine import explore_slate

    ranked = np.array([4, 2, 7, 0, 9, 1, 3, 8, 5, 6])  # the model's order (indices into a frame)
    cfg = ExploreConfig(epsilon=0.3, pool=6, salt="t")
    k, n = 3, 20_000
    counts = np.zeros((10, k))
    logged = {}
    for i in range(n):
        shown, prop, explored, pool = explore_slate(ranked, k, f"req-{i}", cfg)
        assert pool == 6 and len(set(shown)) == k and set(shown) <= set(ranked[:6])
        counts[shown, np.arange(k)] += 1
        for j, x in enumerate(shown):
            logged[(int(x), j)] = prop[j]
    freq = counts / n
    for (x, j), p in logged.items():
        assert abs(freq[x, j] - p) < 0.01, (x, j, freq[x, j], p)
    assert abs(logged[(4, 0)] - (0.7 + 0.3 / 6)) < 1e-12 and abs(logged[(0, 0)] - 0.05) < 1e-12
    # epsilon 0: the model's order, propensity 1; the same request id always gets the same slate
    shown, prop, explored, _ = explore_slate(ranked, k, "x", ExploreConfig())
    assert shown.tolist() == [4, 2, 7] and prop.tolist() == [1.0, 1.0, 1.0] and not explored
    a = explore_slate(ranked, k, "req-5", cfg)
    b = explore_slate(ranked, k, "req-5", cfg)
    assert a[0].tolist() == b[0].tolist()


def test_slate_estimators_with_logged_propensities_recover_another_models_applies():
    """Logs from the service's policy (the model's top k, or with probability epsilon k of its top
    ``pool`` at random) value a different model's top k; support 1 since its items lie in the pool."""
    from evaluation import ope
    from jobcare.config import ExploreConfig
    from serving.engine import explore_slate

    rng = np.random.default_rng(3)
    K, M, n_slates = 4, 8, 8000
    cfg = ExploreConfig(epsilon=0.4, pool=M, salt="s")
    examine = 1 / (1 + np.arange(K))
    logged, orders, true, records = {}, {}, {}, []
    for s in range(n_slates):
        items = rng.choice(1000, 20, replace=False)
        appeal = ((items * 7919) % 1000) / 1000 * 0.6
        ranked = np.argsort(-(appeal + rng.normal(0, 0.3, items.size)), kind="stable")  # logging model
        shown, prop, _, _ = explore_slate(ranked, K, f"r{s}", cfg)
        r = (rng.random(K) < examine * appeal[shown]).astype(float)
        logged[s] = (items[shown], r, prop)
        target = ranked[:M][np.argsort(-appeal[ranked[:M]], kind="stable")][:K]  # re-ranks the pool
        orders[s] = items[target]
        true[s] = float((examine * appeal[target]).sum())
        records.append({"request_id": s, "pool": items[ranked[:M]].tolist(), "epsilon": cfg.epsilon})
    est = ope.estimate(logged, orders, true)
    t = est["true"]["estimate"]
    for name in ("ips", "snips", "dr"):
        assert est[name]["ci_low"] <= t <= est[name]["ci_high"], (name, est[name], t)
    observed = np.mean([v[1].sum() for v in logged.values()])
    assert t - observed > 0.03  # the target really differs from what was logged
    rec = pd.DataFrame(records).set_index("request_id")
    assert ope.support(ope.support_masks(rec, orders)) == 1.0


def test_support_counts_the_target_positions_the_logging_policy_could_fill():
    from evaluation import ope

    rec = pd.DataFrame(
        [
            {"request_id": "a", "pool": [1, 2, 3, 4], "epsilon": 0.0},  # the model's order only
            {"request_id": "b", "pool": [1, 2, 3, 4], "epsilon": 0.2},  # anything in the pool
        ]
    )
    rec = rec.set_index("request_id")
    masks = ope.support_masks(rec, {"a": np.array([1, 3]), "b": np.array([4, 9])})
    assert masks["a"].tolist() == [True, False]  # position 2 held 2, never 3
    assert masks["b"].tolist() == [True, False]  # 9 is outside the pool
    assert ope.support(masks) == 0.5
    assert ope.support(ope.support_masks(rec, {"a": np.array([1, 2]), "b": np.array([3, 1])})) == 1.0


def test_ratio_interval_holds_the_ratio_of_means_and_covers_the_truth():
    rng = np.random.default_rng(1)
    hits = 0
    for rep in range(100):
        den = rng.uniform(0.5, 1.0, 300)
        num = 0.8 * den + rng.normal(0, 0.1, 300)  # true ratio of means: 0.8
        r, lo, hi = stats.ratio_ci(num, den, n_boot=500, seed=rep)
        assert r == num.mean() / den.mean() and lo < r < hi
        hits += lo <= 0.8 <= hi
    assert 88 <= hits <= 100
