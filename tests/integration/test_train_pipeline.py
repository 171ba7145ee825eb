"""`jobcare train` on the tiny world: registry, aliases, gate, promote / rollback, bad input."""

from __future__ import annotations

import shutil

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from evaluation.reference import world_oracle
from jobcare.config import CandidatesConfig, ProjectConfig, TrackingConfig, TwoTowerParams
from jobcare.errors import ContractError
from jobcare.world.io import read_manifest, read_tables
from tests.conftest import tiny_train
from training.bundle import load_bundle
from training.pipeline import train
from training.registry import RegistryError, promote, rollback
from training.windows import WindowError, Windows

pytestmark = pytest.mark.integration


def _cfg(tmp_path, local_repo, **train_kw) -> ProjectConfig:
    cfg = ProjectConfig()
    cfg.features.repo = local_repo
    cfg.candidates = CandidatesConfig(
        two_tower=TwoTowerParams(epochs=2, samples_per_epoch=4000, hidden=32, dim=16)
    )
    cfg.train = tiny_train(item_types=["posting"], max_requests=150, negatives_per_request=10, **train_kw)
    cfg.train.ranker.n_estimators = 40
    cfg.tracking = TrackingConfig(
        uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifacts=tmp_path / "artifacts",
        audit_log=tmp_path / "audit.jsonl",
    )
    return cfg


