"""Integration fixtures: real Feast repositories, Redis and PostgreSQL on this machine.

On a machine where Redis or PostgreSQL is unreachable and CI is not set, tests needing them skip with
the reason; under CI=true they fail instead (they must run in CI).
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest

REDIS = os.environ.get("JOBCARE_REDIS", "127.0.0.1:6379")
PG_URL = os.environ.get("JOBCARE_FEAST_REGISTRY_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _reachable(hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, hostport: str) -> None:
    if _reachable(hostport):
        return
    msg = f"{name} at {hostport} is not reachable"
    if os.environ.get("CI"):
        pytest.fail(f"{msg}, and CI=true requires the production-profile tests to run")
    pytest.skip(f"{msg} (CI not set): production-profile test skipped")


@pytest.fixture
def redis_url():
    require_service("Redis", REDIS)
    return REDIS


@pytest.fixture
def postgres_url():
    require_service("PostgreSQL", "127.0.0.1:5432")
    return PG_URL


@pytest.fixture
def unique_project():
    return f"jc_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def local_repo(tiny_world, tmp_path_factory):
    """A rendered, applied and materialised local-profile feature repository over the tiny world."""
    from features import store
    from jobcare.config import FeaturesConfig

    cfg = FeaturesConfig(profile="local", repo=tmp_path_factory.mktemp("feature_repo"))
    repo = store.render_repo(tiny_world, cfg)
    store.apply(repo)
    store.materialize(repo)
    return repo


@pytest.fixture(scope="session")
def served(tiny_world, local_repo, tmp_path_factory):
    """A registry with a champion for every item type (trained on the tiny world) and the serving
    config pointing at it, written as YAML for `JOBCARE_CONFIG`. Returns (config, config path)."""
    import json

    import yaml

    from jobcare.config import CandidatesConfig, ProjectConfig, TrackingConfig, TwoTowerParams
    from tests.conftest import tiny_train
    from training.pipeline import train

    tmp = tmp_path_factory.mktemp("served")
    cfg = ProjectConfig()
    cfg.features.repo = local_repo
    cfg.candidates = CandidatesConfig(
        two_tower=TwoTowerParams(epochs=2, samples_per_epoch=4000, hidden=32, dim=16)
    )
    cfg.train = tiny_train(max_requests=100, negatives_per_request=10)
    cfg.train.ranker.n_estimators = 30
    cfg.tracking = TrackingConfig(
        uri=f"sqlite:///{tmp}/mlflow.db", artifacts=tmp / "artifacts", audit_log=tmp / "audit.jsonl"
    )
    cfg.serving.world = tiny_world
    cfg.serving.impression_log.dir = tmp / "impressions"
    cfg.serving.reload_poll_seconds = 0  # tests reload explicitly
    cfg.serving.item_refresh_seconds = 0
    train(tiny_world, cfg)
    path = tmp / "serving.yaml"
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    return cfg, path


@pytest.fixture(scope="session")
def live(served, tmp_path_factory):
    """`bentoml serve` in a subprocess on 127.0.0.1 (API keys off), shared by the tests that need a real
    server (test_serving, test_ui_browser); stopped at the end of the session."""
    from serving.launch import start

    env = {k: v for k, v in os.environ.items() if k != "JOBCARE_API_KEYS"}
    server = start(served[1], tmp_path_factory.mktemp("serve") / "bentoml.log", env=env, ready_timeout=180)
    yield server.base_url
    server.stop()


API_KEY = "k-123"


@pytest.fixture(scope="session")
def asgi_client(served):
    """The service's ASGI app (API keys on: ``API_KEY``) in a test client, one per session: BentoML
    registers its Prometheus metrics per app, so a second app in the same process fails."""
    from starlette.testclient import TestClient

    old = {k: os.environ.get(k) for k in ("JOBCARE_CONFIG", "JOBCARE_API_KEYS")}
    os.environ["JOBCARE_CONFIG"] = str(served[1])
    os.environ["JOBCARE_API_KEYS"] = API_KEY
    from serving.service import JobCare

    with TestClient(JobCare.to_asgi()) as c:
        yield c
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
