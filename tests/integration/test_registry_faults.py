"""Model trust and registry faults, for real: tampered, unsigned and broken versions refused while the old
model keeps serving; the registry's PostgreSQL database cut away (a TCP proxy) under a running `bentoml
serve`; `jobcare train` killed with SIGKILL while fitting and while registering; two trainings racing for
the champion alias; every promotion, rollback and reload in the audit log."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx
import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from jobcare.config import CandidatesConfig, ProjectConfig, TrackingConfig, TwoTowerParams
from serving.engine import Engine
from serving.errors import NotReadyError
from serving.model_watch import WatchHooks
from tests.conftest import tiny_train
from tests.integration.conftest import require_service
from tests.integration.faults import TcpProxy
from training import audit, integrity, tracking
from training.bundle import load_bundle, log_bundle
from training.pipeline import train
from training.registry import promote, record_digests, register

pytestmark = pytest.mark.integration
NAME = "jobcare-postings"
JOBCARE = Path(sys.executable).parent / "jobcare"


def _cfg(tmp: Path, tiny_world, local_repo, uri: str | None = None) -> ProjectConfig:
    cfg = ProjectConfig()
    cfg.features.repo = local_repo
    cfg.candidates = CandidatesConfig(
        two_tower=TwoTowerParams(epochs=2, samples_per_epoch=4000, hidden=32, dim=16)
    )
    cfg.train = tiny_train(item_types=["posting"], max_requests=100, negatives_per_request=10)
    cfg.train.ranker.n_estimators = 30
    cfg.tracking = TrackingConfig(
        uri=uri or f"sqlite:///{tmp}/mlflow.db", artifacts=tmp / "artifacts", audit_log=tmp / "audit.jsonl"
    )
    cfg.serving.world = tiny_world
    cfg.serving.item_types = ["posting"]
    cfg.serving.impression_log.dir = tmp / "impressions"
    cfg.serving.reload_poll_seconds = 0
    cfg.serving.item_refresh_seconds = 0
    return cfg


def _write(cfg: ProjectConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    return path


@pytest.fixture(scope="module")
def registry(tiny_world, local_repo, tmp_path_factory):
    """A SQLite registry whose champion v1 of postings was trained on the tiny world."""
    cfg = _cfg(tmp_path_factory.mktemp("trust"), tiny_world, local_repo)
    assert train(tiny_world, cfg)["posting"]["version"] == "1"
    return cfg


def _champion(client) -> str:
    return str(client.get_model_version_by_alias(NAME, "champion").version)


def _log_copy(cfg: ProjectConfig, client: MlflowClient, digests: bool = True) -> tuple[str, Path, str]:
    """v1's bundle logged again in a run of its own (its own files in the artifact store) and
    registered as a new version: (version, the logged model's folder in the artifact store, model id).
    ``digests=False``: registered the way a hand-made version would be, without any recorded digests."""
    bundle = load_bundle(f"models:/{NAME}/1", client)  # v1: the good one the module trained
    exp = tracking.start(cfg.tracking)
    with mlflow.start_run(experiment_id=exp, run_name="copy"), tempfile.TemporaryDirectory() as tmp:
        uri = log_bundle(bundle, Path(tmp) / "b", "posting_bundle")
    model_id = integrity.model_id_of(uri)
    if digests:
        version = register(client, uri, NAME)
    else:
        for k in (integrity.DIGEST_TAG, integrity.MANIFEST_TAG):
            client.delete_logged_model_tag(model_id, k)
        version = str(client.create_model_version(NAME, uri).version)
    folder = Path(urlparse(client.get_logged_model(model_id).artifact_location).path)
    return version, folder, model_id


class _RunsCode:
    """A pickle that creates ``marker`` when it is unpickled (what a tampered python_model.pkl can do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_tampered_unsigned_and_broken_versions_are_refused_and_the_old_model_keeps_serving(
    registry, tmp_path
):
    cfg = registry
    refused = []
    eng = Engine(cfg, hooks=WatchHooks(refused=refused.append), wait_for_champion=True)
    client = MlflowClient()
    assert eng.loaded_versions() == {("champion", "posting"): "1"} and eng.ready()[0]

    # tampered: python_model.pkl replaced, after registration, by a pickle that runs code when loaded
    tampered, folder, _ = _log_copy(cfg, client)
    marker = tmp_path / "code-ran"
    (folder / "python_model.pkl").write_bytes(pickle.dumps(_RunsCode(marker)))
    promote(client, NAME, tampered, "test: tampered files")
    assert eng.reload_if_moved() is False
    assert not marker.exists()  # refused before anything was unpickled
    assert refused == ["digest_mismatch"]
    assert eng.recommend("posting", seeker_id=5, k=3)["model_version"] == "1"
    last = audit.read(cfg.tracking.audit_log)[-1]
    assert (last["action"], last["version"], last["from_version"]) == ("refuse", tampered, "1")
    assert last["why"].startswith("digest_mismatch: file python_model.pkl: sha256")
    assert eng.reload_if_moved() is False and refused == ["digest_mismatch"]  # remembered, not retried
    with pytest.raises(integrity.DigestMismatchError, match=f"{NAME} v{tampered}: file python_model.pkl"):
        load_bundle(f"models:/{NAME}@champion")  # the offline path (evaluation) verifies too
    assert not marker.exists()

    # unsigned: registered without digests (not by `jobcare train`)
    unsigned, _, _ = _log_copy(cfg, client, digests=False)
    promote(client, NAME, unsigned, "test: no digests")
    assert eng.reload_if_moved() is False and refused == ["digest_mismatch", "no_digests"]
    assert eng.loaded_versions()[("champion", "posting")] == "1"

    # broken: digests recorded for files that do not load
    broken, folder, _ = _log_copy(cfg, client)
    (folder / "python_model.pkl").write_bytes(b"not a pickle")
    record_digests(client, NAME, broken, "test: trust broken files", audit_log=cfg.tracking.audit_log)
    promote(client, NAME, broken, "test: broken")
    assert eng.reload_if_moved() is False and refused[-1] == "load_failed"
    assert "files match their digests but do not load" in eng.watch.refused[("champion", "posting", broken)]

    # a good version is loaded, and the reload is in the audit log
    good, _, _ = _log_copy(cfg, client)
    promote(client, NAME, good, "test: good")
    assert eng.reload_if_moved() is True
    assert eng.recommend("posting", seeker_id=5, k=3)["model_version"] == good
    last = audit.read(cfg.tracking.audit_log)[-1]
    assert (last["action"], last["version"], last["from_version"], last["alias"]) == (
        "reload",
        good,
        "1",
        "champion",
    )
    assert len(refused) == 3
    promote(client, NAME, "1", "test: restore")


def test_at_start_up_a_refused_champion_leaves_the_service_not_ready_with_the_reason(registry):
    cfg = registry
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    unsigned, _, _ = _log_copy(cfg, client, digests=False)
    promote(client, NAME, unsigned, "test: no digests at start-up")
    with pytest.raises(NotReadyError, match=f"no loadable champion: {NAME} v{unsigned}: no jobcare.sha256"):
        Engine(cfg)  # offline use: a named error
    refused = []
    eng = Engine(cfg, hooks=WatchHooks(refused=refused.append), wait_for_champion=True)  # the service
    ok, why = eng.ready()
    assert not ok and why.startswith(f"no loadable champion: {NAME} v{unsigned}: no jobcare.sha256 recorded")
    assert refused == ["no_digests"]
    with pytest.raises(NotReadyError, match="no loadable champion"):
        eng.recommend("posting", seeker_id=5, k=3)
    assert eng.reload_if_moved() is False  # the same refused version: nothing to load
    promote(client, NAME, "1", "test: a good champion again")
    assert eng.reload_if_moved() is True and eng.ready() == (True, "ready")
    assert eng.recommend("posting", seeker_id=5, k=3)["model_version"] == "1"


def test_cli_promote_and_rollback_write_who_why_and_from_to_to_the_audit_log(registry, tmp_path):
    from typer.testing import CliRunner

    from jobcare.cli import app

    cfg = registry
    path = _write(cfg, tmp_path / "cfg.yaml")
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    before = len(audit.read(cfg.tracking.audit_log))
    new, _, _ = _log_copy(cfg, client)
    runner = CliRunner()
    out = runner.invoke(app, ["promote", new, "--reason", "better on the A/B test", "--config", str(path)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["rollback", "--reason", "complaints", "--config", str(path)])
    assert out.exit_code == 0, out.output
    promo, back = audit.read(cfg.tracking.audit_log)[before:]
    assert (promo["action"], promo["from_version"], promo["version"], promo["why"]) == (
        "promote",
        "1",
        new,
        "better on the A/B test",
    )
    assert (back["action"], back["from_version"], back["version"], back["why"]) == (
        "rollback",
        new,
        "1",
        "rollback: complaints",
    )
    assert promo["who"] == back["who"] == audit.who() and promo["pid"] == back["pid"] == os.getpid()
    assert _champion(client) == "1"
    tags = client.get_model_version(NAME, "1").tags
    assert tags["champion_reason"] == "rollback: complaints"  # the MLflow tags stay


# ---------------------------------------------------------------------- PostgreSQL behind a proxy


@pytest.fixture
def pg_db():
    """A fresh PostgreSQL database for the registry (created here, dropped after)."""
    import psycopg

    require_service("PostgreSQL", "127.0.0.1:5432")
    db = f"jc_{uuid.uuid4().hex[:10]}_registry"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
        con.execute(f'create database "{db}"')
    yield db
    mlflow.set_tracking_uri("sqlite:///:memory:")
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
        con.execute(f'drop database if exists "{db}" with (force)')


def _metric(text: str, name: str) -> float | None:
    """The value of metric ``name`` (labels included, e.g. 'x{reason="a"}') in /metrics text; for a
    per-worker gauge (``name{pid="..."}`` lines) the lowest value over the workers."""
    values = []
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name or key.startswith(name + '{pid="'):
            values.append(float(value))
    return min(values) if values else None


def _wait(fn, timeout: float, what: str, period: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = fn()
        if out:
            return out
        time.sleep(period)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def test_registry_database_cut_away_under_the_server_keeps_serving_and_the_new_champion_follows(
    pg_db, tiny_world, local_repo, tmp_path
):
    from serving.launch import start

    direct = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_db}"
    cfg = _cfg(tmp_path, tiny_world, local_repo, uri=direct)
    assert train(tiny_world, cfg)["posting"]["version"] == "1"
    client = MlflowClient(tracking_uri=direct)
    with TcpProxy(("127.0.0.1", 5432)) as proxy:
        scfg = cfg.model_copy(deep=True)
        scfg.tracking.uri = f"postgresql+psycopg://postgres@{proxy.address}/{pg_db}"
        scfg.serving.reload_poll_seconds = 0.5
        env = {k: v for k, v in os.environ.items() if k not in ("JOBCARE_API_KEYS", "JOBCARE_MLFLOW_URI")}
        env["JOBCARE_WORKERS"] = "1"
        server = start(_write(scfg, tmp_path / "serving.yaml"), tmp_path / "bentoml.log", env=env)
        try:
            with httpx.Client(base_url=server.base_url, timeout=10) as c:

                def metrics():
                    text = c.get("/metrics").text
                    (tmp_path / "metrics.txt").write_text(text)
                    return text

                jobs = lambda: c.post("/recommend/jobs", json={"seeker_id": 5, "k": 3})  # noqa: E731
                _wait(lambda: _metric(metrics(), "jobcare_registry_reachable") == 1, 30, "reachable 1")
                assert jobs().json()["model_version"] == "1"

                proxy.cut()
                mlflow.set_tracking_uri(direct)  # the database itself is up: a retraining promotes v2
                new = str(
                    client.create_model_version(NAME, client.get_model_version(NAME, "1").source).version
                )
                promote(client, NAME, new, "test: promoted while the service cannot see the registry")
                _wait(
                    lambda: (_metric(metrics(), "jobcare_registry_poll_failures_total") or 0) >= 3,
                    60,
                    "3 fails",
                )
                assert _metric(metrics(), "jobcare_registry_reachable") == 0
                during = [jobs() for _ in range(20)]
                assert [r.status_code for r in during] == [200] * 20
                assert {r.json()["model_version"] for r in during} == {"1"}  # the loaded model serves
                assert c.get("/readyz").status_code == 200
                assert proxy.refused >= 3  # the service really tried, and was turned away

                proxy.restore()
                t0 = time.monotonic()
                _wait(lambda: jobs().json()["model_version"] == new, 60, "the new champion served")
                pickup = time.monotonic() - t0
                assert _metric(metrics(), "jobcare_registry_reachable") == 1

                # and a version without digests promoted now is refused, visibly, v2 keeps serving
                unsigned, _, _ = _log_copy(cfg, client, digests=False)
                promote(client, NAME, unsigned, "test: unsigned")
                key = 'jobcare_model_refused_total{reason="no_digests"}'
                _wait(lambda: _metric(metrics(), key) == 1, 30, "refusal counted")
                assert jobs().json()["model_version"] == new
        finally:
            server.stop()
    log_text = (tmp_path / "bentoml.log").read_text()
    assert "registry unreachable, still serving the loaded models" in log_text
    assert f"model refused (no_digests): {NAME} v{unsigned}" in log_text
    reloads = [r for r in audit.read(cfg.tracking.audit_log) if r["action"] == "reload"]
    assert [(r["from_version"], r["version"]) for r in reloads][-1] == ("1", new)
    print(f"\nnew champion served {pickup:.2f} s after the registry database came back (poll 0.5 s)")


# ---------------------------------------------------------------------- `jobcare train` killed / racing


def _train_proc(cfg_path: Path, tiny_world, pause_at: str | None, pause_dir: Path, log: Path):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", JOBCARE_PAUSE_DIR=str(pause_dir))
    env.pop("JOBCARE_MLFLOW_URI", None)
    env.pop("JOBCARE_PAUSE_AT", None)
    if pause_at:
        env["JOBCARE_PAUSE_AT"] = pause_at
    with open(log, "wb") as f:
        return subprocess.Popen(
            [str(JOBCARE), "train", "--world", str(tiny_world), "--config", str(cfg_path)],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )


def _reach(proc, pause_dir: Path, point: str, log: Path, timeout: float = 150) -> None:
    marker = pause_dir / f"{point}.reached"

    def there():
        if proc.poll() is not None:
            raise AssertionError(
                f"train exited ({proc.returncode}) before {point}: {log.read_text()[-2000:]}"
            )
        return marker.exists()

    _wait(there, timeout, f"train reaching {point}")
    assert marker.read_text() == str(proc.pid)


def _kill9(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL


def _versions(client) -> list[str]:
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{NAME}'"))


def test_train_killed_while_fitting_moves_no_alias_and_a_rerun_succeeds(registry, tiny_world, tmp_path):
    cfg = registry
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    path = _write(cfg, tmp_path / "cfg.yaml")
    champion, versions = _champion(client), _versions(client)
    proc = _train_proc(path, tiny_world, "ranker_fit", tmp_path / "pause", tmp_path / "killed.log")
    _reach(proc, tmp_path / "pause", "ranker_fit", tmp_path / "killed.log")
    _kill9(proc)
    assert _champion(client) == champion and _versions(client) == versions  # nothing registered or moved

    rerun = subprocess.run(
        [str(JOBCARE), "train", "--world", str(tiny_world), "--config", str(path)],
        env={k: v for k, v in os.environ.items() if not k.startswith(("JOBCARE_PAUSE", "JOBCARE_MLFLOW"))},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    new = str(max(int(v) for v in _versions(client)))
    assert len(_versions(client)) == len(versions) + 1
    assert f"jobcare-postings v{new} -> " in rerun.stdout
    alias = "champion" if _champion(client) == new else "challenger"
    assert str(client.get_model_version_by_alias(NAME, alias).version) == new
    assert integrity.DIGEST_TAG in client.get_model_version(NAME, new).tags
    promote(client, NAME, champion, "test: restore")


def test_train_killed_while_registering_leaves_a_version_with_no_alias_and_serving_unchanged(
    registry, tiny_world, tmp_path
):
    cfg = registry
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    path = _write(cfg, tmp_path / "cfg.yaml")
    mlflow.set_tracking_uri(cfg.tracking.uri)
    eng = Engine(cfg, wait_for_champion=True)
    champion, versions = _champion(client), _versions(client)
    moves = [r for r in audit.read(cfg.tracking.audit_log) if r["action"] in ("gate", "promote", "rollback")]
    proc = _train_proc(path, tiny_world, "registered", tmp_path / "pause", tmp_path / "killed.log")
    _reach(proc, tmp_path / "pause", "registered", tmp_path / "killed.log")
    _kill9(proc)
    orphan = str(max(int(v) for v in _versions(client)))
    assert _versions(client) == sorted([*versions, orphan])
    mv = client.get_model_version(NAME, orphan)
    assert mv.aliases == [] and _champion(client) == champion  # no alias moved
    assert mv.tags[integrity.DIGEST_TAG]  # created with its digests in one call: never without them
    after = [r for r in audit.read(cfg.tracking.audit_log) if r["action"] in ("gate", "promote", "rollback")]
    assert after == moves
    assert eng.reload_if_moved() is False and eng.loaded_versions()[("champion", "posting")] == champion


def test_two_trainings_racing_for_the_champion_compare_against_the_champion_at_promotion_time(
    pg_db, tiny_world, local_repo, tmp_path
):
    """A decides against "no champion" and is held before promotion; B, running at the same time,
    registers and becomes champion; A, let go, takes the promotion lock, sees B's champion and compares
    again against it instead of taking the alias as "first version"."""
    cfg = _cfg(tmp_path, tiny_world, local_repo, uri=f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_db}")
    tracking.start(cfg.tracking)  # the registry's tables and experiment exist before the runs
    path = _write(cfg, tmp_path / "cfg.yaml")
    a_dir, b_dir = tmp_path / "pause_a", tmp_path / "pause_b"
    a = _train_proc(path, tiny_world, "before_promotion", a_dir, tmp_path / "a.log")
    b = _train_proc(path, tiny_world, "registered", b_dir, tmp_path / "b.log")
    try:
        _reach(a, a_dir, "before_promotion", tmp_path / "a.log", timeout=240)
        _reach(b, b_dir, "registered", tmp_path / "b.log", timeout=240)
        (b_dir / "registered.go").touch()
        assert b.wait(120) == 0, (tmp_path / "b.log").read_text()[-2000:]
        (a_dir / "before_promotion.go").touch()
        assert a.wait(120) == 0, (tmp_path / "a.log").read_text()[-2000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    a_out, b_out = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    assert _versions(client) == ["1", "2"]
    vb = re.search(r"jobcare-postings v(\d) -> champion \(first version\)", b_out).group(1)
    va = {"1": "2", "2": "1"}[vb]
    assert f"compared again: the champion moved from vNone to v{vb} during the gate" in a_out
    assert "(first version" not in a_out  # A did not take the alias as if there were no champion
    gates = [r for r in audit.read(cfg.tracking.audit_log) if r["action"] == "gate"]
    assert len(gates) == 2 and (gates[0]["version"], gates[0]["from_version"]) == (vb, None)
    a_alias = gates[1]["alias"]
    assert gates[1]["version"] == va and f"vs v{vb};" in gates[1]["why"]
    assert gates[1]["from_version"] == (vb if a_alias == "champion" else None)
    assert _champion(client) == (va if a_alias == "champion" else vb)
    assert client.get_model_version(NAME, va).aliases == [a_alias]
    assert gates[0]["pid"] == b.pid and gates[1]["pid"] == a.pid
