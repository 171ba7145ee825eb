"""The Dask engine (``train.engine: dask``) on a 2-worker ``LocalCluster`` (processes, one thread each):
rows built on the workers equal the local rows; the ``lightgbm.dask`` ranker's validation NDCG@10 is
within 0.01 of the local ranker's on the same rows (the issue's bound; on the tiny world's scale with
2,000 seekers, every request of the windows: see the test); the registered bundle is the local kind; a
worker killed mid-fit is a named error that leaves no registered version."""

from __future__ import annotations

import os
import signal
import threading
import time

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features import store as fstore
from jobcare.config import (
    CandidatesConfig,
    FeaturesConfig,
    ProjectConfig,
    TrackingConfig,
    TwoTowerParams,
    WorldConfig,
)
from jobcare.schemas import SCHEMAS
from jobcare.world.generate import generate_world
from jobcare.world.io import read_manifest, read_tables
from tests.conftest import tiny_train
from training.bundle import load_bundle
from training.distributed import DaskEngine, DistributedTrainingError, local_cluster
from training.pipeline import train
from training.ranker import LambdaRankRanker
from training.request_path import context
from training.stage_two import build_rows, fit_ranker, ndcg_by_request
from training.windows import Windows

pytestmark = pytest.mark.integration
TREES = 40
TOLERANCE = 0.01  # validation NDCG@10, dask vs local on the same rows (the bound)
SEEKERS = 2_000  # the tiny scale with 4x its 500 seekers: enough validation requests (see the NDCG test)
ALL = 100_000  # max_requests: every request of a window


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 worker processes with 1 thread each (what ``train.dask`` defaults to)."""
    from dask.distributed import Client

    with local_cluster(2, 1) as lc, Client(lc) as client:
        yield lc, client


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """(world, feature repository, tables): the tiny scale (120 days, 400 postings) with 2,000 seekers."""
    world = tmp_path_factory.mktemp("tiny_world_2000")
    generate_world(
        WorldConfig(scale="tiny", seed=11, overrides={"n_seekers": SEEKERS}), world, show_progress=False
    )
    repo = fstore.render_repo(world, FeaturesConfig(profile="local", repo=tmp_path_factory.mktemp("repo")))
    fstore.apply(repo)
    fstore.materialize(repo)
    return world, repo, read_tables(world, list(SCHEMAS))


def _cfg(
    tmp_path, local_repo, scheduler: str | None = None, trees: int = TREES, requests: int = 150
) -> ProjectConfig:
    cfg = ProjectConfig()
    cfg.features.repo = local_repo
    cfg.candidates = CandidatesConfig(
        two_tower=TwoTowerParams(epochs=2, samples_per_epoch=4000, hidden=32, dim=16)
    )
    cfg.train = tiny_train(item_types=["posting"], max_requests=requests, negatives_per_request=10)
    cfg.train.ranker.n_estimators = trees
    if scheduler is not None:
        cfg.train.engine = "dask"
        cfg.train.dask.scheduler = scheduler
    cfg.tracking = TrackingConfig(
        uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifacts=tmp_path / "artifacts",
        audit_log=tmp_path / "audit.jsonl",
    )
    return cfg


@pytest.fixture(scope="module")
def local(wide, tmp_path_factory):
    """The local engine's posting rows of the train and validation windows (every request), built as the
    pipeline does."""
    world, repo, tables = wide
    cfg = _cfg(tmp_path_factory.mktemp("local"), repo, requests=ALL)
    tc = cfg.train
    w = Windows.of(read_manifest(world)["span"], tc)
    ctx = context(repo, len(tables["competency_units"]))
    args = ("posting", tables, fstore.open_store(repo), repo, ctx, cfg.candidates)
    t0 = time.perf_counter()
    tr = build_rows(*args, w.train_start, w.valid_start, tc.max_requests, tc.negatives_per_request, tc.seed)
    va = build_rows(
        *args, w.valid_start, w.test_start, tc.max_requests, tc.negatives_per_request, tc.seed + 1
    )
    return {
        "cfg": cfg,
        "args": args,
        "windows": w,
        "train": tr,
        "valid": va,
        "secs": time.perf_counter() - t0,
    }


def test_rows_built_on_the_workers_equal_the_local_rows(local, cluster, wide):
    _, client = cluster
    cfg, w, tr = local["cfg"], local["windows"], local["train"]
    tc = cfg.train
    engine = DaskEngine(client, tc.dask, wide[0], wide[1], len(local["args"][1]["competency_units"]))
    t0 = time.perf_counter()
    d = engine.build_rows(
        *local["args"], w.train_start, w.valid_start, tc.max_requests, tc.negatives_per_request, tc.seed,
        stage=tr.stage,
    )  # fmt: skip
    secs = time.perf_counter() - t0
    print(
        f"\nrows of a window: local {local['secs'] / 2:.1f} s (with stage one), dask {secs:.1f} s (without)"
    )
    pd.testing.assert_frame_equal(d.rows, tr.rows)  # same requests, items, labels, features, in order
    pd.testing.assert_frame_equal(d.requests, tr.requests)
    assert d.features == tr.features and len(d.als_inputs) == len(tr.als_inputs)
    # one partition per worker, by seeker: no seeker (so no request, no query group) is split
    parts = client.gather(d.parts)
    assert len(parts) == 2 and sum(len(p) for p in parts) == len(tr.rows)
    seekers = [set(p["seeker_id"]) for p in parts]
    assert not seekers[0] & seekers[1]
    for p in parts:
        assert p["request_id"].is_monotonic_increasing  # each group's rows contiguous
        whole = tr.rows[tr.rows["request_id"].isin(p["request_id"])]
        assert len(whole) == len(p)


def test_dask_champion_is_within_001_in_ndcg_of_the_local_ranker_and_loads(local, cluster, wide, tmp_path):
    lc, _ = cluster
    cfg = _cfg(tmp_path, wide[1], scheduler=lc.scheduler_address, requests=ALL)
    t0 = time.perf_counter()
    res = train(wide[0], cfg)
    secs = time.perf_counter() - t0
    m = res["posting"]["metrics"]
    tr, va = local["train"], local["valid"]
    assert m["train_rows"] == len(tr.rows) and m["val_requests"] == va.rows["request_id"].nunique()
    params = cfg.train.ranker_for("posting").model_dump()
    t0 = time.perf_counter()
    ranker = fit_ranker(params, cfg.train.seed, tr, tr.features, eval_data=va)
    local_fit = time.perf_counter() - t0
    local_ndcg = float(ndcg_by_request(va.rows, ranker.predict(va.rows[tr.features])).mean())
    print(
        f"\nval NDCG@10: local {local_ndcg:.4f}, dask {m['val_ndcg_at_10']:.4f}; dask pipeline {secs:.1f} s"
    )
    print(f"local fit {local_fit:.2f} s")
    # The 0.01, on 2,391 training and 1,802 validation requests. LightGBM's data-parallel learner is
    # not the serial one (bins found per worker, leaf counts estimated from hessians, another summation
    # order: README), so the trees diverge after a near-tie, and what that moves is about the local
    # ranker's own spread over LightGBM seeds. On the 500-seeker tiny world's 150 validation requests that
    # spread was 0.019 and dask - local -0.012 to +0.008 (earlier down to -0.026); here the spread is 0.004
    # and dask - local -0.0045 to +0.0031 over seeds 0-4 x 2 runs (benchmarks/dask_engine.py --seekers 2000
    # --requests 0). The bound means something only on that many requests:
    assert va.rows["request_id"].nunique() >= 1_500
    assert abs(m["val_ndcg_at_10"] - local_ndcg) <= TOLERANCE
    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("jobcare-postings", "champion").version) == "1"
    assert client.get_run(res["run_id"]).data.tags["engine"] == "dask"
    bundle = load_bundle("models:/jobcare-postings@champion")
    assert type(bundle.ranker) is LambdaRankRanker and bundle.features == tr.features
    assert bundle.ranker.booster_.num_trees() == TREES
    scores = bundle.score(va.rows[bundle.features].head(20))
    assert scores.shape == (20,) and np.isfinite(scores).all()
    # the same LightGBM parameters as the local ranker, fitted data-parallel
    dask_p, local_p = _params(bundle.ranker.booster_), _params(ranker.booster_)
    for k in (
        "objective",
        "learning_rate",
        "num_leaves",
        "min_data_in_leaf",
        "feature_fraction",
        "seed",
        "lambdarank_truncation_level",
        "deterministic",
    ):
        assert dask_p[k] == local_p[k], k
    assert dask_p["tree_learner"] == "data" and local_p["tree_learner"] == "serial"


def _params(booster) -> dict:
    """The ``[key: value]`` parameter lines of a LightGBM model file."""
    lines = booster.model_to_string().split("parameters:", 1)[1].split("end of parameters", 1)[0]
    return dict(line.strip("[]").split(": ", 1) for line in lines.split("\n") if line.startswith("["))


def test_a_worker_killed_mid_fit_is_a_named_error_and_nothing_is_registered(
    cluster, tiny_world, local_repo, tmp_path
):
    lc, client = cluster
    cfg = _cfg(tmp_path, local_repo, scheduler=lc.scheduler_address, trees=5000)  # a fit of seconds
    pids = client.run(os.getpid)
    killed = []

    def kill_when_the_fit_runs() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            for worker, keys in client.processing().items():
                if any("_train_part" in str(k) for k in keys):
                    time.sleep(0.5)  # well into the boosting rounds
                    os.kill(pids[worker], signal.SIGKILL)
                    killed.append(worker)
                    return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_when_the_fit_runs, daemon=True)
    watcher.start()
    with pytest.raises(DistributedTrainingError, match="nothing was registered") as e:
        train(tiny_world, cfg)
    watcher.join(5)
    assert killed, "the fit was never seen running"
    assert "ranker fit" in str(e.value)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    assert MlflowClient().search_registered_models() == []
    runs = mlflow.search_runs(search_all_experiments=True)
    assert list(runs["status"]) == ["FAILED"]
