"""Paired statistics and off-policy estimators: pure functions over arrays.

- :func:`paired_bootstrap`: mean paired difference (B - A over the same keys, e.g. seekers) with a 95%
  percentile-bootstrap interval; used by the promotion gate and the A/B report.
- :func:`ratio_ci`: a ratio of two means over the same units (e.g. ranker / oracle NDCG) with a 95%
  bootstrap interval.
- :func:`paired_permutation_p`: two-sided p-value of a paired sign-flip permutation test.
- :func:`ips`, :func:`snips`, :func:`doubly_robust`: off-policy estimates of a target policy's mean
  reward from logs of another policy, each with a 95% interval (normal approximation for IPS and DR
  over per-record terms; SNIPS by the delta method).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Z95 = 1.959963984540054


def paired_bootstrap(b: pd.Series, a: pd.Series, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean of b - a over shared keys, with a 95% bootstrap interval and the relative lift over a."""
    both = b.index.intersection(a.index)
    d = (b.loc[both] - a.loc[both]).to_numpy(float)
    if d.size == 0:
        raise ValueError("no shared keys between the two series")
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, d.size, (n_boot, d.size))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    base = float(a.loc[both].mean())
    return {
        "mean_diff": float(d.mean()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n_seekers": int(d.size),
        "mean_a": base,
        "mean_b": float(b.loc[both].mean()),
        "lift": float(d.mean() / base) if base else float("nan"),
    }


def ratio_ci(
    num: np.ndarray, den: np.ndarray, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """mean(num) / mean(den) over paired units (e.g. requests) with a 95% percentile-bootstrap interval."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num.size, (n_boot, num.size))
    boots = num[idx].mean(axis=1) / den[idx].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(num.mean() / den.mean()), float(lo), float(hi)


def paired_permutation_p(d: np.ndarray, n_perm: int = 5000, seed: int = 0) -> float:
    """Two-sided p-value of H0 "the paired differences ``d`` are symmetric around 0" (random sign flips)."""
    d = np.asarray(d, float)
    if d.size == 0 or not np.any(d):
        return 1.0
    rng = np.random.default_rng(seed)
    obs = abs(d.mean())
    signs = rng.choice([-1.0, 1.0], size=(n_perm, d.size))
    null = np.abs((signs * d).mean(axis=1))
    return float((1 + (null >= obs - 1e-15).sum()) / (n_perm + 1))


def mean_ci(terms: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% normal-approximation interval."""
    m = float(terms.mean())
    se = float(terms.std(ddof=1) / np.sqrt(terms.size)) if terms.size > 1 else float("nan")
    return m, m - Z95 * se, m + Z95 * se


def ips(reward, target_prob, logging_prob) -> dict:
    """Inverse propensity scoring: mean of r * pi(a|x) / mu(a|x) over logged records."""
    w = np.asarray(target_prob, float) / np.asarray(logging_prob, float)
    m, lo, hi = mean_ci(np.asarray(reward, float) * w)
    return {"estimate": m, "ci_low": lo, "ci_high": hi, "n": int(w.size)}


def snips(reward, target_prob, logging_prob) -> dict:
    """Self-normalised IPS: sum(w r) / sum(w); interval by the delta method."""
    w = np.asarray(target_prob, float) / np.asarray(logging_prob, float)
    r = np.asarray(reward, float)
    if w.sum() <= 0:
        return {"estimate": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": int(w.size)}
    est = float((w * r).sum() / w.sum())
    se = float(np.sqrt(((w * (r - est)) ** 2).sum()) / w.sum())
    return {"estimate": est, "ci_low": est - Z95 * se, "ci_high": est + Z95 * se, "n": int(w.size)}


def doubly_robust(reward, target_prob, logging_prob, q_logged, q_target) -> dict:
    """Doubly robust: q_target(x) + w * (r - q_logged(x, a)), where ``q_logged`` is the reward model at
    the logged action and ``q_target`` its expectation under the target policy for the same record."""
    w = np.asarray(target_prob, float) / np.asarray(logging_prob, float)
    terms = np.asarray(q_target, float) + w * (np.asarray(reward, float) - np.asarray(q_logged, float))
    m, lo, hi = mean_ci(terms)
    return {"estimate": m, "ci_low": lo, "ci_high": hi, "n": int(w.size)}
