"""The A/B report's off-policy estimates before the cut next to the online effect after it (issue 18:
"OPE validated against online truth").

Before the cut: the report's estimators (:mod:`evaluation.ope`) on the world's explore slates of the
``window`` days before the continuation's first day (replayed as the report replays its window): the
applies per slate a model would get if it ordered the same uniformly random slate (IPS, SNIPS, DR, each
with its 95% interval, and the world's true value of that order), and the logged random order's observed
applies. After it: each arm's applies per session of the item type in the continuation, observed (95%
interval over sessions) and expected (the sum over the slate of P(examine) x P(apply) from the
continuation's truth).

The two measure one policy only for the random arm: its online slate is a uniformly random slate of the
available items in random order, the logging policy's explore slate, so its two columns should agree up to
the change of seekers and catalogue between the periods. A model's off-policy target only reorders a
random slate; online it chooses the slate among every available item. The gap between the two columns is
what choosing the slate adds, which no estimate over these logs can see (a model's top items are rarely on
a random slate).
"""

from __future__ import annotations

import pandas as pd

from evaluation import ope
from evaluation.stats import mean_ci
from jobcare.world.io import TRUTH_DIR
from training.candidates.world import ACTION

MODEL_URIS = ("models:/", "runs:/")


def online_per_session(tables: dict, arm_of_seeker: pd.Series, item_type: str) -> dict:
    """Per arm: the continuation's sessions of ``item_type``, applies per session (observed, with a 95%
    interval) and their expectation under the world's truth."""
    sess = tables["sessions"]
    sess = sess[sess["item_type"] == item_type]
    ev = tables["events"]
    acts = ev[(ev["event_type"] == ACTION[item_type]) & ev["session_id"].isin(sess["session_id"])]
    n = acts.groupby("session_id").size().reindex(sess["session_id"], fill_value=0).to_numpy(float)
    imp = tables["impressions"][["session_id", "position"]]
    truth = tables[f"{TRUTH_DIR}/impressions"]
    exp = imp.merge(truth, on=["session_id", "position"])
    exp = (exp["p_examine"] * exp["p_apply"]).groupby(exp["session_id"]).sum()
    exp = exp.reindex(sess["session_id"], fill_value=0.0).to_numpy(float)
    arm = arm_of_seeker.reindex(sess["seeker_id"]).to_numpy()
    out = {}
    for name in sorted(set(arm_of_seeker.unique())):
        m = arm == name
        o, t = mean_ci(n[m]), mean_ci(exp[m])
        out[str(name)] = {
            "n_sessions": int(m.sum()),
            "observed": {"estimate": o[0], "ci_low": o[1], "ci_high": o[2]},
            "true": {"estimate": t[0], "ci_low": t[1], "ci_high": t[2]},
        }
    return out


def ope_vs_online(
    world, cfg, res: dict, tables: dict, arm_of_seeker: pd.Series, window_days: int, max_requests: int
) -> dict:
    """Side by side per arm: the off-policy estimate of its applies per slate on the explore slates of the
    ``window_days`` before the cut, and its online applies per session after it (module doc). The item
    type is the model arm's (postings when no arm is a model)."""
    from evaluation.replay import replay, scores

    models = res.get("model_arms", {})
    item_type = next(iter(m["item_type"] for m in models.values()), "posting")
    cut = pd.Timestamp(res["from"])
    ex = replay(world, cfg, item_type, window_days, max_requests, "explore", end=cut)
    req = ex.data.requests
    logged = ope.slates(ex.tables, item_type, req["session_id"])
    session_of = req.set_index("request_id")["session_id"]
    logged_order = ope.logged_values(logged, ex.oracle, item_type, req)
    online = online_per_session(tables, arm_of_seeker, item_type)
    arms = {}
    for arm in res["arms"]:
        name, uri = arm["name"], arm["uri"]
        entry = {"uri": uri, "online": online.get(name)}
        if uri == "baseline:random":
            entry["off_policy"] = {"logged_random_order": logged_order}
            entry["same_policy"] = True
        elif uri.startswith(MODEL_URIS) and models[name]["item_type"] == item_type:
            sc, label = scores(uri, ex)
            orders = ope.model_orders(ex.data.rows, sc, logged, session_of)
            truth = ope.true_values(orders, ex.oracle, item_type, req) if ex.oracle is not None else None
            entry["off_policy"] = ope.estimate(logged, orders, truth)
            entry["same_policy"] = False
        else:
            entry["off_policy"] = None
            entry["same_policy"] = None
        arms[name] = entry
    return {
        "item_type": item_type,
        "window": [str(cut - pd.Timedelta(days=window_days)), str(cut)],
        "explore_slates_before": len(logged),
        "arms": arms,
    }


def markdown(r: dict) -> str:
    """The side-by-side table of :func:`ope_vs_online`."""

    def ci(x):
        if not x:
            return "-"
        return f"{x['estimate']:.3f} [{x['ci_low']:.3f}, {x['ci_high']:.3f}]"

    lines = [
        f"## Off-policy estimates before the cut vs the online effect after it ({r['item_type']}s)",
        "",
        f"Before: {r['explore_slates_before']} explore slates in [{r['window'][0]}, {r['window'][1]}); "
        "applies per slate. After: applies per session of the continuation.",
        "",
        "| arm | before: IPS | SNIPS | DR | true | after: observed | true | same policy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, e in r["arms"].items():
        op, on = e["off_policy"] or {}, e["online"] or {}
        if "logged_random_order" in op:
            lg = op["logged_random_order"]
            before = [f"observed {ci(lg['observed'])}", "-", "-", ci(lg["true"])]
        else:
            before = [ci(op.get("ips")), ci(op.get("snips")), ci(op.get("dr")), ci(op.get("true"))]
        same = {True: "yes", False: "no: reorders a random slate", None: "-"}[e["same_policy"]]
        lines.append(
            f"| {name} ({e['uri']}) | " + " | ".join(before) + f" | {ci(on.get('observed'))} | "
            f"{ci(on.get('true'))} | {same} |"
        )
    return "\n".join(lines) + "\n"
