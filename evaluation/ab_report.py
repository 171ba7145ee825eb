"""``jobcare ab-report``: compare two model versions on the same replayed requests.

Statistics (written into the report too):
- Per seeker, each metric is the mean over the seeker's requests in the window; A and B are compared
  on the same seekers (paired).
- Difference B - A and relative lift with a 95% paired-bootstrap interval (2,000 resamples of
  seekers) and a two-sided paired permutation p-value (5,000 random sign flips).
- Decision on NDCG@10: "B better" if the interval lies above 0 and p < 0.05, "B worse" if it lies below
  0 and p < 0.05, otherwise "no significant difference".
- Segments (warm / cold seekers, region, education level, age band, gender, desired occupation major
  group): the same paired difference with its interval and n; groups with fewer than 20 seekers are
  listed without an interval.
- Fairness audit, per model, across gender and across age bands: exposure share (each group's mean
  position-discounted exposure of relevant items in the top 10, as a share of the groups' total) and
  apply hit rate (an apply-or-better outcome in the top 10); the min/max ratio across groups is shown
  against 0.8 (the four-fifths rule) and 0.9.
- Beyond accuracy: catalogue coverage, exposure Gini, intra-list diversity by occupation group, novelty.
- Off-policy estimates (:mod:`evaluation.ope`): from the world's logged explore slates of the window
  (uniformly random, so the within-slate order has known propensity 1/K), IPS, SNIPS and doubly-robust
  estimates of the applies per slate each model would get by ordering those slates, with 95%
  intervals, next to the true value from the world's ground truth and the logged applies.
- Optionally the same estimators on the service's impression log (``--impressions`` with
  ``--outcomes``): the logged propensities of the service's exploration (``serving.explore``), each
  model asked through the service's engine what it would have shown, and the support of each model
  under the logging policy (the estimates are unbiased only at support 1).

Outputs: one self-contained HTML file (plots embedded), a Markdown summary and a JSON of every number,
next to each other, all logged as artifacts of an MLflow run named ``ab-report``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation import metrics as M
from evaluation import ope, stats
from evaluation.replay import BASELINES, KS, ORACLES, EvaluationError, per_request, replay, scores
from jobcare.config import ProjectConfig
from jobcare.groups import age_band
from jobcare.world.taxonomy import EDUCATION as TAXONOMY_EDUCATION

HEADLINE = "ndcg@10"
METRICS = ["ndcg@10", "recall@10", "precision@10", "map@10", "mrr@10", "hit@10", "apply_hit@10"]
MIN_GROUP = 20
EDUCATION = {i: e.replace("_", " ") for i, e in enumerate(TAXONOMY_EDUCATION)}
LOGGED_CAVEAT = (
    "Logged labels exist only where the logging policy put items, and seekers look at the top of a "
    "slate: a model that imitates the logging policy's order collects those labels, so this comparison "
    "favours imitation (a model can look better than the oracle on it). The decision above is made on "
    "the explore slates, whose order was uniformly random."
)


def decide(boot: dict, p: float) -> str:
    if boot["ci_low"] > 0 and p < 0.05:
        return "B better"
    if boot["ci_high"] < 0 and p < 0.05:
        return "B worse"
    return "no significant difference"


def _per_seeker(pr: pd.DataFrame, seeker: pd.Series, col: str) -> pd.Series:
    return pr[col].groupby(seeker.reindex(pr.index).to_numpy()).mean()


def compare(pa: pd.DataFrame, pb: pd.DataFrame, seeker: pd.Series, n_boot: int, seed: int = 0) -> dict:
    out = {}
    for m in METRICS:
        a, b = _per_seeker(pa, seeker, m), _per_seeker(pb, seeker, m)
        boot = stats.paired_bootstrap(b, a, n_boot, seed)
        both = a.index.intersection(b.index)
        boot["p_value"] = stats.paired_permutation_p((b[both] - a[both]).to_numpy())
        out[m] = boot
    return out


def _named(ids: pd.Series, names: dict | None) -> pd.Series:
    """Ids as "name (id)" where the world names them (regions, occupation groups), else the id."""
    ids = ids.astype(int)
    if not names:
        return ids.astype(str)
    return ids.map(lambda i: f"{names[i]} ({i})" if i in names else ("none" if i < 0 else str(i)))


def segments(pa, pb, seeker, audit: pd.DataFrame, n_boot: int, names: dict | None = None) -> dict:
    """Per segment, the paired NDCG@10 difference; ``names``: {"region": {id: name}, "occupation_group":
    {id: name}} so that the report names regions and occupation groups, not ids."""
    names = names or {}
    per_seek = audit.drop_duplicates("seeker_id").set_index("seeker_id")
    dims = {
        "seeker history": per_seek["cold"].map({True: "cold", False: "warm"}),
        "region": _named(per_seek["region_id"], names.get("region")),
        "education level": per_seek["education_level"].astype(int).map(lambda e: EDUCATION.get(e, str(e))),
        "age band": per_seek["age"].map(age_band),
        "gender": per_seek["gender"].astype(str),
        "occupation major group": _named(per_seek["occupation_group"], names.get("occupation_group")),
    }
    a, b = _per_seeker(pa, seeker, HEADLINE), _per_seeker(pb, seeker, HEADLINE)
    out = {}
    for dim, group in dims.items():
        rows = []
        for value, ids in group.groupby(group).groups.items():
            ids = a.index.intersection(ids)
            row = {
                "group": str(value),
                "n": int(len(ids)),
                "mean_a": float(a[ids].mean()),
                "mean_b": float(b[ids].mean()),
            }
            if len(ids) >= MIN_GROUP:
                boot = stats.paired_bootstrap(b[ids], a[ids], n_boot, 0)
                row.update(diff=boot["mean_diff"], ci_low=boot["ci_low"], ci_high=boot["ci_high"])
            else:
                row.update(diff=float((b[ids] - a[ids]).mean()), ci_low=None, ci_high=None)
            rows.append(row)
        out[dim] = rows
    return out


def segment_names(world) -> dict:
    """The world's names of regions and occupation groups (the tables every world carries)."""
    from jobcare.world.io import read_tables

    t = read_tables(world, ["regions", "occupation_groups"])
    return {
        "region": t["regions"].set_index("region_id")["name"].to_dict(),
        "occupation_group": t["occupation_groups"].set_index("group_id")["name"].to_dict(),
    }


