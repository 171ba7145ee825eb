"""Online A/B inside the world: argument rules, the statistics and the routing (synthetic, seconds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.online_ab import OnlineABError, gini, parse_arms, two_sample_bootstrap
from evaluation.online_arms import arm_of, available, served_slate
from evaluation.online_features import latest
from features.item_index import latest_rows
from jobcare.config import ExploreConfig
from jobcare.world.io import write_table
from jobcare.world.online import ContinuationError, first_day_of
from serving.engine import explore_slate

MANIFEST = {"span": {"start": "2024-01-01 00:00:00+00:00", "days": 120}}


def test_parse_arms_and_its_named_errors():
    a, b = parse_arms("A=baseline:random, B=baseline:oracle")
    assert (a.name, a.uri, b.name, b.uri) == ("A", "baseline:random", "B", "baseline:oracle")
    for bad, rule in (
        ("A=baseline:random", "exactly two"),
        ("A=baseline:random,A=baseline:oracle", "exactly two"),
        ("A baseline:random,B=baseline:oracle", "no '='"),
        ("A=baseline:rules,B=baseline:oracle", "not an online baseline"),
        ("A=,B=baseline:oracle", "name and a URI"),
        ("A=jobcare-postings@champion,B=baseline:oracle", "need an MLflow model URI"),
    ):
        with pytest.raises(OnlineABError, match=rule):
            parse_arms(bad)
    a, b = parse_arms("A=models:/jobcare-postings@champion,B=models:/jobcare-courses/3")
    assert (a.uri, b.uri) == ("models:/jobcare-postings@champion", "models:/jobcare-courses/3")
    assert parse_arms("A=runs:/abc/posting_bundle,B=baseline:random")[0].uri == "runs:/abc/posting_bundle"


def test_served_slate_is_explore_slate_over_the_ranking_and_logs_the_available_count():
    ecfg = ExploreConfig(epsilon=0.5, pool=6, salt="s")
    ranked = np.array([9, 4, 7, 1, 3, 8, 2, 5])  # world columns, best first
    hits = 0
    for rid in (f"r{i}" for i in range(40)):
        cols, prop, slate_prop, explored, n_av = served_slate(ranked, 4, rid, ecfg, n_available=50)
        idx, want_prop, want_explored, pool = explore_slate(ranked, 4, rid, ecfg)
        assert cols.tolist() == idx.tolist() and np.allclose(prop, want_prop) and explored == want_explored
        assert n_av == 50 and pool == 6
        # P(in slate): (1 - eps) for the top 4 + eps * 4 / 6 for anything in the pool
        top = np.isin(cols, ranked[:4])
        assert np.allclose(slate_prop, 0.5 * top + 0.5 * 4 / 6)
        hits += explored
    assert 0 < hits < 40
    assert served_slate(ranked, 4, "r", ecfg)[4] == ranked.size


def test_latest_is_the_repositorys_as_of_rule(tmp_path):
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    df = pd.DataFrame(
        {
            "k": [2, 1, 1, 2, 1, 3],
            "v": [20, 10, 11, 21, 12, 30],
            "event_timestamp": [t0, t0, t0 + pd.Timedelta(days=1), t0, t0 + pd.Timedelta(days=3), t0],
            "created_timestamp": [t0, t0, t0, t0 + pd.Timedelta(hours=1), t0, t0],
        }
    )
    df.loc[5, "event_timestamp"] = t0 + pd.Timedelta(days=5)
    write_table(df, tmp_path / "x.parquet")
    at = t0 + pd.Timedelta(days=2)
    got = latest(df, "k", at)
    assert got.set_index("k")["v"].to_dict() == {1: 11, 2: 21}  # k=2: the later created row; k=3 not yet
    want = latest_rows(tmp_path / "x.parquet", "k", at)
    assert got["v"].tolist() == want["v"].tolist()


def test_first_day_rules():
    assert first_day_of(MANIFEST, "2024-03-01", 60) == 60
    with pytest.raises(ContinuationError, match="midnight"):
        first_day_of(MANIFEST, "2024-03-01 12:00", 5)
    with pytest.raises(ContinuationError, match="outside the world's span"):
        first_day_of(MANIFEST, "2024-01-01", 5)
    with pytest.raises(ContinuationError, match="at most 10"):
        first_day_of(MANIFEST, "2024-04-20", 11)


def test_two_sample_bootstrap_known_difference_and_symmetry():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 400), rng.normal(0.5, 1, 300)
    r = two_sample_bootstrap(b, a, 2000, 1)
    assert r["diff"] == pytest.approx(b.mean() - a.mean())
    assert r["ci_low"] < 0.5 < r["ci_high"] and r["ci_low"] > 0.2
    s = two_sample_bootstrap(a, b, 2000, 1)
    assert s["diff"] == pytest.approx(-r["diff"])
    same = two_sample_bootstrap(a, a, 500, 1)
    assert same["ci_low"] < 0 < same["ci_high"]


def test_gini_three_points():
    assert gini(np.array([2.0, 2.0, 2.0])) == 0.0
    assert gini(np.zeros(4)) == 0.0
    # one of four holds everything: (n - 1) / n
    assert gini(np.array([0.0, 0.0, 0.0, 8.0])) == pytest.approx(0.75)
    # hand computed: x = 1, 2, 3 -> sum_i (2i - n - 1) x_i / (n sum x) = (-2 + 0 + 6) / 18
    assert gini(np.array([3.0, 1.0, 2.0])) == pytest.approx(4 / 18)


def test_arm_assignment_is_stable_and_splits_by_share():
    ids = np.arange(20_000)
    a = arm_of(ids, "salt-1", 0.3)
    assert abs(a.mean() - 0.3) < 0.015
    assert np.array_equal(a[:100], arm_of(ids[:100][::-1], "salt-1", 0.3)[::-1])  # per seeker, not order
    assert not np.array_equal(a, arm_of(ids, "salt-2", 0.3))


def test_available_drops_acted_on_and_held_certificates():
    held = np.zeros((3, 6), bool)
    held[1, 4] = True
    open_items = np.array([1, 2, 4, 5])
    assert available("posting", 1, open_items, {1: {2, 9}}, held).tolist() == [0, 2, 3]
    assert available("certificate", 1, open_items, {}, held).tolist() == [0, 1, 3]
