"""Benchmark: stage two on the demo world (postings), per stage time and peak memory, and LightGBM
LambdaRank fit through ``LambdaRankRanker`` vs raw ``lightgbm.train`` on the same matrix (target <= 1.15x).

Writes ``benchmarks/results/train.json``. Needs the demo world and its feature repository
(``make demo`` makes both).

    python benchmarks/train.py [--world .jobcare/world-demo-7] [--repo .jobcare/feature_repo]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/train.py`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=Path(".jobcare/world-demo-7"))
    ap.add_argument("--repo", type=Path, default=Path(".jobcare/feature_repo"))
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train.json")
    a = ap.parse_args()
    if not (a.world / "manifest.json").is_file() or not (a.repo / "feature_store.yaml").is_file():
        raise SystemExit(
            f"needs the demo world {a.world} and its feature repository {a.repo}: run `make demo` first"
        )
    import lightgbm as lgb

    from features import store as fstore
    from jobcare.config import CandidatesConfig
    from jobcare.world.io import read_manifest, read_tables
    from training.ranker import LambdaRankRanker
    from training.request_path import context
    from training.stage_two import build_rows, group_sizes, ndcg_by_request

    res = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "world": str(a.world),
        "stages": {},
    }

    def stage(name, t0):
        res["stages"][name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mib_so_far": round(peak_mib()),
        }
        print(name, json.dumps(res["stages"][name]), flush=True)

    t0 = time.perf_counter()
    t = read_tables(a.world, ["events", "sessions", "impressions", "postings", "courses", "competency_units"])
    store = fstore.open_store(a.repo)
    ctx = context(a.repo, len(t["competency_units"]))
    end = pd.Timestamp(read_manifest(a.world)["span"]["end"])
    T = end - pd.Timedelta(days=60)
    stage("load", t0)
    cfg = CandidatesConfig()
    t0 = time.perf_counter()
    train = build_rows(
        "posting", t, store, a.repo, ctx, cfg, T - pd.Timedelta(days=120), T, a.requests, 30, 0
    )
    stage("train_rows (stage one fit + replay + Feast + pair features)", t0)
    t0 = time.perf_counter()
    valid = build_rows("posting", t, store, a.repo, ctx, cfg, T, end, a.requests, 30, 1)
    stage("valid_rows", t0)
    feats = train.features
    X, y, g = train.rows[feats], train.rows["label"].to_numpy(), group_sizes(train.rows)
    ours, raw = [], []
    for rep in range(5):  # alternate which goes first, so neither always gets the warm caches

        def fit_ours(rep=rep):
            t0 = time.perf_counter()
            r = LambdaRankRanker(n_estimators=200, random_state=rep).fit(X, y, g)
            ours.append(time.perf_counter() - t0)
            return r

        def fit_raw(params):
            t0 = time.perf_counter()
            lgb.train(params, lgb.Dataset(X, label=y, group=g), num_boost_round=200)
            raw.append(time.perf_counter() - t0)

        params = LambdaRankRanker(n_estimators=200, random_state=rep)._lgb_params()
        if rep % 2:
            fit_raw(params)
            r = fit_ours()
        else:
            r = fit_ours()
            fit_raw(params)
    res["ranker_fit"] = {
        "rows": len(X),
        "features": len(feats),
        "trees": 200,
        "ours_s": round(float(np.median(ours)), 3),
        "lightgbm_direct_s": round(float(np.median(raw)), 3),
        "ratio": round(float(np.median(ours) / np.median(raw)), 3),
    }
    res["ranker_fit"]["meets_target_1.15x"] = res["ranker_fit"]["ratio"] <= 1.15
    print(json.dumps(res["ranker_fit"]), flush=True)
    t0 = time.perf_counter()
    nd = ndcg_by_request(valid.rows, r.predict(valid.rows[feats]))
    stage("evaluate", t0)
    res["val_ndcg_at_10"] = round(float(nd.mean()), 4)
    res["peak_rss_mib"] = round(peak_mib())
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
