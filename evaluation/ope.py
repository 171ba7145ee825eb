"""Off-policy estimates of the applies a model would get, from the world's logged explore slates.

The logging policy's explore slates are uniformly random: given the slate's items, every order is
equally likely, so the item the log shows at position j was put there with probability 1/K (K = slate
size). The target policy is "the model orders the same slate": it puts item x at position pi(x). In the
world an apply depends on the item and its position only (examination x appeal), so the item-position
estimators are unbiased for the expected applies per slate under the model's order:

- IPS:   per slate, sum_j r_j * 1[pi(x_j) = j] * K
- SNIPS: sum over slates of the IPS numerators over the sum of sum_j 1[pi(x_j) = j] (weights), scaled by K
- DR:    per slate, sum_j q(j) + 1[pi(x_j) = j] * K * (r_j - q(j)), with q(j) the logged apply rate at
  position j (a position-only reward model)

with 95% intervals over slates (normal approximation; the delta method for SNIPS). The true value is
the world's: sum_j P(apply | seeker, x at position j) for the model's order, from the oracle.

The service's impression logs (``serving.impressions.read_impressions``) record a deterministic policy
without propensities, so they describe what a model showed but cannot re-weight it into another
policy's value; the estimates here use the world's logs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evaluation.stats import Z95, mean_ci
from training.candidates.world import ACTION


def slates(t: dict, item_type: str, session_ids) -> dict:
    """Per explore session: (ordered item ids as logged, reward per position)."""
    imp = t["impressions"]
    imp = imp[imp["session_id"].isin(session_ids) & (imp["item_type"] == item_type)].sort_values(
        ["session_id", "position"]
    )
    ev = t["events"]
    acts = ev[(ev["event_type"] == ACTION[item_type]) & ev["session_id"].isin(session_ids)]
    acted = set(zip(acts["session_id"], acts["item_id"]))
    out = {}
    for sid, g in imp.groupby("session_id", sort=True):
        items = g["item_id"].to_numpy()
        out[sid] = (items, np.array([(sid, int(i)) in acted for i in items], dtype=float))
    return out


def estimate(logged: dict, order_of: dict, true_of: dict) -> dict:
    """IPS / SNIPS / DR of expected applies per slate for the target order, and the true value.

    Args:
        logged: session -> (items as logged, rewards by logged position).
        order_of: session -> the target policy's order of the same items.
        true_of: session -> true expected applies per slate under the target order.
    """
    sids = [s for s in logged if s in order_of]
    K = max(len(logged[s][0]) for s in sids)
    # position-only reward model from the logs
    q = np.zeros(K)
    n = np.zeros(K)
    for s in sids:
        r = logged[s][1]
        q[: r.size] += r
        n[: r.size] += 1
    q = q / np.maximum(n, 1)
    ips_t, dr_t, num, den = [], [], [], []
    for s in sids:
        items, r = logged[s]
        k = items.size
        target_pos = {int(x): j for j, x in enumerate(order_of[s])}
        match = np.array([target_pos[int(x)] == j for j, x in enumerate(items)], dtype=float)
        w = match * k  # target prob 1[pi(x_j) = j] over logging prob 1/k
        ips_t.append(float((r * w).sum()))
        dr_t.append(float(q[:k].sum() + (w * (r - q[:k])).sum()))
        num.append(float((r * match).sum()))
        den.append(float(match.sum() / k))
    ips_t, dr_t, num, den = map(np.asarray, (ips_t, dr_t, num, den))
    snips = float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")
    snips_se = float(np.sqrt(((num - snips * den) ** 2).sum()) / den.sum()) if den.sum() > 0 else float("nan")
    true = np.asarray([true_of[s] for s in sids])
    out = {"n_slates": len(sids)}
    for name, terms in (("ips", ips_t), ("dr", dr_t), ("true", true)):
        m, lo, hi = mean_ci(terms)
        out[name] = {"estimate": m, "ci_low": lo, "ci_high": hi}
    out["snips"] = {"estimate": snips, "ci_low": snips - Z95 * snips_se, "ci_high": snips + Z95 * snips_se}
    return out


def model_orders(rows: pd.DataFrame, score: np.ndarray, logged: dict, session_of: pd.Series) -> dict:
    """session -> the logged slate's items ordered by the model's score; ties broken by item id, never by
    the logged order (a target that copied the logged order would break the estimators' assumption)."""
    df = pd.DataFrame(
        {"request_id": rows["request_id"].to_numpy(), "item_id": rows["item_id"].to_numpy(), "s": score}
    )
    out = {}
    for rid, g in df.groupby("request_id", sort=True):
        sid = session_of[rid]
        if sid not in logged:
            continue
        items = logged[sid][0]
        sc = g.set_index("item_id")["s"].reindex(items).fillna(-np.inf).to_numpy()
        out[sid] = items[np.lexsort((items, -sc))]
    return out


def true_values(orders: dict, oracle, item_type: str, requests: pd.DataFrame) -> dict:
    """session -> the world's expected applies of the slate in the given order."""
    req = requests.set_index("session_id")
    return {
        sid: float(
            oracle.slate_apply_probability(
                item_type, int(req.at[sid, "seeker_id"]), order, req.at[sid, "event_timestamp"]
            ).sum()
        )
        for sid, order in orders.items()
    }