def fairness(pr: pd.DataFrame, audit: pd.DataFrame) -> dict:
    au = audit.set_index("request_id").reindex(pr.index)
    groups = {"gender": au["gender"].astype(str), "age band": au["age"].map(age_band)}
    out = {}
    for dim, g in groups.items():
        exp = pr["top10_relevant_exposure"].groupby(g.to_numpy()).mean()
        hit = pr["apply_hit@10"].groupby(g.to_numpy()).mean()
        n = pr.groupby(g.to_numpy()).size()
        share = exp / exp.sum() if exp.sum() > 0 else exp * 0
        ratio = lambda s: float(s.min() / s.max()) if s.max() > 0 else float("nan")  # noqa: E731
        out[dim] = {
            "groups": {
                k: {"n": int(n[k]), "exposure_share": float(share[k]), "apply_hit_rate": float(hit[k])}
                for k in n.index
            },
            "exposure_ratio": ratio(exp),
            "hit_rate_ratio": ratio(hit),
        }
        for key in ("exposure_ratio", "hit_rate_ratio"):
            out[dim][f"{key}_meets_0.8"] = out[dim][key] >= 0.8
            out[dim][f"{key}_meets_0.9"] = out[dim][key] >= 0.9
    return out


TRADEOFF_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
UNDER_SERVED = 0.9  # a group below this share of the best group's exposure or hit rate is re-ranked


def _with_outcome(rows: pd.DataFrame) -> pd.DataFrame:
    """The explore rows of requests with an outcome (the unbiased comparison's requests)."""
    has_pos = rows.groupby("request_id")["label"].max() > 0
    return rows[rows["request_id"].map(has_pos).to_numpy()]


