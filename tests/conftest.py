"""Shared fixtures: tiny worlds generated once per test session (seconds, no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("FEAST_USAGE", "False")

ONET_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "onet-29.2"
TINY_YAML = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def tiny_train(**overrides):
    """A TrainConfig with configs/tiny.yaml's windows (what fits a tiny world's span) and ``overrides``."""
    import yaml

    from jobcare.config import TrainConfig

    section = yaml.safe_load(TINY_YAML.read_text())["train"]
    windows = {k: section[k] for k in ("test_days", "eval_days", "train_days", "min_history_days")}
    return TrainConfig(**{**windows, **overrides})


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from jobcare.config import WorldConfig
    from jobcare.world.generate import generate_world

    out = tmp_path_factory.mktemp("tiny_world")
    generate_world(WorldConfig(scale="tiny", seed=11), out, show_progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_tables(tiny_world):
    from jobcare.schemas import SCHEMAS
    from jobcare.world.io import read_tables

    return read_tables(tiny_world, list(SCHEMAS))


@pytest.fixture(scope="session")
def oracle(tiny_world):
    from jobcare.world.oracle import WorldOracle

    return WorldOracle(tiny_world)
