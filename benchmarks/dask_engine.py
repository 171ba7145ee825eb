"""Benchmark: the Dask engine vs the local engine on the tiny world (postings): ranker rows of the train
window (the replay only; stage one fitted once, here) and the LambdaRank fit on the same rows, plus the
validation NDCG@10 of both rankers on the same validation rows, per seed (the rows' sampling seed and the
ranker's): Dask - local, and the local ranker's own spread over its LightGBM seeds on fixed rows.

A ``LocalCluster`` of 2 worker processes with 1 thread each, on this machine: what it measures is the
engine's overhead at a small scale, not a multi-machine speed-up. Writes
``benchmarks/results/dask_engine.json`` (or ``--out``).

    python benchmarks/dask_engine.py [--repeats 3] [--trees 60] [--seekers 500] [--requests 150] [--seeds 5]

``--seekers 2000 --requests 0`` is the world and the rows of ``tests/integration/test_dask_engine.py``'s
NDCG test (the tiny scale with 2,000 seekers, every request of the windows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/...`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - t0, 3)


def _local_cluster():
    from dask.distributed import Client

    from training.distributed import local_cluster

    cluster = local_cluster(2, 1)
    return cluster, Client(cluster)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trees", type=int, default=60)
    ap.add_argument("--requests", type=int, default=150, help="requests per window; 0: every request")
    ap.add_argument("--seekers", type=int, default=500, help="seekers of the tiny-scale world (500: as is)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds to compare NDCG on (x --repeats Dask fits)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dask_engine.json")
    a = ap.parse_args()
    from features import store as fstore
    from jobcare.config import CandidatesConfig, FeaturesConfig, TrainConfig, TwoTowerParams, WorldConfig
    from jobcare.world.generate import generate_world
    from jobcare.world.io import read_manifest, read_tables
    from training.candidates.evaluate import fit_stage_one
    from training.distributed import DaskEngine
    from training.request_path import context
    from training.stage_two import build_rows, fit_ranker, ndcg_by_request
    from training.windows import Windows

    tmp = Path(tempfile.mkdtemp(prefix="jobcare-dask-bench-"))
    world = tmp / "world"
    overrides = {"n_seekers": a.seekers} if a.seekers != 500 else {}
    generate_world(WorldConfig(scale="tiny", seed=11, overrides=overrides), world, show_progress=False)
    repo = fstore.render_repo(world, FeaturesConfig(profile="local", repo=tmp / "repo"))
    fstore.apply(repo)
    fstore.materialize(repo)
    t = read_tables(world, ["events", "sessions", "impressions", "postings", "courses", "competency_units"])
    tc = TrainConfig(test_days=20, eval_days=25, train_days=40, min_history_days=28)
    w = Windows.of(read_manifest(world)["span"], tc)
    cfg = CandidatesConfig(two_tower=TwoTowerParams(epochs=2, samples_per_epoch=4000, hidden=32, dim=16))
    store, ctx = fstore.open_store(repo), context(repo, len(t["competency_units"]))
    args = ("posting", t, store, repo, ctx, cfg)
    stage = fit_stage_one("posting", t["events"], w.train_start, store, repo, ctx, cfg, w.valid_start)
    vstage = fit_stage_one("posting", t["events"], w.valid_start, store, repo, ctx, cfg, w.test_start)
    n_req = a.requests or 10**9
    win = (w.train_start, w.valid_start, n_req, 10, 0)
    valid = build_rows(*args, w.valid_start, w.test_start, n_req, 10, 1, stage=vstage)
    params = {**tc.ranker.model_dump(), "n_estimators": a.trees}
    res = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "setup": f"tiny world (seed 11, {a.seekers} seekers), postings, train window; LocalCluster 2 worker "
        "processes x 1 thread",
        "trees": a.trees,
        "local": {"rows_s": [], "fit_s": []},
        "dask": {"rows_s": [], "fit_s": []},
    }
    for _ in range(a.repeats):
        local, secs = _timed(build_rows, *args, *win, stage=stage)
        res["local"]["rows_s"].append(secs)
        ranker, secs = _timed(fit_ranker, params, 0, local, local.features)
        res["local"]["fit_s"].append(secs)
    res["rows"], res["requests"] = len(local.rows), int(local.rows["request_id"].nunique())
    res["val_requests"] = int(valid.rows["request_id"].nunique())
    feats = local.features

    def val_ndcg(model) -> float:
        return float(ndcg_by_request(valid.rows, model.predict(valid.rows[feats])).mean())

    res["local"]["val_ndcg_at_10"] = round(val_ndcg(ranker), 4)
    # seed 0's rows and fit are the ones timed above
    rows_by_seed = {0: local, **{s: build_rows(*args, *win[:-1], s, stage=stage) for s in range(1, a.seeds)}}
    local_by_seed = {0: val_ndcg(ranker)}
    local_by_seed |= {s: val_ndcg(fit_ranker(params, s, rows_by_seed[s], feats)) for s in range(1, a.seeds)}
    # the local ranker's own spread: the seed-0 rows, each LightGBM seed
    spread = [local_by_seed[0]] + [val_ndcg(fit_ranker(params, s, local, feats)) for s in range(1, a.seeds)]
    res["local"]["val_ndcg_by_seed"] = {s: round(v, 4) for s, v in local_by_seed.items()}
    res["local"]["val_ndcg_seed0_rows_by_lightgbm_seed"] = [round(v, 4) for v in spread]
    (cluster, client), res["dask"]["cluster_start_s"] = _timed(_local_cluster)
    with cluster, client:
        engine = DaskEngine(client, tc.dask, world, repo, len(t["competency_units"]))
        for _ in range(a.repeats):
            data, secs = _timed(engine.build_rows, *args, *win, stage=stage)
            res["dask"]["rows_s"].append(secs)
            ranker, secs = _timed(engine.fit_ranker, params, 0, data, feats)
            res["dask"]["fit_s"].append(secs)
        res["dask"]["rows_equal_local"] = bool(data.rows.equals(local.rows))
        res["dask"]["val_ndcg_at_10"] = round(val_ndcg(ranker), 4)
        diffs = {}
        for s in range(a.seeds):
            d = data if s == 0 else engine.build_rows(*args, *win[:-1], s, stage=stage)  # seed 0: built above
            diffs[s] = [
                round(val_ndcg(engine.fit_ranker(params, s, d, feats)) - local_by_seed[s], 4)
                for _ in range(a.repeats)
            ]
        res["dask_minus_local_val_ndcg_by_seed"] = diffs
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
