"""Research benchmark: is the ranker below the observable-only oracle for lack of features, or of data?

Issue 13's stretch target asks for the ranker above the observable-only oracle (the world's observable
part of the utility, with the world's own weights). On courses it stays below. This script tells the two
possible reasons apart, per item type, on the validation window's explore slates (the windows and rows
of ``jobcare train`` with ``configs/demo.yaml``; a research script that reads ``truth/``, never part of
the model path). NDCG@10 of ordering each slate by:

- ``observable_oracle``: the world's observable part (what the pipeline reports);
- ``world_formula_on_row_features``: the world's observable formula with each component computed from
  the ranker's own row features (:data:`ROW_COMPONENTS`; the weights are the world's). If it reaches the
  observable oracle, the features carry what the observable part needs;
- ``gbdt_true_components``: the configured LambdaRank recipe fitted on the train window's rows with the
  world's exact components (from ``truth/``) as its only features: what the training rows allow a model
  that is handed the right features;
- ``ranker``: the same recipe on the pipeline's features (the shipped ranker's training, train window
  only);
- ``ranker_plus_true_components``: both feature sets.

The three fits run with seeds 0-4; per request the mean over seeds is compared with the ranker's, paired,
with a bootstrap interval over requests (``evaluation.stats.paired_bootstrap``, as the gate's).

Run: ``python benchmarks/observable_ceiling.py --world .jobcare/world-demo-7`` (after ``make demo``: it
reuses the world's feature repository). Writes ``benchmarks/results/observable_ceiling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/...py`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evaluation.reference import NoTruthError, world_oracle  # noqa: E402
from evaluation.stats import paired_bootstrap  # noqa: E402
from features import store as fstore  # noqa: E402
from jobcare.config import ProjectConfig, load_config  # noqa: E402
from jobcare.world.io import read_manifest  # noqa: E402
from training.pipeline import ensure_repo  # noqa: E402
from training.ranker import LambdaRankRanker  # noqa: E402
from training.request_path import context  # noqa: E402
from training.stage_two import (  # noqa: E402
    build_rows,
    explore_rows,
    group_sizes,
    ndcg_by_request,
    oracle_requests,
    oracle_scores,
    read_logs,
)
from training.windows import Windows  # noqa: E402

ITEM_TYPES = ("posting", "course", "certificate")
SEEDS = range(5)


# each component of the world's observable part (jobcare.world.utility.WorldArrays.components) from the
# rows' features. Differences by construction: the rows' group match uses any desired occupation's group
# (the world: the first one's), and the course's share of new units counts units (the world weighs each by
# its level shortfall), and a posting's missing certificates count all it requires (the world: the first
# two)
ROW_COMPONENTS = {
    "posting": {
        "coverage": lambda r: r["coverage"],
        "riasec": lambda r: r["riasec_congruence"],
        "work_values": lambda r: r["work_values_congruence"],
        "distance_100km": lambda r: r["region_distance_km"] / 100,
        "log_wage_ratio": lambda r: r["log_wage_ratio"].clip(-1, 1),
        "education_short": lambda r: r["education_gap"].clip(lower=0),
        "education_over": lambda r: (-r["education_gap"] - 1).clip(lower=0),
        "career_short": lambda r: (r["career_gap"].clip(lower=0) / 3).clip(upper=2),
        "certificates_missing": lambda r: r["certificates_missing"],
        "desired": lambda r: r["desired_occupation_match"],
        "group_match": lambda r: r["desired_group_match"],
    },
    "course": {
        "novelty_relevant": lambda r: (
            r["new_unit_share"] * (r["desired_occupation_match"] + 0.5 * r["desired_group_match"] + 0.1)
        ),
        "riasec": lambda r: r["riasec_congruence"],
        "distance_100km": lambda r: r["region_distance_km"] / 100,
        "employment_rate": lambda r: r["course_attributes__employment_rate"],
        "desired": lambda r: r["desired_occupation_match"],
        "group_match": lambda r: r["desired_group_match"],
    },
    "certificate": {
        "readiness": lambda r: r["readiness"],
        "riasec": lambda r: r["riasec_congruence"],
        "desired": lambda r: r["desired_occupation_match"],
        "group_match": lambda r: r["desired_group_match"],
        "education_short": lambda r: r["education_gap"].clip(lower=0),
        "difficulty": lambda r: 1 - r["certificate_attributes__pass_rate"],
    },
}


def true_components(rows: pd.DataFrame, requests: pd.DataFrame, item_type: str, oracle) -> pd.DataFrame:
    """The world's exact observable components of each row, at the request's moment."""
    out: dict[str, np.ndarray] = {}
    for idx, seekers, items, state in oracle_requests(rows, requests, oracle):
        for k, v in oracle.arrays.components(item_type, seekers, items, state).items():
            out.setdefault(k, np.empty(len(rows)))[idx] = v
    return pd.DataFrame(out, index=rows.index).add_prefix("true_")


def world_formula(rows: pd.DataFrame, item_type: str, weights: dict[str, float]) -> np.ndarray:
    """The world's observable part (unscaled: the order is the same) from the rows' features."""
    comp = ROW_COMPONENTS[item_type]
    return sum(w * comp[k](rows).to_numpy(np.float64) for k, w in weights.items())


def _diff(b: pd.Series, a: pd.Series) -> dict:
    """b - a over the requests, paired, with the 95% bootstrap interval (:func:`paired_bootstrap`)."""
    d = paired_bootstrap(b, a)
    return {"mean": round(d["mean_diff"], 4), "ci95": [round(d["ci_low"], 4), round(d["ci_high"], 4)]}


def run(item_type: str, t, store, repo, ctx, cfg: ProjectConfig, win: Windows, oracle) -> dict:
    tc = cfg.train
    args = (item_type, t, store, repo, ctx, cfg.candidates)
    n, k, workers = tc.max_requests, tc.negatives_per_request, tc.replay_workers
    train = build_rows(*args, win.train_start, win.valid_start, n, k, tc.seed, workers=workers)
    # the explore slates replayed with a stage one fitted before validation, as the pipeline's
    ex = explore_rows(
        *args, win.valid_start, win.test_start, tc.max_explore_requests, tc.seed + 2, False, None, workers
    )
    shown = ex.rows[ex.rows["shown"] == 1]
    outcome = shown.groupby("request_id")["label"].max() > 0

    def ndcg(scores) -> pd.Series:
        per = ndcg_by_request(shown, np.asarray(scores, np.float64))
        return per[outcome.reindex(per.index).to_numpy()]

    weights = oracle.params.weights[item_type]
    per = {
        "observable_oracle": ndcg(oracle_scores(shown, ex.requests, item_type, oracle, part=1)),
        "world_formula_on_row_features": ndcg(world_formula(shown, item_type, weights)),
    }
    feats = train.features
    tr_true = true_components(train.rows, train.requests, item_type, oracle)
    ex_true = true_components(shown, ex.requests, item_type, oracle)
    y, groups, pos = train.rows["label"].to_numpy(), group_sizes(train.rows), train.rows["shown_position"]
    params = tc.ranker_for(item_type).model_dump()
    inputs = {
        "ranker": (train.rows[feats], shown[feats]),
        "gbdt_true_components": (tr_true, ex_true),
        "ranker_plus_true_components": (
            pd.concat([train.rows[feats], tr_true], axis=1),
            pd.concat([shown[feats], ex_true], axis=1),
        ),
    }
    for name, (X, Xe) in inputs.items():
        runs = [
            ndcg(
                LambdaRankRanker(**params, random_state=seed)
                .fit(X, y, groups, position=pos.to_numpy())
                .predict(Xe)
            )
            for seed in SEEDS
        ]
        per[name] = pd.concat(runs, axis=1).mean(axis=1)
    df = pd.DataFrame(per)
    return {
        "explore_requests": int(len(df)),
        "train_requests": int(train.rows["request_id"].nunique()),
        "ndcg_at_10": {k: round(float(v), 4) for k, v in df.mean().items()},
        "minus_ranker": {k: _diff(df[k], df["ranker"]) for k in df.columns if k != "ranker"},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", default=".jobcare/world-demo-7")
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--out", default="benchmarks/results/observable_ceiling.json")
    args = ap.parse_args()
    cfg = load_config(args.config, ProjectConfig)
    world = Path(args.world)
    t0 = time.perf_counter()
    try:  # before any work: this research script has nothing to measure without the answer key
        oracle = world_oracle(world, hint="this research script compares the ranker with it")
    except NoTruthError as e:
        sys.exit(f"NoTruthError: {e}")
    repo = ensure_repo(world, cfg)
    t = read_logs(world)
    store = fstore.open_store(repo)
    ctx = context(repo, len(t["competency_units"]))
    win = Windows.of(read_manifest(world)["span"], cfg.train)
    results: dict = {"item_types": {}}
    for it in cfg.train.item_types:
        results["item_types"][it] = run(it, t, store, repo, ctx, cfg, win, oracle)
        print(it, json.dumps(results["item_types"][it], indent=1), flush=True)
    results.update(
        world=str(world),
        windows=win.as_dict(),
        seeds=list(SEEDS),
        seconds=round(time.perf_counter() - t0, 1),
        machine={"cpus": os.cpu_count(), "python": platform.python_version()},
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
