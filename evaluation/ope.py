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

The same estimators run on the service's impression logs (:func:`service_off_policy`): each record
holds the shown items with their logging propensities (``serving.engine.explore_slate``: the model's
order, or with probability epsilon a uniform draw from its top ``pool``), the outcomes come from an
outcome table keyed by request id (``jobcare world respond`` has the simulated seekers answer), and
the target is what a model would have shown for the same seeker, clock and filters, asked through the
service's own engine. A target item the logging policy could not have put at that position (outside
the pool, or anywhere but its own order when epsilon = 0) has no support: the estimate then misses its
applies, so the support (share of target positions with a positive logging propensity) is reported
with every estimate, and next to the world's true value the true applies of the supported positions
alone (what IPS is unbiased for); SNIPS and DR are unbiased for the true value only at support 1.
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
        logged: session -> (items as logged, rewards by logged position[, logging propensity of each
            logged item at its position; default 1/K, the world's uniformly random explore slates]).
        order_of: session -> the target policy's order of the same items.
        true_of: session -> true expected applies per slate under the target order (None without the
            world's truth: no "true" row).
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
        items, r = logged[s][:2]
        k = items.size
        prop = logged[s][2] if len(logged[s]) > 2 else np.full(k, 1.0 / k)
        target_pos = {int(x): j for j, x in enumerate(order_of[s])}
        match = np.array([target_pos.get(int(x), -1) == j for j, x in enumerate(items)], dtype=float)
        w = match / prop  # target prob 1[pi(x_j) = j] over the logging prob of x_j at j
        ips_t.append(float((r * w).sum()))
        dr_t.append(float(q[:k].sum() + (w * (r - q[:k])).sum()))
        num.append(float((r * w).sum()))
        den.append(float(w.mean()))  # E[mean_j w_j] = 1 under the logging policy (full support)
    ips_t, dr_t, num, den = map(np.asarray, (ips_t, dr_t, num, den))
    snips = float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")
    snips_se = float(np.sqrt(((num - snips * den) ** 2).sum()) / den.sum()) if den.sum() > 0 else float("nan")
    out = {"n_slates": len(sids), "true": None}  # true: only where the world's truth exists
    terms = [("ips", ips_t), ("dr", dr_t)]
    if true_of is not None:
        terms.append(("true", np.asarray([true_of[s] for s in sids])))
    for name, t in terms:
        m, lo, hi = mean_ci(t)
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


# ---------------------------------------------------------------- the service's impression logs

OUTCOME_COLUMNS = ("request_id", "item_id", "event_type")


class _ALSOrder:
    """``baseline:als`` as a ranker: stage one's ALS rank among the candidates. Scores the request
    path's matrix (columns ``features``, the champion bundle's) or a frame with ``cand_rank_als``."""

    def __init__(self, features: list[str]):
        self.column = features.index("cand_rank_als")

    def predict(self, X) -> np.ndarray:
        if isinstance(X, np.ndarray):
            return -X[:, self.column].astype(float)
        return -X["cand_rank_als"].to_numpy(float)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Exact additive contributions (the service's reasons read them): the whole score is the ALS
        rank's, every other feature and the expected score (last column) contribute 0."""
        X = np.asarray(X)
        out = np.zeros((X.shape[0], X.shape[1] + 1))
        out[:, self.column] = -X[:, self.column].astype(float)
        return out


def read_outcomes(path) -> pd.DataFrame:
    """Outcomes of logged responses (Parquet or CSV): request_id, item_id, event_type."""
    from evaluation.replay import EvaluationError
    from training.generic import read_table

    df = read_table(path, "outcomes")
    missing = [c for c in OUTCOME_COLUMNS if c not in df.columns]
    if missing:
        raise EvaluationError(f"outcomes {path}: missing columns {missing} (need {list(OUTCOME_COLUMNS)})")
    return df.astype({"request_id": str, "item_id": "int64", "event_type": str})


def service_slates(records: pd.DataFrame, outcomes: pd.DataFrame, item_type: str) -> tuple[dict, dict]:
    """(request id -> (items, rewards, propensities), counts of what was left out and why).

    Left out: responses to inline profiles (no seeker to ask the target about), degraded answers (no
    seeker features at the time), empty slates; and outcomes that match no shown item of a logged
    response (counted, never silently dropped)."""
    from jobcare.world.respond import known_seeker

    rec = records[records["item_type"] == item_type]
    acts = outcomes[outcomes["event_type"] == ACTION[item_type]]
    acted = set(zip(acts["request_id"], acts["item_id"]))
    skipped = {"inline profile": 0, "degraded": 0, "empty": 0}
    out, shown = {}, set()
    for r in rec.itertuples(index=False):
        items = np.asarray(r.items, np.int64)
        shown.update((r.request_id, int(i)) for i in items)
        if not items.size:
            skipped["empty"] += 1
        elif r.policy == "degraded":
            skipped["degraded"] += 1
        elif known_seeker(r.seeker) is None:
            skipped["inline profile"] += 1
        else:
            rew = np.array([(r.request_id, int(i)) in acted for i in items], dtype=float)
            out[r.request_id] = (items, rew, np.asarray(r.propensities, float))
    skipped["outcomes not matching a shown item"] = len(acted - shown)
    return out, skipped


def support_masks(rec: pd.DataFrame, orders: dict) -> dict:
    """request id -> per target position: could the logging policy have put the target's item there?
    (P = (1 - epsilon) * [the logged model's order has it there] + epsilon / pool * [it is in the pool].)
    ``rec``: the log records indexed by request id."""
    out = {}
    for rid, order in orders.items():
        pool, eps = np.asarray(rec.at[rid, "pool"], np.int64), float(rec.at[rid, "epsilon"])
        order = np.asarray(order, np.int64)
        k = order.size
        own = np.pad(pool[:k] == order[: pool[:k].size], (0, max(k - pool[:k].size, 0)))
        out[rid] = ((1 - eps) * own + (eps > 0) * np.isin(order, pool)) > 0
    return out


def support(masks: dict) -> float:
    """Mean share of target positions the logging policy could have filled with the target's item."""
    return float(np.mean([m.mean() for m in masks.values()])) if masks else float("nan")


def service_off_policy(cfg, world, impressions, outcomes, a: str, b: str, item_type: str, oracle) -> dict:
    """IPS / SNIPS / DR of the applies per slate models ``a`` and ``b`` would get on the service's logged
    requests, with the support and the world's true values; and the logged policy's observed applies."""
    from evaluation.replay import EvaluationError, model_bundle
    from jobcare.world.respond import known_seeker
    from serving.engine import Engine
    from serving.impressions import read_records
    from training.registry import CHAMPION

    records = read_records(impressions)
    logged, skipped = service_slates(records, read_outcomes(outcomes), item_type)
    if not logged:
        raise EvaluationError(
            f"impressions {impressions}: no logged {item_type} response with a known seeker ({skipped})"
        )
    rec = records[records["request_id"].isin(list(logged))].set_index("request_id")
    if rec["as_of"].isna().any():
        raise EvaluationError(
            f"impressions {impressions}: records without `as_of` (written by an older service)"
        )
    orders: dict = {"A": {}, "B": {}}
    bundles = {
        arm: None if m == "baseline:als" else model_bundle(m, item_type) for arm, m in (("A", a), ("B", b))
    }
    for as_of, ids in rec.groupby("as_of").groups.items():
        scfg = cfg.serving.model_copy(
            update={"as_of": str(as_of), "item_types": [item_type], "load_test_postings": 0}
        )
        engine = Engine(cfg.model_copy(update={"serving": scfg}), world)
        for arm, model in (("A", a), ("B", b)):
            if model == "baseline:als":
                import dataclasses

                base = engine.state.variants[CHAMPION].bundles[item_type]
                bundle = dataclasses.replace(base, ranker=_ALSOrder(base.features))
            else:
                bundle = bundles[arm]
            engine.add_variant(f"ope-{arm}", {item_type: bundle}, {item_type: model})
            for rid in ids:
                r = rec.loc[rid]
                f = r["filters"] or {}
                resp = engine.recommend(
                    item_type,
                    seeker_id=known_seeker(r["seeker"]),
                    k=len(logged[rid][0]),
                    regions=f.get("regions") or None,
                    occupations=f.get("occupations") or None,
                    variant=f"ope-{arm}",
                    explore=False,
                )
                orders[arm][rid] = np.array([i["id"] for i in resp["items"]], dtype=np.int64)
    requests = pd.DataFrame(
        {
            "session_id": list(logged),
            "seeker_id": [known_seeker(rec.at[rid, "seeker"]) for rid in logged],
            "event_timestamp": [rec.at[rid, "as_of"] for rid in logged],
        }
    )
    out: dict = {
        "n_slates": len(logged),
        "skipped": skipped,
        "explored_share": float((rec["policy"] == "explore").mean()),
        "epsilon": sorted(float(e) for e in rec["epsilon"].unique()),
        "variants": {str(k): int(v) for k, v in rec["variant"].value_counts().items()},
    }
    for arm in ("A", "B"):
        masks = support_masks(rec, orders[arm])
        if oracle is None:  # a service without the simulator's truth: the estimates only
            out[arm] = estimate(logged, orders[arm], None)
            out[arm]["support"] = support(masks)
            out[arm]["true_supported"] = None
            continue
        probs = {
            rid: oracle.slate_apply_probability(
                item_type, known_seeker(rec.at[rid, "seeker"]), o, rec.at[rid, "as_of"]
            )
            for rid, o in orders[arm].items()
        }
        out[arm] = estimate(logged, orders[arm], {rid: float(p.sum()) for rid, p in probs.items()})
        out[arm]["support"] = support(masks)
        # what IPS can see: the true applies of the supported positions only
        m, lo, hi = mean_ci(np.array([float((probs[rid] * masks[rid]).sum()) for rid in logged]))
        out[arm]["true_supported"] = {"estimate": m, "ci_low": lo, "ci_high": hi}
    out["logged"] = logged_values(logged, oracle, item_type, requests)
    return out


def logged_values(logged: dict, oracle, item_type: str, requests: pd.DataFrame) -> dict:
    """The logging policy's observed applies per slate and, with an oracle, their true expectation."""
    m, lo, hi = mean_ci(np.array([v[1].sum() for v in logged.values()]))
    out = {"observed": {"estimate": m, "ci_low": lo, "ci_high": hi}, "true": None}
    if oracle is not None:
        truth = true_values({sid: v[0] for sid, v in logged.items()}, oracle, item_type, requests)
        tm, tlo, thi = mean_ci(np.array(list(truth.values())))
        out["true"] = {"estimate": tm, "ci_low": tlo, "ci_high": thi}
    return out