def _blended(rows: pd.DataFrame, s: np.ndarray, c: np.ndarray, w: float, on: np.ndarray) -> np.ndarray:
    """The service's exposure-aware scores (:func:`serving.fairness.blend`, per request) for the rows of
    requests whose seeker is in a re-ranked group (``on``, per row); the ranker's scores elsewhere."""
    from serving.fairness import blend

    out = np.asarray(s, np.float64).copy()
    for idx in rows.groupby("request_id", sort=False).indices.values():
        if on[idx[0]]:
            out[idx] = blend(s[idx], c[idx], w)
    return out


def _in_groups(rows: pd.DataFrame, audit: pd.DataFrame, dim: str, groups: list[str]) -> np.ndarray:
    """Per row: whether the request's seeker is in one of ``groups`` of ``dim``."""
    from jobcare.groups import group_of

    au = audit.set_index("request_id")
    chosen = pd.Series(
        [group_of(dim, g, a) in groups for g, a in zip(au["gender"], au["age"])], index=au.index
    )
    return chosen.reindex(rows["request_id"].to_numpy(), fill_value=False).to_numpy()


def fairness_tradeoff(rp, ex, model: str, item_type: str) -> dict:
    """The exposure-aware re-ranking (``serving.fairness``) of ``model`` at each of
    :data:`TRADEOFF_WEIGHTS`, per dimension: re-ranked are the groups whose relevant exposure or apply hit
    rate on the logged replay (``rp``) is below :data:`UNDER_SERVED` of the best group's (the lowest group
    when none is); each point gives the fairness audit's ratios on the logged replay and on the explore
    slates, and the explore-slate NDCG@10 (per seeker, requests with an outcome) with its cost against
    weight 0. The explore slates are the unbiased measure of the cost; hit rate on them is not reported
    (a 10-item slate's top 10 is the whole slate, whatever its order)."""
    from evaluation.replay import model_bundle

    bundle = model_bundle(model, item_type)
    if bundle.content is None:
        return {"missing": f"{model} was registered without its content-only ablation: nothing to blend"}
    lrows, xrows = rp.data.rows, _with_outcome(ex.data.rows)
    if xrows.empty:
        return {"missing": "no explore slate with an outcome in the window"}
    ls, lc = bundle.ranker.predict(lrows), bundle.content.predict(lrows)
    xs, xc = bundle.ranker.predict(xrows), bundle.content.predict(xrows)
    unblended = per_request(lrows, ls), per_request(xrows, xs)  # weight 0, the same for both dimensions
    base = fairness(unblended[0], rp.audit)
    seeker = ex.audit.set_index("request_id")["seeker_id"]
    out: dict = {"model": model, "weights": list(TRADEOFF_WEIGHTS), "under_served": UNDER_SERVED}
    for dim in ("gender", "age band"):
        g0 = base[dim]["groups"]
        exp = {g: v["exposure_share"] for g, v in g0.items()}
        hit = {g: v["apply_hit_rate"] for g, v in g0.items()}
        low = [
            g
            for g in g0
            if exp[g] < UNDER_SERVED * max(exp.values()) or hit[g] < UNDER_SERVED * max(hit.values())
        ] or [min(exp, key=exp.get)]

        lon, xon = _in_groups(lrows, rp.audit, dim, low), _in_groups(xrows, ex.audit, dim, low)
        points = []
        for w in TRADEOFF_WEIGHTS:
            lp, xp = (
                unblended
                if w == 0
                else (
                    per_request(lrows, _blended(lrows, ls, lc, w, lon)),
                    per_request(xrows, _blended(xrows, xs, xc, w, xon)),
                )
            )
            logged, explore = fairness(lp, rp.audit)[dim], fairness(xp, ex.audit)[dim]
            points.append(
                {
                    "content_weight": w,
                    "explore_ndcg@10": float(_per_seeker(xp, seeker, HEADLINE).mean()),
                    "logged_exposure_ratio": logged["exposure_ratio"],
                    "logged_hit_rate_ratio": logged["hit_rate_ratio"],
                    "explore_exposure_ratio": explore["exposure_ratio"],
                    "groups": {
                        g: {
                            "logged_exposure_share": v["exposure_share"],
                            "logged_apply_hit_rate": v["apply_hit_rate"],
                        }
                        for g, v in logged["groups"].items()
                    },
                }
            )
        for pt in points:
            pt["explore_ndcg_cost"] = 1.0 - pt["explore_ndcg@10"] / points[0]["explore_ndcg@10"]
        out[dim] = {"re_ranked_groups": low, "points": points}
    return out


