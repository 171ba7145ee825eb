"""Benchmark: the generic path (``jobcare generic fit / recommend``) on three generated datasets of about
100k interactions each (2 cores), under one held-out protocol.

Sets (:mod:`training.generic_synthetic`, 1,000 users x 1,700 items each): ``low_rank`` (a collaborative
signal of rank 8, no side data, ~100 items per user), ``planted_genres`` (genre + quality in the items
table, 60-140 items per user) and ``long_tail`` (Zipf popularity, a region preference in both side
tables, a heavy-tailed number of items per user around 100).

Protocol: a random 25% of each item's interactions is the test set; weights 1-5 as ``weight``,
timestamps given; each user's top 10 with seen items removed; every test interaction relevant; NDCG@10
averaged over the users with test interactions. Per set:
- ``default``: ``fit`` with budget 0 (the configured settings, untuned); its ALS is "default ALS";
- ``tuned``: ``fit`` with ``--budget-seconds`` (default 300): popularity, the tuned ALS and item-kNN,
  the ranker (scored on the test set even where the fit does not use it), the union's recall of the
  test items (its ``n_candidates`` candidates per user), and the model as fitted, i.e. what it ranks by.
Timings: fit seconds (search, ranker, refit, total) and recommend seconds per 1,000 users.
Prints a table and writes ``benchmarks/results/generic.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

SETS = {
    "low_rank": ("low_rank", {"n_users": 1000, "n_items": 1700, "per_user": 100}),
    "planted_genres": ("planted_genres", {"n_users": 1000, "n_items": 1700, "per_user": (60, 140)}),
    "long_tail": ("long_tail", {"n_users": 1000, "n_items": 1700, "per_user": 100}),
}


def union_recall(model, test) -> float:
    """Mean over test users of the share of their test items among the model's union candidates."""
    from training.generic_sources import recall_of_sets

    st = model.stage
    who = test["user"].unique()
    rows = st.users_.index(who)
    pos = {u: k for k, u in enumerate(who)}
    r = test["user"].map(pos).to_numpy()
    c = st.items_.index(test["item"].to_numpy())
    n_rel = np.bincount(r, minlength=who.size)
    truth = sp.csr_matrix(
        (np.ones(int((c >= 0).sum())), (r[c >= 0], c[c >= 0])), shape=(who.size, st.n_items)
    )
    found = []
    step = model.features.block_users()
    for lo in range(0, who.size, step):
        cand, _, _ = model.features.block(rows[lo : lo + step], who[lo : lo + step])
        found.append(recall_of_sets(cand, truth[lo : lo + step], n_rel[lo : lo + step]))
    return float(np.concatenate(found).mean())


def run_set(name: str, budget: float, work: Path) -> dict:
    from jobcare.config import GenericConfig
    from training import generic_synthetic as gs
    from training.generic import GenericModel, fit

    gen, kwargs = SETS[name]
    inter, users, items = getattr(gs, gen)(seed=0, **kwargs)
    train, test = gs.split_per_item(inter, 0.25, seed=0)
    who = test["user"].unique()
    out = {
        "interactions": len(inter),
        "users": int(inter["user"].nunique()),
        "items": int(inter["item"].nunique()),
        "train": len(train),
        "test": len(test),
        "test_users": int(who.size),
        "side_tables": [n for n, t in (("users", users), ("items", items)) if t is not None],
    }
    models = {}
    for label, b in (("default", 0.0), ("tuned", budget)):
        t0 = time.perf_counter()
        meta = fit(train, users, items, GenericConfig(), work / f"{name}_{label}", budget_seconds=b)
        fit_s = time.perf_counter() - t0
        model = GenericModel(work / f"{name}_{label}")
        t0 = time.perf_counter()
        recs = model.recommend(who, 10)
        rec_s = time.perf_counter() - t0
        ndcg = {"model": gs.heldout_ndcg(recs, test)}
        for by in ("popularity", "als", "knn", "ranker"):
            if by != model.ranks_by:
                ndcg[by] = gs.heldout_ndcg(model.recommend(who, 10, by=by), test)
            else:
                ndcg[by] = ndcg["model"]
        t0 = time.perf_counter()
        model.recommend(who, 10, by="ranker")
        rec_ranker_s = time.perf_counter() - t0
        models[label] = model
        out[label] = {
            "ranks_by": model.ranks_by,
            "ranker_reason": meta["ranker"]["reason"],
            "test_ndcg_at_10": {k: round(v, 4) for k, v in ndcg.items()},
            "validation": meta["validation"]["metrics"],
            "trials": {s: meta["tuning"][s]["trials"] for s in ("als", "knn")},
            "pruned": {s: meta["tuning"][s]["pruned"] for s in ("als", "knn")},
            "chosen": {k: meta["chosen"][k] for k in ("als", "als_weights", "knn", "knn_weights", "quotas")}
            | {"popularity_weights": meta["chosen"]["popularity_weights"]},
            "timings": meta["timings"] | {"fit_wall_seconds": round(fit_s, 2)},
            "recommend_seconds_per_1000_users": round(rec_s / who.size * 1000, 3),
            "recommend_ranker_seconds_per_1000_users": round(rec_ranker_s / who.size * 1000, 3),
        }
    out["tuned"]["test_union_recall"] = round(union_recall(models["tuned"], test), 4)
    return out


def table(res: dict) -> str:
    head = ["set", "popularity", "default ALS", "tuned ALS", "item-kNN", "ranker", "union rec", "final", "by"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for name, r in res["sets"].items():
        d, t = r["default"]["test_ndcg_at_10"], r["tuned"]["test_ndcg_at_10"]
        row = [
            name,
            t["popularity"],
            d["als"],
            t["als"],
            t["knn"],
            t["ranker"],
            r["tuned"]["test_union_recall"],
        ]
        lines.append(
            " | ".join(
                [row[0]] + [f"{v:.4f}" for v in row[1:]] + [f"{t['model']:.4f}", r["tuned"]["ranks_by"]]
            )
        )
    lines += ["", "set | fit s (search + ranker + refit) | trials ALS / kNN | recommend s per 1,000 users"]
    for name, r in res["sets"].items():
        tm = r["tuned"]["timings"]
        lines.append(
            f"{name} | {tm['fit_seconds']:.1f} ({tm['tuning_seconds']:.1f} + {tm['ranker_seconds']:.1f} + "
            f"{tm['refit_seconds']:.1f}) | {r['tuned']['trials']['als']} / {r['tuned']['trials']['knn']} | "
            f"{r['tuned']['recommend_seconds_per_1000_users']:.3f} (ranker: "
            f"{r['tuned']['recommend_ranker_seconds_per_1000_users']:.3f})"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-seconds", type=float, default=300.0)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "generic.json")
    a = ap.parse_args()
    res = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "budget_seconds": a.budget_seconds,
        "protocol": "random 25% of each item's interactions as test; top 10, seen removed; NDCG@10",
        "sets": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for name in a.sets.split(","):
            res["sets"][name] = run_set(name, a.budget_seconds, Path(work))
            print(f"{name} done", flush=True)
    print(table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2, default=float))
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
