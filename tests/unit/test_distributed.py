"""The Dask engine's settings, refusals, partitioning and CLI flags (no cluster: see
tests/integration/test_dask_engine.py for the engine itself)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from jobcare.cli import app
from jobcare.config import TrainConfig
from jobcare.errors import ConfigError
from training.distributed import check_engine, dask_lgb_params, seeker_partitions
from training.ranker import LambdaRankRanker


def test_engine_settings_default_to_local_and_unknown_keys_are_errors():
    tc = TrainConfig()
    assert tc.engine == "local" and tc.dask.scheduler is None
    assert (tc.dask.n_workers, tc.dask.threads_per_worker, tc.dask.partitions) == (2, 1, None)
    tc = TrainConfig(engine="dask", dask={"scheduler": "tcp://10.0.0.5:8786", "partitions": 8})
    assert tc.dask.scheduler == "tcp://10.0.0.5:8786" and tc.dask.partitions == 8
    with pytest.raises(ValidationError, match="workers"):
        TrainConfig(dask={"workers": 3})
    with pytest.raises(ValidationError):
        TrainConfig(engine="spark")


def test_the_unbiased_ranker_is_refused_on_the_dask_engine_only():
    over = {"posting": {"unbiased": True}}
    check_engine(TrainConfig(ranker_overrides=over))  # local: fine
    check_engine(TrainConfig(engine="dask", item_types=["course"], ranker_overrides=over))  # not trained
    with pytest.raises(ConfigError, match=r"unbiased ranker of \['posting'\].*position"):
        check_engine(TrainConfig(engine="dask", ranker_overrides=over))


def test_dask_lightgbm_parameters_are_the_local_rankers():
    r = LambdaRankRanker(
        n_estimators=77, learning_rate=0.1, num_leaves=15, feature_fraction=0.8, random_state=3
    )
    p = dask_lgb_params(r, 5)
    assert p["objective"] == "lambdarank" and p["n_estimators"] == 77 and p["learning_rate"] == 0.1
    assert p["num_leaves"] == 15 and p["min_child_samples"] == 20 and p["colsample_bytree"] == 0.8
    assert p["random_state"] == 3 and p["deterministic"] and p["time_out"] == 5
    assert "num_threads" not in p and "feature_fraction" not in p  # lightgbm.dask sets the threads


def test_seeker_partitions_are_stable_whole_and_balanced():
    ids = np.arange(10)
    assert seeker_partitions(ids, 2).tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1]  # the same in any process
    many = np.random.default_rng(0).integers(0, 10**9, 20_000)
    part = seeker_partitions(many, 4)
    assert set(part) == {0, 1, 2, 3} and np.bincount(part).min() > 4500
    again = seeker_partitions(np.concatenate([many, many]), 4)
    assert (again[: many.size] == part).all() and (
        again[many.size :] == part
    ).all()  # a seeker: one partition


def test_train_flags_set_the_engine(monkeypatch, tmp_path):
    import training.pipeline

    seen = {}

    def fake_train(world, cfg, console=None, oracle=None):
        seen["train"] = cfg.train
        return {"run_id": "r"}

    monkeypatch.setattr(training.pipeline, "train", fake_train)
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--world", str(tmp_path), "--scheduler", "tcp://h:8786"])
    assert r.exit_code == 0, r.output
    assert seen["train"].engine == "dask" and seen["train"].dask.scheduler == "tcp://h:8786"
    r = runner.invoke(app, ["train", "--world", str(tmp_path), "--engine", "dask"])
    assert r.exit_code == 0 and seen["train"].engine == "dask" and seen["train"].dask.scheduler is None
    r = runner.invoke(
        app, ["train", "--world", str(tmp_path), "--engine", "local", "--scheduler", "tcp://h:1"]
    )
    assert r.exit_code == 2 and "--scheduler needs --engine dask" in r.output
    r = runner.invoke(app, ["train", "--world", str(tmp_path), "--engine", "spark"])
    assert r.exit_code == 2 and "ConfigError" in r.output


def test_the_local_engine_does_not_import_dask():
    code = (
        "import sys, training.pipeline; print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