@pytest.fixture(scope="module")
def trained(tiny_world, local_repo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = _cfg(tmp, local_repo)
    first = train(tiny_world, cfg, oracle=world_oracle(tiny_world))
    return cfg, first


def test_first_run_registers_a_champion_whose_bundle_loads_and_ranks(trained, tiny_world):
    cfg, first = trained
    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    v = client.get_model_version_by_alias("jobcare-postings", "champion")
    assert str(v.version) == first["posting"]["version"] == "1"
    m = first["posting"]["metrics"]
    # the explore protocol of validation and test: exactly the windows' explore slates with an outcome
    # inside the window (a window's labels come from its own events)
    span = read_manifest(tiny_world)["span"]
    w = Windows.of(span, cfg.train)
    assert w.valid_start == pd.Timestamp(span["end"]) - pd.Timedelta(days=45)
    for p, (a, b) in {"val": (w.valid_start, w.test_start), "test": (w.test_start, w.end)}.items():
        assert m[f"{p}_explore_requests"] == _explore_with_outcome(tiny_world, a, b) > 10
        # the oracle orders the same slates better than the popularity and ALS ranks do, and its
        # observable part is another ordering (below the full oracle, above popularity)
        oracle = m[f"{p}_explore_oracle_ndcg_at_10"]
        assert oracle > max(m[f"{p}_explore_popularity_ndcg_at_10"], m[f"{p}_explore_als_ndcg_at_10"])
        observable = m[f"{p}_explore_observable_oracle_ndcg_at_10"]
        assert m[f"{p}_explore_popularity_ndcg_at_10"] < observable < oracle
        # the best baseline is the one single-signal baseline (a source or the legacy rule) that is best on
        # validation, reported on both windows; the content GBDT has a ratio of its own
        best = max(
            ("als", "two_tower", "rules", "popularity", "legacy"),
            key=lambda b: m[f"val_explore_{b}_ndcg_at_10"],
        )
        assert m[f"{p}_explore_best_baseline_ndcg_at_10"] == m[f"{p}_explore_{best}_ndcg_at_10"]
    run = client.get_run(first["run_id"])
    for key in (
        "postings_val_ndcg_at_10",
        "postings_val_oracle_ndcg_at_10",
        "postings_val_explore_ndcg_at_10",
        "postings_test_explore_ndcg_at_10",
        "postings_test_explore_ratio_to_best_baseline",
        "postings_test_explore_ratio_to_content_gbdt_ci_low",
        "postings_test_explore_ratio_to_oracle_ci_low",
    ):
        assert key in run.data.metrics
    assert "truth" not in run.data.params
    assert run.data.tags["world_manifest_sha256"] and run.data.tags["git_commit"]
    bundle = load_bundle("models:/jobcare-postings@champion")
    assert not [f for f in bundle.features if "gender" in f or f.endswith("__age")]
    # the registered content ablation: the ranker's inputs minus every collaborative one
    assert set(bundle.content.feature_names_) < set(bundle.features)
    assert not [
        f for f in bundle.content.feature_names_ if f.startswith(("cand_rank_", "posting_popularity__"))
    ]
    rows = pd.DataFrame({f: [0.0, 1.0] for f in bundle.features})
    assert len(bundle.score(rows)) == 2
    items, _ = bundle.als.recommend(int(bundle.als.users_.keys[0]), 5)
    assert len(items) == 5
    # the run's per-stage time and memory (stages.json): stage one fitted before the train, validation and
    # test windows and once more on every event for the registered bundle; four LambdaRank fits (ranker and
    # content ablation, each on train and on train + validation); explore slates of validation and test
    stages = mlflow.artifacts.load_dict(f"runs:/{first['run_id']}/stages.json")
    assert stages == first["stages"]
    calls = {name: s["calls"] for name, s in stages.items()}
    assert {k: calls[k] for k in ("contracts", "read_logs", "registration", "gate")} == dict.fromkeys(
        ("contracts", "read_logs", "registration", "gate"), 1
    )
    assert calls["posting/stage_one"] == calls["posting/stage_one/als"] == 4
    assert calls["posting/ranker_fit"] == 4 and calls["posting/explore_rows"] == 2
    assert calls["posting/ranker_rows"] == 2  # train and validation windows
    assert "feature_tables" not in stages  # the repository was already rendered for this world
    assert stages["posting/stage_one/als"]["seconds"] < stages["posting/stage_one"]["seconds"]
    assert all(s["peak_rss_mib"] > 100 for s in stages.values())


def _explore_with_outcome(world, start, end) -> int:
    """Explore posting sessions in [start, end) with an outcome (view or better) before ``end``."""
    t = read_tables(world, ["sessions", "events"])
    s, ev = t["sessions"], t["events"]
    s = s[(s.item_type == "posting") & (s.policy == "explore") & (s.ts >= start) & (s.ts < end)]
    ev = ev[ev.session_id.isin(s.session_id) & (ev.ts < end) & (ev.item_type == "posting")]
    return int(ev[ev.event_type.isin(["view", "apply", "hire"])].session_id.nunique())


def test_same_world_config_and_seed_give_the_same_metrics_in_another_process(trained, tiny_world, tmp_path):
    """Reproducible: a fresh process (another hash seed, its own registry) gets every metric bit for bit."""
    import json
    import os
    import subprocess
    import sys

    cfg, first = trained
    other = cfg.model_copy(deep=True)
    other.tracking = TrackingConfig(
        uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifacts=tmp_path / "artifacts",
        audit_log=tmp_path / "audit.jsonl",
    )
    path = tmp_path / "train.json"
    path.write_text(other.model_dump_json())
    code = (
        "import json, sys; from jobcare.config import ProjectConfig; from training.pipeline import train; "
        "from evaluation.reference import world_oracle; "
        f"cfg = ProjectConfig.model_validate_json(open({str(path)!r}).read()); "
        f"W = {str(tiny_world)!r}; "
        "print(json.dumps(train(W, cfg, oracle=world_oracle(W))['posting']['metrics']))"
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
    assert res["posting"]["gate"]["protocol"] == "validation explore slates"  # the unbiased evidence
    assert not [k for k in res["posting"]["metrics"] if "oracle" in k]  # no oracle asked for: none shown
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
    cfg.tracking = TrackingConfig(
        uri=pg_tracking_uri, artifacts=tmp_path / "pg_artifacts", audit_log=tmp_path / "audit.jsonl"
    )
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


def test_windows_that_do_not_fit_the_span_are_a_named_error_before_any_work(tiny_world, local_repo, tmp_path):
    cfg = _cfg(tmp_path, local_repo)
    cfg.train.test_days = 60  # 60 + 25 + 40 + 28 = 153 days > the tiny world's 120
    with pytest.raises(WindowError, match=r"= 153 days, but the world spans 120 days") as e:
        train(tiny_world, cfg)
    assert "train.test_days 60" in str(e.value)
    assert not (tmp_path / "mlflow.db").exists()  # nothing was logged


def test_the_readme_train_command_with_the_tiny_config_on_a_world_without_truth(tmp_path):
    """`jobcare train --world W --config configs/tiny.yaml` as the README gives it, on a freshly generated
    tiny world whose truth/ was deleted: it trains, registers and gates every item type; the bundle
    serves a request; asking for the oracle is a named error."""
    import json
    import os
    import subprocess
    import sys

    from jobcare.config import ProjectConfig, load_config
    from tests.conftest import TINY_YAML

    env = {**os.environ, "JOBCARE_MLFLOW_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    world = tmp_path / "world"
    cli = [sys.executable, "-m", "jobcare.cli"]
    run = lambda *a: subprocess.run([*cli, *a], cwd=tmp_path, env=env, capture_output=True, text=True)  # noqa: E731
    gen = run("world", "generate", "--config", str(TINY_YAML), "--out", str(world))
    assert gen.returncode == 0, gen.stderr[-2000:]
    shutil.rmtree(world / "truth")
    out = run("train", "--world", str(world), "--config", str(TINY_YAML), "--repo", str(tmp_path / "repo"))
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    for it in ("posting", "course", "certificate"):
        assert f"{it}: val explore" in out.stdout and "-> champion (first version)" in out.stdout
    assert "oracle" not in out.stdout
    bad = run("train", "--world", str(world), "--config", str(TINY_YAML), "--oracle")
    assert bad.returncode != 0 and "no truth/utility.json" in (bad.stdout + bad.stderr)
    assert "Traceback" not in bad.stdout + bad.stderr
    # the registered champion serves a request on the truth-less world
    from serving.engine import Engine

    cfg = load_config(TINY_YAML, ProjectConfig)
    cfg.tracking.uri = env["JOBCARE_MLFLOW_URI"]
    cfg.features.repo = tmp_path / "repo"
    cfg.serving.world = world
    cfg.serving.impression_log.dir = tmp_path / "impressions"
    cfg.serving.item_refresh_seconds = 0
    cfg.serving.reload_poll_seconds = 0
    engine = Engine(cfg)
    res = engine.recommend("posting", seeker_id=3, k=5)
    assert len(res["items"]) == 5 and res["model_version"] == "1" and not res["degraded"]
    # the A/B report and the replay evaluation on the same truth-less world
    html = tmp_path / "ab.html"
    ab = run(
        "ab-report", "--a", "baseline:als", "--b", "models:/jobcare-postings@champion", "--world", str(world),
        "--config", str(TINY_YAML), "--repo", str(tmp_path / "repo"), "--window", "20", "--out", str(html),
    )  # fmt: skip
    assert ab.returncode == 0, (ab.stdout + ab.stderr)[-3000:]
    page = html.read_text()
    assert "No oracle: this world (or log export) has no truth/." in page and "n/a (no truth)" in page
    report = json.loads(html.with_suffix(".json").read_text())
    assert set(report["curves"]) == {"A", "B"} and report["ope"]["A"]["true"] is None
    assert "baseline:oracle" not in report["unbiased"]["baselines"]  # no truth: no oracle baseline
    assert report["ope"]["A"]["ips"]["estimate"] >= 0
    ev = run(
        "evaluate", "--model", "models:/jobcare-postings@champion", "--world", str(world),
        "--config", str(TINY_YAML), "--repo", str(tmp_path / "repo"), "--window", "20",
    )  # fmt: skip
    assert ev.returncode == 0 and "ndcg@10" in ev.stdout and "oracle" not in ev.stdout, ev.stderr[-2000:]
