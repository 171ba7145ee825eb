"""Benchmark: stage-one generators on synthetic implicit feedback (2 cores).

- ALS fit through ``ALSRecommender`` (id maps + confidence matrix + fit) vs calling implicit directly on
  the same CSR matrix, same parameters, in the same run (target <= 1.15x);
- two-tower training time on a demo-sized dataset with side features;
- retrieval latency per seeker (score the open items + top 300) over 50k and 200k open postings, for
  ALS and the two-tower (median, p99).
Writes ``benchmarks/results/candidates.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic(n_users: int, n_items: int, n_inter: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pop = 1 / np.arange(1, n_items + 1) ** 0.9
    items = rng.choice(n_items, n_inter, p=pop / pop.sum())
    users = rng.integers(0, n_users, n_inter)
    inter = pd.DataFrame({"user": users, "item": items, "weight": rng.integers(1, 5, n_inter).astype(float)})
    u = pd.DataFrame(
        {
            "user": np.arange(n_users),
            "region_id": rng.integers(0, 17, n_users),
            "age": rng.normal(40, 10, n_users),
            "desired": [list(rng.integers(0, 400, 2)) for _ in range(n_users)],
        }
    )
    it = pd.DataFrame(
        {
            "item": np.arange(n_items),
            "occupation_id": rng.integers(0, 400, n_items),
            "region_id": rng.integers(0, 17, n_items),
            "wage": rng.normal(300, 50, n_items),
        }
    )
    return inter, u, it


def lat(fn, n=200):
    fn()
    xs = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t)
    xs = np.asarray(xs) * 1000
    return {"median_ms": round(float(np.median(xs)), 3), "p99_ms": round(float(np.percentile(xs, 99)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interactions", type=int, default=2_000_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "candidates.json")
    a = ap.parse_args()
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from training.candidates.als import ALSRecommender
    from training.candidates.base import top_k
    from training.candidates.two_tower import TwoTowerRecommender
    from training.interactions import IdMap, confidence_matrix

    res = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
    }
    inter, users, items = synthetic(200_000, 50_000, a.interactions)
    params = {"factors": 64, "regularization": 0.05, "alpha": 10.0, "iterations": 15}
    ours, raw = [], []
    for rep in range(3):
        t = time.perf_counter()
        m = ALSRecommender(**params, random_state=rep).fit(inter)
        ours.append(time.perf_counter() - t)
        csr = confidence_matrix(inter, IdMap.fit(inter["user"]), IdMap.fit(inter["item"]))
        t = time.perf_counter()
        with threadpool_limits(1, "blas"):
            AlternatingLeastSquares(**params, random_state=rep).fit(csr, show_progress=False)
        raw.append(time.perf_counter() - t)
    res["als_fit"] = {
        "interactions": len(inter),
        "users": 200_000,
        "items": 50_000,
        "ours_s": round(float(np.median(ours)), 2),
        "implicit_direct_s": round(float(np.median(raw)), 2),
        "ratio": round(float(np.median(ours) / np.median(raw)), 3),
    }
    res["als_fit"]["meets_target_1.15x"] = res["als_fit"]["ratio"] <= 1.15
    print(json.dumps(res["als_fit"]), flush=True)

    inter2, users2, items2 = synthetic(20_000, 5_000, 250_000, seed=1)
    t = time.perf_counter()
    tt = TwoTowerRecommender(random_state=0).fit(inter2, users2, items2)
    res["two_tower_fit"] = {
        "interactions": len(inter2),
        "users": 20_000,
        "items": 5_000,
        "seconds": round(time.perf_counter() - t, 2),
        "epochs": tt.epochs,
        "samples_per_epoch": tt.samples_per_epoch,
    }
    print(json.dumps(res["two_tower_fit"]), flush=True)

    res["retrieval"] = {}
    rng = np.random.default_rng(0)
    for n_open in (50_000, 200_000):
        keys = np.arange(n_open)
        F = rng.normal(size=(n_open, 64)).astype(np.float32)
        E = rng.normal(size=(n_open, tt.dim)).astype(np.float32)
        u = m.user_factors_[0]
        one_user = users2.head(1)

        def als(keys=keys, F=F, u=u):
            return top_k(keys, F @ u, 300)

        def two(keys=keys, E=E, one_user=one_user):
            return top_k(keys, E @ tt.embed_users(one_user)[0], 300)

        res["retrieval"][str(n_open)] = {"als": lat(als), "two_tower_incl_user_tower": lat(two)}
        print(n_open, json.dumps(res["retrieval"][str(n_open)]), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