def beyond_accuracy(
    pr: pd.DataFrame, rows: pd.DataFrame, item_type: str, popularity: dict, n_users: int
) -> dict:
    occ = rows.drop_duplicates("item_id").set_index("item_id")["occupation_id"]
    lists = [lst[:10] for lst in pr["items"]]
    catalogue = rows["item_id"].nunique()
    return {
        "catalogue_coverage": M.catalogue_coverage(lists, catalogue),
        "exposure_gini": M.gini_exposure(lists, catalogue, 10),
        "intra_list_diversity": float(
            np.mean([M.intra_list_diversity(occ.reindex(lst).to_numpy()) for lst in lists])
        ),
        "novelty": float(np.mean([M.novelty(lst, popularity, n_users) for lst in lists])),
    }


def unbiased(ex, a: str, b: str, n_boot: int) -> dict:
    """The paired comparison on the window's explore slates: each model orders the ten items a uniformly
    random slate showed, so neither is favoured by the logging policy's order; requests with an outcome,
    per seeker, paired (the same statistics as the logged comparison)."""
    rows = _with_outcome(ex.data.rows)
    if rows.empty:
        return {"n_requests": 0, "n_seekers": 0, "comparison": None, "baselines": {}}
    sub = dataclasses.replace(ex, data=dataclasses.replace(ex.data, rows=rows))
    pa, pb = per_request(rows, scores(a, sub)[0]), per_request(rows, scores(b, sub)[0])
    seeker = ex.audit.set_index("request_id")["seeker_id"].reindex(pa.index)
    # the built-in baselines on the same slates (the oracle only where the world has truth)
    names = [m for m in BASELINES if m not in ORACLES or ex.oracle is not None]
    baselines, missing = {}, {}
    for m in names:
        try:
            sc, label = scores(m, sub)
        except EvaluationError as e:  # e.g. no champion with a content ablation: said in the report
            missing[m] = str(e)
            continue
        baselines[m] = {
            "label": label,
            "ndcg@10": float(_per_seeker(per_request(rows, sc), seeker, HEADLINE).mean()),
        }
    return {
        "n_requests": int(len(pa)),
        "n_seekers": int(seeker.nunique()),
        "comparison": compare(pa, pb, seeker, n_boot) if seeker.nunique() >= 2 else None,
        "baselines": baselines,
        "baselines_missing": missing,
    }


def off_policy(item_type: str, a: str, b: str, ex) -> dict:
    """IPS / SNIPS / DR of each model's applies per explore slate, the true values (where the world has
    truth) and the logged ones, on the explore replay ``ex``."""
    req = ex.data.requests
    logged = ope.slates(ex.tables, item_type, req["session_id"])
    session_of = req.set_index("request_id")["session_id"]
    out: dict = {"window_explore_slates": len(logged)}
    for arm, model in (("A", a), ("B", b)):
        sc, _ = scores(model, ex)
        orders = ope.model_orders(ex.data.rows, sc, logged, session_of)
        truth = ope.true_values(orders, ex.oracle, item_type, req) if ex.oracle is not None else None
        out[arm] = ope.estimate(logged, orders, truth)
    out["logged"] = ope.logged_values(logged, ex.oracle, item_type, req)
    return out


