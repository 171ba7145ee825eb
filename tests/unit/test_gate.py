"""The promotion gate decides on the validation window's explore slates, not on logged labels: a
challenger that imitates the logging policy (better on logged labels) but orders the explore slates
worse is never promoted; with too few explore seekers the logged labels decide and the reason says so."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from jobcare.config import GateConfig
from training import pipeline
from training.stage_two import ndcg_by_request

N_SEEKERS, SLATE = 60, 10


def _rows(rng, n_requests: int) -> pd.DataFrame:
    """Requests of ten shown items, one relevant item each (label 2), with a feature ``f`` that is the
    true relevance plus noise and a feature ``legacy`` that follows the logging policy (position)."""
    out = []
    for r in range(n_requests):
        label = np.zeros(SLATE, int)
        label[rng.integers(SLATE)] = 2
        out.append(
            pd.DataFrame(
                {
                    "request_id": r,
                    "item_id": np.arange(SLATE) + 100 * r,
                    "label": label,
                    "shown": 1,
                    "f": label + rng.normal(0, 0.3, SLATE),
                    "legacy": -np.arange(SLATE, dtype=float),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


class _Ranker:
    def __init__(self, col):
        self.col = col

    def predict(self, rows):
        return rows[self.col].to_numpy(float)


@pytest.fixture
def world(monkeypatch):
    """A champion that ranks by the relevant feature ``f``, a registry that records the alias."""
    moves = []
    champion = SimpleNamespace(ranker=_Ranker("f"), features=["f", "legacy"], item_type="posting")
    monkeypatch.setattr(pipeline, "champion_version", lambda client, name: SimpleNamespace(version="1"))
    monkeypatch.setattr(pipeline, "load_bundle", lambda uri: champion)
    monkeypatch.setattr(pipeline, "set_alias", lambda client, name, alias, v, reason: moves.append(alias))
    return moves


def _res(n_explore_requests: int, rng) -> dict:
    """A challenger ranking by ``legacy``: perfect on logged labels (they followed the legacy order),
    poor on the uniformly random explore slates."""
    ex = _rows(rng, n_explore_requests)
    logged = _rows(rng, 80)
    logged["label"] = np.where(logged["legacy"] == 0, 2, 0)  # logged outcomes follow the logging order
    new = _Ranker("legacy")
    seekers = lambda n: pd.DataFrame({"request_id": np.arange(n), "seeker_id": np.arange(n) % N_SEEKERS})  # noqa: E731
    per_ex = pd.DataFrame({"model": ndcg_by_request(ex, new.predict(ex))})
    per_ex["seeker_id"] = (
        seekers(n_explore_requests).set_index("request_id")["seeker_id"].reindex(per_ex.index)
    )
    return {
        "valid_explore": SimpleNamespace(rows=ex, requests=seekers(n_explore_requests)),
        "per_request_explore": per_ex,
        "valid": SimpleNamespace(rows=logged, requests=seekers(80)),
        "per_request": pd.DataFrame({"ndcg": ndcg_by_request(logged, new.predict(logged))}),
    }


def test_a_challenger_better_on_logged_labels_but_worse_on_explore_slates_is_not_promoted(world):
    res = _res(120, np.random.default_rng(0))
    assert res["per_request"]["ndcg"].mean() == pytest.approx(1.0)  # the logged labels favour it
    out = pipeline.gate(None, "jobcare-postings", "2", res, GateConfig(n_boot=500))
    assert out["alias"] == "challenger" and world == ["challenger"]
    assert out["protocol"] == "validation explore slates"
    assert out["ci_high"] < 0 and out["n_seekers"] == N_SEEKERS  # clearly worse, per seeker


def test_too_few_explore_seekers_fall_back_to_logged_labels_and_say_so(world):
    res = _res(20, np.random.default_rng(1))  # 20 explore seekers < 30
    out = pipeline.gate(None, "jobcare-postings", "2", res, GateConfig(n_boot=500))
    assert out["protocol"].startswith("logged labels (only 20 explore seekers < min_explore_seekers 30)")
    assert out["alias"] == "champion" and out["ci_low"] > 0  # on logged labels the imitation wins
    assert "logged labels" in out["reason"]
