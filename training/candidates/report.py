"""``jobcare candidates evaluate``: run the stage-one evaluation, print the table, log it to MLflow."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
from rich.table import Table

from jobcare.config import ProjectConfig
from jobcare.world.io import read_manifest
from training import tracking
from training.candidates.evaluate import KS, evaluate_candidates


def table(rows: list[dict], title: str) -> Table:
    t = Table(title=title)
    for c in ("item type", "segment", "source", "requests", *(f"recall@{k}" for k in KS)):
        t.add_column(c, justify="right" if c not in ("item type", "segment", "source") else "left")
    for r in rows:
        if r["n_requests"] == 0:
            continue
        t.add_row(
            r["item_type"],
            r["segment"],
            r["source"],
            str(r["n_requests"]),
            *(f"{r[f'recall_at_{k}']:.3f}" for k in KS),
        )
    return t


def evaluate_and_log(world: str | Path, cfg: ProjectConfig, console=None, oracle=None) -> dict:
    """Evaluate stage one on ``world`` with the feature repo of ``cfg.features``; log one MLflow run
    (``oracle``: the oracle's row too, for a simulated world)."""
    import mlflow

    res = evaluate_candidates(
        world, cfg.features.repo, cfg.candidates, show_progress=console is not None, oracle=oracle
    )
    if console is not None:
        console.print(table(res["rows"], f"stage one on {world}: requests after {res['split']}"))
    exp = tracking.start(cfg.tracking)
    manifest = read_manifest(world)
    with mlflow.start_run(experiment_id=exp, run_name="candidates-evaluate") as run:
        mlflow.set_tags(
            {"stage": "candidates", "world_scale": manifest["scale"], "world_seed": manifest["seed"]}
        )
        mlflow.log_params(
            {
                "eval_days": cfg.candidates.eval_days,
                "n_candidates": cfg.candidates.n_candidates,
                "quotas": json.dumps(cfg.candidates.quotas),
                **{f"als_{k}": v for k, v in cfg.candidates.als.model_dump().items()},
            }
        )
        metrics = {}
        for r in res["rows"]:
            for k in KS:
                v = r[f"recall_at_{k}"]
                if v is not None:
                    metrics[f"cand_{r['item_type']}_{r['source']}_{r['segment']}_recall_at_{k}"] = v
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory() as d:
            pd.DataFrame(res["rows"]).to_csv(Path(d) / "candidate_recall.csv", index=False)
            (Path(d) / "candidate_recall.json").write_text(json.dumps(res, indent=2, default=str))
            mlflow.log_artifacts(d, artifact_path="candidates")
        res["mlflow_run_id"] = run.info.run_id
    if console is not None:
        console.print(f"logged to MLflow run {res['mlflow_run_id']} ({cfg.tracking.resolved().uri})")
    return res