# ---------------------------------------------------------------- plots


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(res: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    comp = res["comparison"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ys = np.arange(len(METRICS))
    d = np.array([comp[m]["mean_diff"] for m in METRICS])
    lo = d - np.array([comp[m]["ci_low"] for m in METRICS])
    hi = np.array([comp[m]["ci_high"] for m in METRICS]) - d
    ax.errorbar(d, ys, xerr=[lo, hi], fmt="o", capsize=4)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(ys, METRICS)
    ax.set_xlabel("B - A per seeker (95% paired bootstrap CI)")
    ax.set_title("Lift of B over A")
    out["lift"] = _png(fig)

    seg = [(dim, r) for dim, rows in res["segments"].items() for r in rows if r["ci_low"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.28 * max(len(seg), 4) + 1))
    for i, (_dim, r) in enumerate(seg):
        ax.errorbar(
            r["diff"], i, xerr=[[r["diff"] - r["ci_low"]], [r["ci_high"] - r["diff"]]], fmt="s", capsize=3
        )
    ax.axvline(res["comparison"][HEADLINE]["mean_diff"], color="tab:red", ls="--", lw=1, label="overall")
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(range(len(seg)), [f"{dim}: {r['group']} (n={r['n']})" for dim, r in seg], fontsize=7)
    ax.set_xlabel("NDCG@10 difference B - A (95% CI)")
    ax.set_title("Segments (forest plot)")
    ax.legend(fontsize=7)
    out["forest"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, curve in res["curves"].items():
        ax.plot(KS, [curve[f"ndcg@{k}"] for k in KS], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_ylabel("NDCG@k")
    ax.set_title("NDCG@k")
    ax.legend(fontsize=8)
    out["curves"] = _png(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, dim in zip(axes, ("gender", "age band")):
        groups = sorted(res["fairness"]["A"][dim]["groups"])
        x = np.arange(len(groups))
        for j, arm in enumerate(("A", "B")):
            vals = [res["fairness"][arm][dim]["groups"][g]["exposure_share"] for g in groups]
            ax.bar(x + 0.4 * j - 0.2, vals, width=0.4, label=arm)
        ax.set_xticks(x, groups)
        ax.set_title(f"exposure share by {dim}")
    axes[0].legend(fontsize=8)
    out["exposure"] = _png(fig)
    ft = res.get("fairness_tradeoff", {})
    if "missing" not in ft:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
        for ax, dim in zip(axes, ("gender", "age band")):
            pts = ft[dim]["points"]
            cost = [100 * p["explore_ndcg_cost"] for p in pts]
            for key, label in (
                ("logged_exposure_ratio", "exposure ratio (logged)"),
                ("logged_hit_rate_ratio", "hit-rate ratio (logged)"),
                ("explore_exposure_ratio", "exposure ratio (explore)"),
            ):
                ax.plot(cost, [p[key] for p in pts], marker="o", label=label)
            for p, x in zip(pts, cost):
                ax.annotate(f"w={p['content_weight']:g}", (x, p["logged_exposure_ratio"]), fontsize=7)
            ax.axhline(0.8, color="grey", ls="--", lw=1)
            ax.axvline(2.0, color="tab:red", ls=":", lw=1)
            ax.set_xlabel("explore NDCG@10 cost, % (negative: a gain)")
            ax.set_title(f"{dim}: re-ranked {', '.join(ft[dim]['re_ranked_groups'])}", fontsize=9)
        axes[0].set_ylabel("min/max ratio across groups")
        axes[0].legend(fontsize=7)
        out["tradeoff"] = _png(fig)
    return out


TEMPLATE = Path(__file__).parent / "templates" / "ab_report.html.j2"


def _table(comp: dict) -> list[str]:
    lines = ["| metric | A | B | B - A | 95% CI | p |", "|---|---|---|---|---|---|"]
    for m, c in comp.items():
        lines.append(
            f"| {m} | {c['mean_a']:.4f} | {c['mean_b']:.4f} | {c['mean_diff']:+.4f} | "
            f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.4f} |"
        )
    return lines


def markdown(r: dict) -> str:
    ub = r["unbiased"]
    h = (ub["comparison"] if r["decision_basis"] == "explore slates" else r["comparison"])[HEADLINE]
    lines = [
        f"# A/B report: {r['item_type']}s",
        "",
        f"- A: `{r['a']['label']}`",
        f"- B: `{r['b']['label']}`",
        f"- window {r['window'][0]} to {r['window'][1]}",
        f"- explore slates: {ub['n_requests']} requests with an outcome, {ub['n_seekers']} seekers; logged: "
        f"{r['n_requests']} requests, {r['n_seekers']} seekers",
        "",
        f"**{r['decision']}** (on {r['decision_basis']}): NDCG@10 B - A = {h['mean_diff']:+.4f} "
        f"[{h['ci_low']:+.4f}, {h['ci_high']:+.4f}], "
        f"lift {100 * h['lift']:+.1f}%, p = {h['p_value']:.4f}. Rule: {r['rule']}",
        "",
        "## Explore slates (unbiased)",
        "",
        *(_table(ub["comparison"]) if ub["comparison"] else ["too few explore slates with an outcome"]),
        "",
        *[f"- baseline {v['label']}: NDCG@10 {v['ndcg@10']:.4f}" for v in ub["baselines"].values()],
        "",
        "## Logged labels",
        "",
        r["logged_caveat"],
        "",
        *_table(r["comparison"]),
    ]
    for arm in ("A", "B"):
        for dim, f in r["fairness"][arm].items():
            lines.append(
                f"- fairness {arm}, {dim}: exposure ratio {f['exposure_ratio']:.3f}, "
                f"hit-rate ratio {f['hit_rate_ratio']:.3f}"
            )
    ft = r.get("fairness_tradeoff", {})
    lines += ["", "## Exposure-aware re-ranking of B (serving.fairness): the trade-off", ""]
    if "missing" in ft:
        lines.append(f"not computed: {ft['missing']}")
    for dim in ("gender", "age band") if "missing" not in ft else ():
        lines += [
            f"{dim}, re-ranked groups {ft[dim]['re_ranked_groups']}:",
            "",
            "| content weight | explore NDCG@10 | cost | exposure ratio (logged) | hit-rate ratio (logged) | "
            "exposure ratio (explore) |",
            "|---|---|---|---|---|---|",
            *(
                f"| {p['content_weight']:g} | {p['explore_ndcg@10']:.4f} | "
                f"{100 * p['explore_ndcg_cost']:+.1f}% | {p['logged_exposure_ratio']:.3f} | "
                f"{p['logged_hit_rate_ratio']:.3f} | {p['explore_exposure_ratio']:.3f} |"
                for p in ft[dim]["points"]
            ),
            "",
        ]
    for arm in ("A", "B"):
        o = r["ope"][arm]
        lines.append(
            f"- off-policy {arm} (applies per explore slate): IPS {o['ips']['estimate']:.4f}, SNIPS "
            f"{o['snips']['estimate']:.4f}, DR {o['dr']['estimate']:.4f}, true {_true(o)}"
        )
    so = r.get("service_ope")
    for arm in ("A", "B") if so else ():
        o = so[arm]
        lines.append(
            f"- off-policy {arm} on the service log ({so['n_slates']} slates, support {o['support']:.3f}): "
            f"IPS {o['ips']['estimate']:.4f}, SNIPS {o['snips']['estimate']:.4f}, "
            f"DR {o['dr']['estimate']:.4f}, true {_true(o)}"
        )
    return "\n".join(lines) + "\n"


def _true(o: dict) -> str:
    return "n/a (no truth)" if o.get("true") is None else f"{o['true']['estimate']:.4f}"


def ab_report(
    world: str | Path,
    cfg: ProjectConfig,
    a: str,
    b: str,
    item_type: str,
    window_days: int,
    out: str | Path,
    max_requests: int = 1000,
    n_boot: int = 2000,
    service_log: tuple | None = None,
) -> dict:
    """Build the report; write ``out`` (.html) with ``.md`` and ``.json`` next to it; log them to MLflow.

    ``service_log`` = (impression log folder, outcome file) adds the off-policy estimates of A and B on
    the service's logged requests."""
    import jinja2
    import mlflow

    from training import tracking

    exp = tracking.start(cfg.tracking)  # models:/ URIs resolve against the configured registry
    rp = replay(world, cfg, item_type, window_days, max_requests)
    # the window's explore slates, replayed with the same stage one (the unbiased comparison and the
    # off-policy estimates)
    ex = replay(world, cfg, item_type, window_days, max_requests, "explore", rp.oracle, rp.data.stage)
    ub = unbiased(ex, a, b, n_boot)
    rows = rp.data.rows
    sa, label_a = scores(a, rp)
    sb, label_b = scores(b, rp)
    pa, pb = per_request(rows, sa), per_request(rows, sb)
    arms = [("A", pa), ("B", pb)]
    if rp.oracle is not None:  # a simulated world: the oracle's curve for reference
        arms.append(("oracle", per_request(rows, scores("baseline:oracle", rp)[0])))
    seeker = rp.audit.set_index("request_id")["seeker_id"]
    comp = compare(pa, pb, seeker, n_boot)
    ev = rp.tables["events"]  # already read by the replay
    ev = ev[(ev["item_type"] == item_type) & (ev["ts"] < rp.window[0])]
    popularity = ev.groupby("item_id")["seeker_id"].nunique().to_dict()
    n_users = max(int(ev["seeker_id"].nunique()), 1)
    min_seekers = cfg.train.gate.min_explore_seekers  # the promotion gate's rule, the same number
    if ub["comparison"] is not None and ub["n_seekers"] >= min_seekers:
        head, basis = ub["comparison"][HEADLINE], "explore slates"
    else:
        head = comp[HEADLINE]
        basis = (
            f"logged labels (only {ub['n_seekers']} explore seekers < {min_seekers}: the unbiased "
            "comparison has too few)"
        )
    res = {
        "item_type": item_type,
        "a": {"model": a, "label": label_a},
        "b": {"model": b, "label": label_b},
        "window": [str(rp.window[0]), str(rp.window[1])],
        "n_requests": int(len(pa)),
        "n_seekers": int(seeker.nunique()),
        "comparison": comp,
        "unbiased": ub,
        "decision_basis": basis,
        "headline": head,
        "decision": decide(head, head["p_value"]),
        "rule": "on the window's explore slates (logged labels only when there are fewer than "
        f"{min_seekers} explore seekers, train.gate.min_explore_seekers): B better if the 95% "
        "paired-bootstrap CI of the per-seeker NDCG@10 difference lies above 0 and the paired "
        "permutation p < 0.05; B worse if it lies below 0 and p < 0.05; otherwise no significant "
        "difference.",
        "logged_caveat": LOGGED_CAVEAT,
        "curves": {
            name: {f"ndcg@{k}": float(_per_seeker(p, seeker, f"ndcg@{k}").mean()) for k in KS}
            for name, p in arms
        },
        "segments": segments(pa, pb, seeker, rp.audit, n_boot, segment_names(world)),
        "fairness": {"A": fairness(pa, rp.audit), "B": fairness(pb, rp.audit)},
        "beyond_accuracy": {
            "A": beyond_accuracy(pa, rows, item_type, popularity, n_users),
            "B": beyond_accuracy(pb, rows, item_type, popularity, n_users),
        },
        "min_group": MIN_GROUP,
        "method": __doc__.split("Statistics (written into the report too):")[1].split("Outputs:")[0].strip(),
    }
    res["ope"] = off_policy(item_type, a, b, ex)
    res["fairness_tradeoff"] = (
        fairness_tradeoff(rp, ex, b, item_type)
        if b.startswith(("models:/", "runs:/"))
        else {"missing": f"B ({b}) is a baseline, not a registered model: it has no content-only ablation"}
    )
    if service_log and service_log[0] is not None:
        res["service_ope"] = ope.service_off_policy(cfg, world, *service_log, a, b, item_type, rp.oracle)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    html = (
        jinja2.Environment(autoescape=True)
        .from_string(TEMPLATE.read_text(encoding="utf-8"))
        .render(r=res, h=head, p=plots(res))
    )
    out.write_text(html, encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(res), encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
    with mlflow.start_run(experiment_id=exp, run_name="ab-report") as run:
        mlflow.set_tags(
            {
                "stage": "evaluation",
                "item_type": item_type,
                "model_a": a,
                "model_b": b,
                "decision": res["decision"],
            }
        )
        mlflow.log_metrics(
            {
                f"{m.replace('@', '_at_')}_{k}": float(v)
                for m, c in comp.items()
                for k, v in c.items()
                if k in ("mean_a", "mean_b", "mean_diff", "ci_low", "ci_high", "p_value")
            }
        )
        for p in (out, out.with_suffix(".md"), out.with_suffix(".json")):
            mlflow.log_artifact(str(p))
        res["run_id"] = run.info.run_id
    return res
