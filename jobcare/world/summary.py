"""``jobcare world summary``: what a world holds, how it behaves, and whether it carries signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.metrics import ndcg_at_k
from jobcare.world.io import TRUTH_DIR, read_table
from jobcare.world.oracle import WorldOracle
from jobcare.world.utility import GUMBEL_VAR, within_seeker_variance


def summarize(world: str | Path, n_eval_seekers: int = 1500, seed: int = 0) -> dict:
    """Counts, behaviour magnitudes, realised variance shares and the learnability check."""
    oracle = WorldOracle(world)
    t = oracle.tables
    ev = t["events"]
    span_start = pd.Timestamp(oracle.manifest["span"]["start"])
    span_end = pd.Timestamp(oracle.manifest["span"]["end"])
    applies = ev[(ev["item_type"] == "posting") & (ev["event_type"] == "apply")]
    per_posting = applies.groupby("item_id").size().sort_values(ascending=False)
    top1 = max(1, int(round(0.01 * len(t["postings"]))))
    seeker_months = _active_seeker_months(t, span_start, span_end)
    out: dict = {
        "rows": {k: v["rows"] for k, v in oracle.manifest["tables"].items()},
        "events": ev.groupby(["item_type", "event_type"]).size().rename("n").reset_index().to_dict("records"),
        "applies_per_active_seeker_month": round(len(applies) / max(seeker_months, 1e-9), 3),
        "top1pct_postings_share_of_applies": round(
            float(per_posting.head(top1).sum() / max(len(applies), 1)), 3
        ),
        "postings_with_no_apply_share": round(1 - len(per_posting) / len(t["postings"]), 3),
        "course_completion_rate_median": round(float(t["courses"]["completion_rate"].median()), 3),
        "course_employment_rate_median": round(float(t["courses"]["employment_rate"].median()), 3),
        "course_capacity_median": int(t["courses"]["capacity"].median()),
        "course_duration_days_median": int(t["courses"]["duration_days"].median()),
        "certificate_pass_rate_range": [
            round(float(t["certificates"]["pass_rate"].quantile(q)), 3) for q in (0.1, 0.9)
        ],
        "explore_session_share": round(float((t["sessions"]["policy"] == "explore").mean()), 3),
        "female_share_of_applicants_by_group": _female_share_by_group(t, applies),
        "variance_shares": realised_variance_shares(oracle, span_start + (span_end - span_start) / 2, seed),
    }
    out["learnability"] = learnability(oracle, n_eval_seekers, seed)
    return out


def _active_seeker_months(t, start, end) -> float:
    s = t["seekers"][["seeker_id", "registered_at"]].merge(t["seeker_exits"], on="seeker_id", how="left")
    stop = s["exited_at"].fillna(end)
    return float(((stop - s["registered_at"]).dt.total_seconds().clip(lower=0) / (30.4 * 86400)).sum())


def _female_share_by_group(t, applies) -> dict[str, float]:
    a = applies.merge(
        t["postings"][["posting_id", "occupation_id"]], left_on="item_id", right_on="posting_id"
    )
    a = a.merge(t["occupations"][["occupation_id", "group_id"]], on="occupation_id")
    a = a.merge(t["seekers"][["seeker_id", "gender"]], on="seeker_id")
    names = t["occupation_groups"].set_index("group_id")["name"]
    share = a.groupby("group_id")["gender"].apply(lambda g: (g == "F").mean())
    return {names[g]: round(float(v), 3) for g, v in share.items()}


def realised_variance_shares(
    oracle: WorldOracle, at: pd.Timestamp, seed: int = 0, n_seekers: int = 300
) -> dict:
    """Within-seeker variance shares of (observable, latent, noise) over the postings open at ``at``."""
    rng = np.random.default_rng(seed)
    items = oracle.open_items("posting", at)
    seekers = oracle.tables["seekers"]
    pool = seekers["seeker_id"].to_numpy()[seekers["registered_at"] <= at]
    chosen = rng.choice(pool, min(n_seekers, pool.size), replace=False)
    s = np.repeat(chosen, items.size)
    i = np.tile(items, chosen.size)
    _, obs, lat = oracle.mu("posting", s, i, at)
    v_obs, v_lat = within_seeker_variance(obs, s), within_seeker_variance(lat, s)
    total = v_obs + v_lat + GUMBEL_VAR
    return {
        "observable": round(v_obs / total, 3),
        "latent": round(v_lat / total, 3),
        "noise": round(GUMBEL_VAR / total, 3),
        "open_postings": int(items.size),
        "at": str(at),
    }


def learnability(oracle: WorldOracle, n_seekers: int = 1500, seed: int = 0, k: int = 10) -> dict:
    """NDCG@k of oracle / observable-only oracle / popularity / random on the last window's applies.

    Two protocols. ``logged``: for seekers who apply to postings in the held-out window (the last 10%
    of the span, at least 14 days), rank every posting open during the window as of its start;
    relevant = the postings applied to. Applications only happen on what the logging policy showed,
    so this protocol carries exposure bias. ``explore``: within the uniformly random (explore) slates
    of the window, rank the shown items; relevance 2 for an apply, 1 for a view. No exposure bias.
    """
    rng = np.random.default_rng(seed)
    t = oracle.tables
    end = pd.Timestamp(oracle.manifest["span"]["end"])
    window = pd.Timedelta(days=max(14, int(oracle.manifest["span"]["days"] * 0.1)))
    T = end - window
    ev = t["events"]
    post = ev[ev["item_type"] == "posting"]
    applies = post[post["event_type"] == "apply"]
    test = applies[applies["ts"] >= T]
    train_pop = (
        applies[(applies["ts"] < T) & (applies["ts"] >= T - pd.Timedelta(days=60))].groupby("item_id").size()
    )
    p = t["postings"]
    pool = p["posting_id"].to_numpy()[(p["open_at"] < end) & (p["close_at"] > T)]
    reg = t["seekers"].set_index("seeker_id")["registered_at"]
    seekers = np.unique(test["seeker_id"].to_numpy())
    seekers = seekers[reg.loc[seekers].to_numpy() < T]
    seekers = rng.choice(seekers, min(n_seekers, seekers.size), replace=False) if seekers.size else seekers
    rel_by_seeker = test.groupby("seeker_id")["item_id"].apply(set)
    pop = train_pop.reindex(pool, fill_value=0).to_numpy().astype(float)
    scores = {"oracle": [], "observable_only": [], "popularity": [], "random": []}
    for s in seekers:
        rel = np.isin(pool, list(rel_by_seeker[s])).astype(float)
        mu, obs, _ = oracle.mu("posting", np.full(pool.size, s), pool, T)
        for name, sc in (
            ("oracle", mu),
            ("observable_only", obs),
            ("popularity", pop + rng.random(pool.size) * 1e-3),
            ("random", rng.random(pool.size)),
        ):
            order = np.argsort(-sc, kind="stable")
            scores[name].append(ndcg_at_k(rel[order], k, rel))
    logged = {name: round(float(np.mean(v)), 4) if v else None for name, v in scores.items()}
    logged["n_seekers"] = int(seekers.size)
    logged["candidate_postings"] = int(pool.size)

    # explore protocol on the truth of the random slates
    sess = t["sessions"]
    ex_ids = sess["session_id"][(sess["policy"] == "explore") & (sess["ts"] >= T)].to_numpy()
    imp = t["impressions"]
    imp = imp[np.isin(imp["session_id"], ex_ids)]
    tr = read_table(oracle.world, f"{TRUTH_DIR}/impressions")
    imp = imp.merge(tr, on=["session_id", "position"])
    acted = ev[
        np.isin(ev["session_id"], ex_ids) & ev["event_type"].isin(["view", "apply", "enrol", "register"])
    ]
    grade = (
        acted.assign(g=np.where(acted["event_type"] == "view", 1, 2))
        .groupby(["session_id", "item_id"])["g"]
        .max()
    )
    imp = imp.join(grade, on=["session_id", "item_id"]).fillna({"g": 0})
    all_pop = ev[(ev["event_type"] != "view") & (ev["ts"] < T)].groupby(["item_type", "item_id"]).size()
    imp = imp.join(all_pop.rename("pop"), on=["item_type", "item_id"]).fillna({"pop": 0})
    ex_scores = {"oracle": [], "observable_only": [], "popularity": [], "random": []}
    for _, g in imp.groupby("session_id"):
        rel = g["g"].to_numpy()
        if rel.max() <= 0:
            continue
        for name, sc in (
            ("oracle", g["mu"].to_numpy()),
            ("observable_only", g["observable"].to_numpy()),
            ("popularity", g["pop"].to_numpy() + rng.random(len(g)) * 1e-3),
            ("random", rng.random(len(g))),
        ):
            ex_scores[name].append(ndcg_at_k(rel[np.argsort(-sc, kind="stable")], k))
    explore = {name: round(float(np.mean(v)), 4) if v else None for name, v in ex_scores.items()}
    explore["n_slates"] = len(ex_scores["oracle"])
    return {"k": k, "window_start": str(T), "logged": logged, "explore": explore}
