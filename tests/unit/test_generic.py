"""The generic path on a generated implicit-feedback dataset with planted structure.

Users prefer one genre and everyone prefers high-``quality`` items; each user's interactions are few
(6-12 of 800 items), so ALS alone sees the genre only through sparse co-occurrence and never sees
quality, while the ranker gets both from the side table (``hist_share__genre``, ``item__quality``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from evaluation.metrics import ndcg_at_k
from jobcare.cli import app
from jobcare.config import GenericConfig
from jobcare.errors import JobcareError
from training.generic import GenericModel, fit, read_table

N_USERS, N_ITEMS, GENRES = 1200, 800, 12


def planted(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item": [f"i{j}" for j in range(N_ITEMS)],
            "genre": [f"g{j % GENRES}" for j in range(N_ITEMS)],
            "quality": rng.normal(0, 1, N_ITEMS),
        }
    )
    fav = rng.integers(0, GENRES, N_USERS)
    users = pd.DataFrame(
        {"user": [f"u{i}" for i in range(N_USERS)], "region": rng.integers(0, 5, N_USERS), "age": 30}
    )
    genre = np.arange(N_ITEMS) % GENRES
    rows = []
    for u in range(N_USERS):
        logit = 2.5 * (genre == fav[u]) + 1.5 * items["quality"].to_numpy()
        p = np.exp(logit - logit.max())
        p /= p.sum()
        n = rng.integers(6, 13)
        chosen = rng.choice(N_ITEMS, n, replace=False, p=p)
        for t, j in enumerate(chosen):
            rows.append((f"u{u}", f"i{j}", pd.Timestamp("2025-01-01") + pd.Timedelta(days=int(t))))
    inter = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return inter, users, items


def _ndcg(recs: pd.DataFrame, truth: pd.DataFrame) -> float:
    target = truth.set_index("user")["item"]
    out = []
    for u, g in recs.groupby("user"):
        rel = (g.sort_values("rank")["item"].to_numpy() == target[u]).astype(float)
        out.append(ndcg_at_k(rel, 10, np.array([1.0])))
    return float(np.sum(out) / len(target))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    inter, users, items = planted()
    last = inter.sort_values("timestamp").groupby("user").tail(1)
    train = inter.drop(index=last.index)
    out = tmp_path_factory.mktemp("generic_model")
    stats = fit(train, users, items, GenericConfig(), out)
    return train, last, users, items, out, stats


def test_two_stage_beats_als_alone_on_planted_structure(split):
    train, last, _, _, out, stats = split
    assert stats["holdout"] == "latest" and stats["ranker_users"] > 100
    assert not [f for f in stats["features"] if "age" in f]  # protected side column dropped
    model = GenericModel(out)
    users = last["user"].to_numpy()
    two = model.recommend(users, 10)
    als = model.recommend_als_only(users, 10)
    n2, na = _ndcg(two, last), _ndcg(als, last)
    assert n2 > 1.2 * na, (n2, na)
    assert (two.groupby("user").size() == 10).all()
    seen = set(zip(train["user"], train["item"]))
    assert not any((u, i) in seen for u, i in zip(two["user"], two["item"]))  # exclude-seen


def test_unknown_user_gets_popularity_candidates_ranked(split):
    model = GenericModel(split[4])
    recs = model.recommend(["nobody"], 5)
    assert len(recs) == 5 and recs["als_rank"].isna().all()


def test_cli_fit_and_recommend_roundtrip(tmp_path):
    inter, users, items = planted(1)
    inter = inter[inter["user"].isin([f"u{i}" for i in range(200)])]
    inter.to_csv(tmp_path / "inter.csv", index=False)
    items.to_parquet(tmp_path / "items.parquet")
    pd.DataFrame({"user": ["u1", "u2", "u3"]}).to_csv(tmp_path / "who.csv", index=False)
    r = CliRunner().invoke(
        app,
        [
            "generic",
            "fit",
            "--interactions",
            str(tmp_path / "inter.csv"),
            "--items",
            str(tmp_path / "items.parquet"),
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        app,
        [
            "generic",
            "recommend",
            "--model",
            str(tmp_path / "m"),
            "--users",
            str(tmp_path / "who.csv"),
            "--k",
            "4",
            "--exclude-seen",
            "--out",
            str(tmp_path / "recs.parquet"),
        ],
    )
    assert r.exit_code == 0, r.output
    recs = read_table(tmp_path / "recs.parquet", "recs")
    assert list(recs.columns[:4]) == ["user", "item", "rank", "score"]
    assert recs.groupby("user").size().to_dict() == {"u1": 4, "u2": 4, "u3": 4}


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda i, it: (i.drop(columns=["item"]), it), "missing column(s) ['item']"),
        (lambda i, it: (i.assign(timestamp=["x"] + list(i["timestamp"][1:])), it), "interactions.timestamp"),
        (lambda i, it: (i, pd.concat([it, it.head(2)])), "rows share a key"),
        (lambda i, it: (i, it.drop(columns=["item"])), "missing key column 'item'"),
    ],
)
def test_bad_input_gets_a_named_error(tmp_path, mutate, message):
    inter, _, items = planted(2)
    inter, items = mutate(inter.head(300).reset_index(drop=True), items)
    with pytest.raises(JobcareError) as e:
        fit(inter, None, items, GenericConfig(), tmp_path / "m")
    assert message in str(e.value)
    assert not (tmp_path / "m").exists()  # nothing written


def test_cli_reports_a_missing_file_without_traceback(tmp_path):
    r = CliRunner().invoke(
        app, ["generic", "fit", "--interactions", str(tmp_path / "no.csv"), "--out", str(tmp_path / "m")]
    )
    assert r.exit_code == 2 and "file not found" in r.output and "Traceback" not in r.output
