"""Ranker rows on the tiny world: no feature is computed from events after the row's timestamp."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import store as fstore
from jobcare.config import CandidatesConfig, TwoTowerParams
from training.ranker import protected_in
from training.request_path import context
from training.stage_two import als_ranks, build_rows, group_sizes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rows(local_repo, tiny_tables):
    end = pd.Timestamp(fstore.repo_meta(local_repo)["span"]["end"])
    cfg = CandidatesConfig(two_tower=TwoTowerParams(epochs=1, samples_per_epoch=2000, hidden=16, dim=8))
    ctx = context(local_repo, len(tiny_tables["competency_units"]))
    data = build_rows(
        "posting",
        tiny_tables,
        fstore.open_store(local_repo),
        local_repo,
        ctx,
        cfg,
        end - pd.Timedelta(days=60),
        end - pd.Timedelta(days=30),
        80,
        10,
        0,
    )
    return data


def test_no_row_carries_a_feature_from_its_future(rows, tiny_tables):
    r = rows.rows.merge(rows.requests[["request_id", "event_timestamp"]], on="request_id")
    ev = tiny_tables["events"]
    applies = ev[ev["event_type"] == "apply"]
    completes = ev[ev["event_type"] == "complete"]
    checked = 0
    for _, row in r.sample(min(len(r), 150), random_state=0).iterrows():
        ts, midnight = row["event_timestamp"], row["event_timestamp"].floor("D")
        mine = applies[applies["seeker_id"] == row["seeker_id"]]
        assert (
            row["seeker_activity__applies_30d"]
            == ((mine["ts"] < midnight) & (mine["ts"] >= midnight - pd.Timedelta(days=30))).sum()
        )
        on_item = applies[applies["item_id"] == row["item_id"]]
        assert row["posting_popularity__applies_total"] == (on_item["ts"] < midnight).sum() or (
            row["posting_popularity__applies_total"] == 0
        )  # opened after midnight: its zero row
        assert row["posting_popularity__applies_total"] <= (on_item["ts"] < ts).sum()
        done = completes[completes["seeker_id"] == row["seeker_id"]]
        assert row["seeker_competency__n_courses_completed"] == (done["ts"] <= ts).sum()
        checked += 1
    assert checked > 50


def test_rows_are_grouped_contiguously_with_positives_and_no_protected_feature(rows):
    r = rows.rows
    assert (np.diff(r["request_id"].to_numpy()) >= 0).all()
    assert group_sizes(r).sum() == len(r)
    assert (r.groupby("request_id")["label"].max() > 0).all()
    feats = rows.features  # the explicit list (training.request_path.default_features)
    assert not protected_in(feats) and not [c for c in feats if c.endswith("_id")]
    assert {"coverage", "cand_rank_rules", "posting_popularity__applies_per_headcount"} <= set(feats)
    # every listed input is a numeric column of the rows; bookkeeping, lists and absolute moments are not
    assert set(feats) <= set(r.columns) and all(pd.api.types.is_numeric_dtype(r[c]) for c in feats)
    assert not {"label", "shown", "shown_position", "in_union_100", "request_id", "item_id"} & set(feats)
    assert not [c for c in feats if c.endswith(("_days", "_ids", "_levels")) and "__" in c]
    assert "posting_attributes__open_days" in r.columns  # kept in the rows for older champions only


def test_als_ranks_recomputed_with_the_same_als_equal_the_stored_feature(rows):
    # `jobcare tune` swaps ALS parameters by recomputing this column; with the pipeline's own ALS the
    # recomputation must reproduce it exactly (same allowed items, same histories)
    stored = rows.rows["cand_rank_als"].to_numpy()
    assert (stored <= 300).any()  # ALS proposed some of the rows' items
    np.testing.assert_array_equal(als_ranks(rows, rows.stage.als, 300), stored)


def test_same_world_config_and_seed_give_the_same_metrics(local_repo, tiny_tables, tiny_world):
    from tests.conftest import tiny_train
    from training.stage_two import fit_and_evaluate
    from training.windows import Windows

    span = fstore.repo_meta(local_repo)["span"]
    cfg = CandidatesConfig(two_tower=TwoTowerParams(epochs=1, samples_per_epoch=2000, hidden=16, dim=8))
    ctx = context(local_repo, len(tiny_tables["competency_units"]))
    w = Windows.of(span, tiny_train())
    runs = [
        fit_and_evaluate(
            "posting",
            tiny_tables,
            fstore.open_store(local_repo),
            local_repo,
            ctx,
            cfg,
            {"n_estimators": 30},
            w,
            120,
            10,
            0,
        )
        for _ in range(2)
    ]
    assert runs[0]["metrics"] == runs[1]["metrics"]
    m = runs[0]["metrics"]
    assert not [k for k in m if "oracle" in k]  # no oracle given: none reported
    # the validation rows are labelled only by events inside [T2, T1): a hire after T1 labels nothing
    v = runs[0]["valid"]
    ev = tiny_tables["events"]
    inside = ev[(ev["ts"] >= w.valid_start) & (ev["ts"] < w.test_start) & (ev["item_type"] == "posting")]
    sid = v.requests.set_index("request_id")["session_id"]
    pos = v.rows[v.rows["label"] > 0]
    got = set(zip(sid.reindex(pos["request_id"]).to_numpy(), pos["item_id"]))
    want = set(zip(inside["session_id"], inside["item_id"]))
    assert got and got <= want
    late = ev[
        (ev["ts"] >= w.test_start) & ev["session_id"].isin(sid.to_numpy()) & (ev["event_type"] == "hire")
    ]
    for s_, i_ in zip(late["session_id"], late["item_id"]):  # a late hire never raised a label to 3
        lab = v.rows[(v.rows["request_id"].isin(sid[sid == s_].index)) & (v.rows["item_id"] == i_)]["label"]
        assert (lab < 3).all()
    assert m["val_explore_requests"] > 10 and m["test_explore_requests"] > 10
    assert 0.3 < m["val_recall_at_100"] <= 1


def test_a_window_without_requests_is_a_named_error_not_a_crash(rows, local_repo, tiny_tables):
    """E.g. a world logged without explore slates: the pipeline then skips the explore metrics."""
    from training.stage_two import NoRequestsError

    end = pd.Timestamp(fstore.repo_meta(local_repo)["span"]["end"])
    ctx = context(local_repo, len(tiny_tables["competency_units"]))
    sessions = tiny_tables["sessions"]
    no_explore = {**tiny_tables, "sessions": sessions[sessions["policy"] != "explore"]}
    start = end - pd.Timedelta(days=30)
    with pytest.raises(NoRequestsError, match=r"no explore posting request with an outcome in \["):
        build_rows(
            "posting",
            no_explore,
            fstore.open_store(local_repo),
            local_repo,
            ctx,
            CandidatesConfig(),
            start,
            end,
            50,
            0,
            0,
            policy="explore",
            positive_only=True,
            stage=rows.stage,
        )


def _window_args(local_repo, tiny_tables):
    end = pd.Timestamp(fstore.repo_meta(local_repo)["span"]["end"])
    cfg = CandidatesConfig(two_tower=TwoTowerParams(epochs=1, samples_per_epoch=2000, hidden=16, dim=8))
    ctx = context(local_repo, len(tiny_tables["competency_units"]))
    store = fstore.open_store(local_repo)
    return (
        "posting",
        tiny_tables,
        store,
        local_repo,
        ctx,
        cfg,
        end - pd.Timedelta(days=60),
        end - pd.Timedelta(days=30),
    )


def test_rows_replayed_in_forked_workers_equal_the_rows_of_one_process(
    rows, local_repo, tiny_tables, monkeypatch
):
    """``train.replay_workers``: the window's requests cut into runs replayed by forked processes give the
    very rows (values, order, features) and ALS inputs of the single-process replay. The stage's ALS and
    two-tower were fitted here first, so the children also prove they run after the parent used libgomp
    (which hangs a forked child that uses its own thread pool). The offers are indexed once, in the
    parent: no worker indexes them again for its runs."""
    import os

    import training.stage_two as st

    parent, built = os.getpid(), []

    class OnceInTheParent(st.OfferIndex):
        def __init__(self, *args, **kwargs):
            assert os.getpid() == parent, "a replay worker indexed the offers again"
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(st, "OfferIndex", OnceInTheParent)
    forked = build_rows(*_window_args(local_repo, tiny_tables), 80, 10, 0, stage=rows.stage, workers=2)
    assert len(rows.requests) > 8  # more requests than runs: every worker replays several runs
    pd.testing.assert_frame_equal(forked.rows, rows.rows)
    assert forked.features == rows.features
    assert len(forked.als_inputs) == len(rows.als_inputs)
    for (s1, a1, h1), (s2, a2, h2) in zip(forked.als_inputs, rows.als_inputs):
        assert s1 == s2 and np.array_equal(a1, a2) and (h1 is None) == (h2 is None)
        if h1 is not None:
            pd.testing.assert_frame_equal(h1, h2)
    assert st._FORKED is None  # the parent keeps no reference to the window once the workers are done
    assert len(built) == 1


def test_a_replay_worker_that_dies_is_a_named_error(rows, local_repo, tiny_tables, monkeypatch):
    import os

    import training.stage_two as st

    def die(*args, **kwargs):
        os._exit(3)  # as the kernel's OOM killer would: no exception, no result

    monkeypatch.setattr(st, "replay_requests", die)
    with pytest.raises(st.ReplayWorkerError, match=r"posting rows: a replay worker process died"):
        build_rows(*_window_args(local_repo, tiny_tables), 80, 10, 0, stage=rows.stage, workers=2)
    assert st._FORKED is None


def test_stage_one_als_fitted_beside_the_two_tower_equals_a_fit_on_its_own(rows, local_repo, tiny_tables):
    """fit_stage_one fits ALS on one thread in a second thread while the two-tower fits: the factors are
    those of ALS fitted alone on every core."""
    from jobcare.config import CandidatesConfig
    from training.candidates.als import ALSRecommender
    from training.interactions import world_interactions

    cfg = CandidatesConfig()
    start = _window_args(local_repo, tiny_tables)[6]
    inter = world_interactions(tiny_tables["events"], "posting", start, cfg.event_weights)
    alone = ALSRecommender(**cfg.als.model_dump(), random_state=cfg.seed, num_threads=0).fit(inter)
    beside = rows.stage.als
    assert beside.model_.num_threads == 1
    np.testing.assert_array_equal(beside.items_.keys, alone.items_.keys)
    np.testing.assert_array_equal(beside.item_factors_, alone.item_factors_)
    np.testing.assert_array_equal(beside.user_factors_, alone.user_factors_)
