"""Closed-loop fairness of an online A/B inside the world (``jobcare world simulate``): does an arm widen
or narrow the gap between seeker groups that the other arm leaves?

Per arm, over the continued period's posting sessions, for each gender and each age band:
- **apply hit rate**: the share of the group's sessions with at least one apply;
- **relevant exposure**: the mean over the group's sessions of the expected applies the slate offered,
  sum over its positions of the world's true ``p_apply`` (examination at that position x apply
  probability given the seeker's true utility): the position-discounted exposure of items relevant to
  that seeker, with the world's own examination and relevance.

For each dimension, the min/max ratio across its groups (against 0.8, the four-fifths rule), and the
difference of B's ratio minus A's with a 95% bootstrap interval: seekers resampled within each arm, each
group's rate recomputed as total hits (or exposure) over total sessions. A positive difference means B
narrows the gap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobcare.world.io import TRUTH_DIR

DIMS = ("gender", "age_band")
THRESHOLD = 0.8


def session_outcomes(tables: dict, first_session: int, item_type: str = "posting") -> pd.DataFrame:
    """The continued sessions of ``item_type``: seeker_id, hit (an apply from the session) and exposure
    (the slate's summed true p_apply)."""
    s = tables["sessions"]
    s = s[(s["session_id"] >= first_session) & (s["item_type"] == item_type)]
    ev = tables["events"]
    applied = ev.loc[(ev["event_type"] == "apply") & ev["session_id"].isin(s["session_id"]), "session_id"]
    truth = tables[f"{TRUTH_DIR}/impressions"]
    exposure = truth[truth["session_id"].isin(s["session_id"])].groupby("session_id")["p_apply"].sum()
    return pd.DataFrame(
        {
            "session_id": s["session_id"].to_numpy(),
            "seeker_id": s["seeker_id"].to_numpy(),
            "hit": s["session_id"].isin(applied).to_numpy(float),
            "exposure": exposure.reindex(s["session_id"]).fillna(0.0).to_numpy(),
        }
    )


def _per_seeker(so: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Per seeker: sessions, hits and exposure summed, with the seeker's arm and groups."""
    g = so.groupby("seeker_id").agg(
        sessions=("hit", "size"), hit=("hit", "sum"), exposure=("exposure", "sum")
    )
    return g.join(segments, how="left")


def _ratio(rates: pd.Series) -> float:
    return float(rates.min() / rates.max()) if len(rates) > 1 and rates.max() > 0 else float("nan")


def _rates(ps: pd.DataFrame, dim: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    tot = ps.groupby(dim)[["sessions", "hit", "exposure"]].sum()
    return tot["hit"] / tot["sessions"], tot["exposure"] / tot["sessions"], tot["sessions"]


def _boot_ratios(ps: pd.DataFrame, dim: str, n_boot: int, rng) -> np.ndarray:
    """(n_boot, 2): the hit-rate and exposure ratios over resamples of the arm's seekers."""
    groups = pd.Categorical(ps[dim])
    codes, k = groups.codes, len(groups.categories)
    vals = ps[["sessions", "hit", "exposure"]].to_numpy(float)
    out = np.empty((n_boot, 2))
    for b in range(n_boot):
        idx = rng.integers(0, len(ps), len(ps))
        tot = np.zeros((k, 3))
        np.add.at(tot, codes[idx], vals[idx])
        ok = tot[:, 0] > 0
        for j, col in enumerate((1, 2)):
            r = tot[ok, col] / tot[ok, 0]
            out[b, j] = r.min() / r.max() if ok.sum() > 1 and r.max() > 0 else np.nan
    return out


def fairness(so: pd.DataFrame, segments: pd.DataFrame, arms: list[str], n_boot: int = 1000, seed: int = 0):
    """The closed-loop fairness report (module docstring). ``segments``: per seeker id, ``arm`` and the
    columns of :data:`DIMS`; ``arms``: [A, B]."""
    ps = _per_seeker(so, segments)
    res: dict = {"threshold": THRESHOLD, "item_type": "posting", "dims": {}}
    for dim in DIMS:
        by_arm, boots = {}, {}
        for arm in arms:
            a = ps[ps["arm"] == arm]
            hit, exp, n = _rates(a, dim)
            by_arm[arm] = {
                "groups": {
                    str(g): {
                        "sessions": int(n[g]),
                        "apply_hit_rate": float(hit[g]),
                        "exposure": float(exp[g]),
                    }
                    for g in n.index
                },
                "hit_rate_ratio": _ratio(hit),
                "exposure_ratio": _ratio(exp),
            }
            for key in ("hit_rate_ratio", "exposure_ratio"):
                by_arm[arm][f"{key}_meets_{THRESHOLD}"] = bool(by_arm[arm][key] >= THRESHOLD)
            boots[arm] = _boot_ratios(
                a, dim, n_boot, np.random.default_rng([seed, len(res["dims"]), len(boots)])
            )
        a, b = arms
        diff = {}
        for j, key in enumerate(("hit_rate_ratio", "exposure_ratio")):
            d = boots[b][:, j] - boots[a][:, j]
            d = d[np.isfinite(d)]
            diff[key] = {
                "diff": by_arm[b][key] - by_arm[a][key],
                "ci_low": float(np.percentile(d, 2.5)) if d.size else float("nan"),
                "ci_high": float(np.percentile(d, 97.5)) if d.size else float("nan"),
            }
        res["dims"][dim] = {"arms": by_arm, "b_minus_a": diff}
    return res


def markdown(res: dict, arms: list[str]) -> str:
    a, b = arms
    lines = [
        "",
        "## Fairness in closed loop (posting sessions)",
        "",
        "Apply hit rate: share of sessions with an apply. Relevant exposure: the slate's expected applies "
        "(the world's true p_apply summed over positions). Ratio: min/max across groups (four-fifths: 0.8).",
        "",
        f"| dimension | measure | {a} ratio | {b} ratio | {b} - {a} [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for dim, r in res["dims"].items():
        for key, label in (("hit_rate_ratio", "apply hit rate"), ("exposure_ratio", "relevant exposure")):
            d = r["b_minus_a"][key]
            lines.append(
                f"| {dim} | {label} | {r['arms'][a][key]:.3f} | {r['arms'][b][key]:.3f} | "
                f"{d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] |"
            )
    lines += ["", f"| dimension | group | {a} hit rate | {b} hit rate | {a} exposure | {b} exposure |"]
    lines.append("|---|---|---|---|---|---|")
    for dim, r in res["dims"].items():
        for g in sorted(set(r["arms"][a]["groups"]) | set(r["arms"][b]["groups"])):
            ga, gb = r["arms"][a]["groups"].get(g, {}), r["arms"][b]["groups"].get(g, {})
            lines.append(
                f"| {dim} | {g} | {ga.get('apply_hit_rate', float('nan')):.4f} | "
                f"{gb.get('apply_hit_rate', float('nan')):.4f} | {ga.get('exposure', float('nan')):.4f} | "
                f"{gb.get('exposure', float('nan')):.4f} |"
            )
    return "\n".join(lines) + "\n"
