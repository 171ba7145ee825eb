"""`jobcare train` on the tiny world: registry, aliases, gate, promote / rollback, bad input."""

from __future__ import annotations

import shutil

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from jobcare.config import CandidatesConfig, ProjectConfig, TrackingConfig, TrainConfig, TwoTowerParams
from jobcare.errors import ContractError
from training.bundle import load_bundle
from training.pipeline import train
from training.registry import RegistryError, promote, rollback

pytestmark = pytest.mark.integration


def _cfg(tmp_path, local_repo, **train_kw) -> ProjectConfig:
    cfg = ProjectConfig()
    cfg.features.repo = local_repo
    cfg.candidates = CandidatesConfig(
        two_tower=TwoTowerParams(epochs=2, samples_per_epoch=4000, hidden=32, dim=16)
    )
    cfg.train = TrainConfig(
        item_types=["posting"],
        eval_days=30,
        train_days=45,
        max_requests=150,
        negatives_per_request=10,
        **train_kw,
    )
    cfg.train.ranker.n_estimators = 40
    cfg.tracking = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", artifacts=tmp_path / "artifacts")
    return cfg


@pytest.fixture(scope="module")
def trained(tiny_world, local_repo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = _cfg(tmp, local_repo)
    first = train(tiny_world, cfg)
    return cfg, first


def test_first_run_registers_a_champion_whose_bundle_loads_and_ranks(trained):
    cfg, first = trained
    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    v = client.get_model_version_by_alias("jobcare-postings", "champion")
    assert str(v.version) == first["posting"]["version"] == "1"
    m = first["posting"]["metrics"]
    assert 0 < m["val_ndcg_at_10"] <= 1 and 0 < m["val_oracle_ndcg_at_10"] <= 1
    # the explore protocol: its own replay of the window's explore slates, ratios with intervals
    assert m["val_requests_explore"] > 10
    r = m["val_explore_ratio_to_oracle"]
    assert r == pytest.approx(m["val_ndcg_at_10_explore"] / m["val_oracle_ndcg_at_10_explore"])
    assert m["val_explore_ratio_to_oracle_ci_low"] < r < m["val_explore_ratio_to_oracle_ci_high"]
    run = client.get_run(first["run_id"])
    for key in (
        "postings_val_ndcg_at_10",
        "postings_val_oracle_ndcg_at_10",
        "postings_val_als_only_ndcg_at_10",
        "postings_val_ndcg_at_10_cold",
    ):
        assert key in run.data.metrics
    assert run.data.tags["world_manifest_sha256"] and run.data.tags["git_commit"]
    bundle = load_bundle("models:/jobcare-postings@champion")
    assert not [f for f in bundle.features if "gender" in f or f.endswith("__age")]
    rows = pd.DataFrame({f: [0.0, 1.0] for f in bundle.features})
    assert len(bundle.score(rows)) == 2
    items, _ = bundle.als.recommend(int(bundle.als.users_.keys[0]), 5)
    assert len(items) == 5


def test_same_world_config_and_seed_give_the_same_metrics_in_another_process(trained, tiny_world, tmp_path):
    """Reproducible: a fresh process (another hash seed, its own registry) gets every metric bit for bit."""
    import json
    import os
    import subprocess
    import sys

    cfg, first = trained
    other = cfg.model_copy(deep=True)
    other.tracking = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlflow.db", artifacts=tmp_path / "artifacts")
    path = tmp_path / "train.json"
    path.write_text(other.model_dump_json())
    code = (
        "import json, sys; from jobcare.config import ProjectConfig; from training.pipeline import train; "
        f"cfg = ProjectConfig.model_validate_json(open({str(path)!r}).read()); "
        f"print(json.dumps(train({str(tiny_world)!r}, cfg)['posting']['metrics']))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    again = json.loads(out.stdout.strip().splitlines()[-1])
    assert again == json.loads(json.dumps(first["posting"]["metrics"]))


def test_worse_challenger_is_not_promoted_and_rollback_restores(tiny_world, trained, tmp_path):
    cfg, first = trained
    worse = cfg.model_copy(deep=True)
    worse.train.shuffle_labels = True
    res = train(tiny_world, worse)
    assert res["posting"]["gate"]["alias"] == "challenger", res["posting"]["gate"]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("jobcare-postings", "champion").version) == "1"
    assert (
        str(client.get_model_version_by_alias("jobcare-postings", "challenger").version)
        == res["posting"]["version"]
    )
    # a manual promotion, then a rollback to the previous champion, recorded as tags
    promote(client, "jobcare-postings", res["posting"]["version"], "test: manual promotion")
    assert (
        str(client.get_model_version_by_alias("jobcare-postings", "champion").version)
        == res["posting"]["version"]
    )
    assert rollback(client, "jobcare-postings", "test: it was worse") == "1"
    v = client.get_model_version_by_alias("jobcare-postings", "champion")
    assert str(v.version) == "1" and v.tags["champion_reason"].startswith("rollback")
    with pytest.raises(RegistryError):
        promote(client, "jobcare-postings", "99", "no such version")


@pytest.fixture
def pg_tracking_uri(postgres_url, unique_project):
    """A fresh PostgreSQL database for MLflow, dropped afterwards."""
    import psycopg

    db = f"{unique_project}_mlflow"
    yield postgres_url.rsplit("/", 1)[0] + f"/{db}"
    mlflow.set_tracking_uri("sqlite:///:memory:")  # MLflow re-creates a missing database on access
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
        con.execute(f'drop database if exists "{db}" with (force)')


def test_production_tracking_on_postgresql(tiny_world, local_repo, tmp_path, pg_tracking_uri):
    """The pipeline logs and registers for real on MLflow's PostgreSQL backend (a fresh database)."""
    cfg = _cfg(tmp_path, local_repo)
    cfg.tracking = TrackingConfig(uri=pg_tracking_uri, artifacts=tmp_path / "pg_artifacts")
    res = train(tiny_world, cfg)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("jobcare-postings", "champion").version) == "1"
    run = client.get_run(res["run_id"])
    assert run.data.metrics["postings_val_ndcg_at_10"] == pytest.approx(
        res["posting"]["metrics"]["val_ndcg_at_10"]
    )
    assert len(load_bundle("models:/jobcare-postings@champion").features) > 10


def test_corrupted_world_is_refused_before_anything_is_logged(tiny_world, local_repo, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_world, bad)
    ev = pd.read_parquet(bad / "events.parquet")
    ev.loc[0, "ts"] = pd.Timestamp("2031-01-01", tz="UTC")
    ev.to_parquet(bad / "events.parquet")
    cfg = _cfg(tmp_path, local_repo)
    with pytest.raises(ContractError):
        train(bad, cfg)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    assert MlflowClient().search_registered_models() == []
    assert not (tmp_path / "mlflow.db").exists() or mlflow.search_runs(search_all_experiments=True).empty
