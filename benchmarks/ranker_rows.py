"""Benchmark: the ranker rows of one training window, at any scale, stage by stage.

    python benchmarks/ranker_rows.py --world W --repo FEATURE_REPO [--item-type posting] [--requests 3000]
        [--workers 1] [--save-rows rows.parquet]

What ``jobcare train`` does for the first window of one item type, with the config's windows
(``configs/demo.yaml`` by default): stage one fitted on the events before the train window
(``{item_type}/stage_one``, timed apart), then ``--requests`` logged requests of the window replayed
through the request path into ranker rows (``{item_type}/ranker_rows``). Reports both times, the
milliseconds per replayed request and the peak memory (:mod:`jobcare.stages`).

Made to measure a change to the request path at national scale without the hour of a full retrain: run it
once per version of the code, on the same world, repository and machine, e.g. with
``PYTHONPATH=<checkout of the other version>`` (the code imported is recorded in the JSON). The feature
repository is one that ``jobcare features apply --world W`` or ``benchmarks/national.py --keep`` left
(the offline store and the registry are read; the online store is not). Writes
``benchmarks/results/ranker_rows.json`` (``--out``; a run appends to that file's list).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/...`
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, required=True)
    ap.add_argument("--repo", type=Path, required=True, help="the world's feature repository")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    ap.add_argument("--item-type", default="posting", choices=["posting", "course", "certificate"])
    ap.add_argument("--requests", type=int, default=3000, help="requests replayed (train.max_requests)")
    ap.add_argument("--workers", type=int, default=1, help="forked replay processes (train.replay_workers)")
    ap.add_argument("--label", default="", help="a name for this run in the JSON (e.g. the commit)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ranker_rows.json")
    ap.add_argument(
        "--save-rows",
        type=Path,
        default=None,
        help="write the rows to this Parquet file (to compare versions)",
    )
    a = ap.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import training
    from features import store as fstore
    from jobcare.config import ProjectConfig, load_config
    from jobcare.stages import StageRecorder
    from jobcare.world.io import read_manifest
    from training.request_path import context
    from training.stage_two import build_rows, read_logs
    from training.windows import Windows

    cfg = load_config(a.config, ProjectConfig)
    tc = cfg.train
    w = Windows.of(read_manifest(a.world)["span"], tc)
    t0 = time.perf_counter()
    t = read_logs(a.world)
    store = fstore.open_store(a.repo)
    ctx = context(a.repo, len(t["competency_units"]))
    load_s = time.perf_counter() - t0
    with StageRecorder() as rec:
        data = build_rows(
            a.item_type,
            t,
            store,
            a.repo,
            ctx,
            cfg.candidates,
            w.train_start,
            w.valid_start,
            a.requests,
            tc.negatives_per_request,
            tc.seed,
            workers=a.workers,
        )
    n_req = int(data.rows["request_id"].nunique()) if data.rows is not None else 0
    rows_s = rec.stages[f"{a.item_type}/ranker_rows"]["seconds"]
    res = {
        "label": a.label,
        "code": str(Path(training.__file__).resolve().parent.parent),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "world": str(a.world),
        "item_type": a.item_type,
        "window": f"[{w.train_start}, {w.valid_start})",
        "requests_asked": a.requests,
        "replay_workers": a.workers,
        "requests_with_rows": n_req,
        "rows": 0 if data.rows is None else len(data.rows),
        "load_seconds": round(load_s, 2),
        "stage_one_seconds": round(rec.stages[f"{a.item_type}/stage_one"]["seconds"], 2),
        "ranker_rows_seconds": round(rows_s, 2),
        "ms_per_request": round(rows_s / max(len(data.requests), 1) * 1e3, 2),
        "requests_replayed": int(len(data.requests)),
        "peak_rss_mib": round(rec.peak_rss_mib),
        "stages": rec.stages,
    }
    print(json.dumps({k: v for k, v in res.items() if k != "stages"}, indent=2))
    if a.save_rows is not None and data.rows is not None:
        data.rows.to_parquet(a.save_rows, index=False)
    runs = json.loads(a.out.read_text()) if a.out.exists() else []
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps([*runs, res], indent=2) + "\n")


if __name__ == "__main__":
    main()
