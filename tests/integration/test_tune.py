"""`jobcare tune` on the tiny world: resumable study, nested MLflow runs, a usable best config."""

from __future__ import annotations

import mlflow
import pytest

from jobcare.config import ProjectConfig, load_config
from tests.integration.test_train_pipeline import _cfg
from training.tune import tune

pytestmark = pytest.mark.integration


def test_tune_resumes_logs_nested_runs_and_writes_a_config(tiny_world, local_repo, tmp_path):
    cfg = _cfg(tmp_path, local_repo)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    first = tune(tiny_world, cfg, 3, tmp_path / "tuned.yaml", storage=storage, study_name="t")
    second = tune(tiny_world, cfg, 2, tmp_path / "tuned.yaml", storage=storage, study_name="t")
    assert first["n_trials"] == 3 and second["n_trials"] == 5  # resumed, not restarted
    assert all(0 < v <= 1 for v in second["values"])
    assert second["best_value"] == max(second["values"])
    tuned = load_config(tmp_path / "tuned.yaml", ProjectConfig)
    assert {"als_factors", "als_alpha", "num_leaves"} <= set(second["best_params"])  # ALS and ranker
    for k, v in second["best_params"].items():
        section = tuned.candidates.als if k.startswith("als_") else tuned.train.ranker
        assert getattr(section, k.removeprefix("als_")) == v
    mlflow.set_tracking_uri(cfg.tracking.uri)
    runs = mlflow.search_runs(experiment_names=["jobcare"])
    nested = runs[runs["tags.mlflow.parentRunId"] == second["run_id"]]
    assert len(nested) == 2 and set(nested["tags.state"]) <= {"complete", "pruned"}
    # decided on the validation window's explore slates (the tiny world has enough of them)
    assert second["objective"] == "val_explore_ndcg_at_10" and second["explore_requests"] >= 30
    done = nested[nested["tags.state"] == "complete"]
    assert set(done["metrics.val_explore_ndcg_at_10"].round(12)) <= {round(v, 12) for v in second["values"]}
    assert (
        (tmp_path / "tuned.yaml")
        .read_text()
        .splitlines()[0]
        .endswith(f"val_explore_ndcg_at_10 {second['best_value']:.4f})")
    )
