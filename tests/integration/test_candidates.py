"""Stage one on the tiny world: time split, filters, planted preference, evaluation logged to MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import store as fstore
from features.item_arrays import ItemArrays
from features.item_index import item_features
from features.pair_arrays import SeekerArrays, days
from jobcare.config import CandidatesConfig, EventWeights, TwoTowerParams
from training.candidates.evaluate import build_queries, fit_stage_one
from training.candidates.union import union
from training.candidates.world import seeker_side_table
from training.interactions import world_interactions
from training.offers import OfferIndex, allowed_mask
from training.request_path import StageIndex, context, key_lists, stage_one

pytestmark = pytest.mark.integration
FAST = CandidatesConfig(
    max_queries=60,
    eval_days=30,
    two_tower=TwoTowerParams(epochs=3, samples_per_epoch=5000, hidden=32, dim=16),
)


@pytest.fixture(scope="module")
def split(local_repo, tiny_tables):
    end = pd.Timestamp(fstore.repo_meta(local_repo)["span"]["end"])
    return end - pd.Timedelta(days=FAST.eval_days), end


@pytest.fixture(scope="module")
def stage(local_repo, tiny_tables, split):
    T, end = split
    ctx = context(local_repo, len(tiny_tables["competency_units"]))
    return fit_stage_one(
        "posting", tiny_tables["events"], T, fstore.open_store(local_repo), local_repo, ctx, FAST, end
    ), ctx


def test_time_split_every_training_event_precedes_every_test_request(tiny_tables, split):
    T, _ = split
    w = EventWeights()
    train = world_interactions(tiny_tables["events"], "posting", T, w)
    q = build_queries(tiny_tables, "posting", T, 10_000, np.random.default_rng(0))
    assert len(train) and len(q)
    last_train = train.groupby("user")["timestamp"].max()
    first_test = q.groupby("seeker_id")["event_timestamp"].min()
    both = last_train.index.intersection(first_test.index)
    assert len(both) > 0
    assert (last_train.loc[both] < first_test.loc[both]).all()
    # train + the events not used for training == every posting event with a weight
    ev = tiny_tables["events"]
    post = ev[(ev["item_type"] == "posting")]
    assert len(train) + (post["ts"] >= T).sum() == len(post)


def test_filters_never_offer_closed_or_already_applied_postings(local_repo, tiny_tables, split, stage):
    T, end = split
    st, ctx = stage
    q = build_queries(tiny_tables, "posting", T, 40, np.random.default_rng(1))
    qfeat = fstore.historical_features(
        fstore.open_store(local_repo), q[["seeker_id", "event_timestamp"]], "seeker_online_v1"
    )
    user_emb = st.two_tower.embed_users(seeker_side_table(qfeat))
    offers = OfferIndex(tiny_tables, "posting")
    ev, p = tiny_tables["events"], tiny_tables["postings"].set_index("posting_id")
    n_cold = n_hist = n_since = 0
    for i in range(len(q)):
        s, ts = int(q.at[i, "seeker_id"]), q.at[i, "event_timestamp"]
        items = ItemArrays.compile("posting", item_features(local_repo, "posting", ts), ctx)
        mask = allowed_mask(items, offers, s, ts)
        hist = world_interactions(ev[ev["seeker_id"] == s], "posting", ts, EventWeights())
        got_hist = offers.history(s, ts, EventWeights())
        pd.testing.assert_frame_equal(  # the array version gives world_interactions' values exactly
            got_hist.drop(columns="timestamp"), hist.drop(columns="timestamp"), check_exact=True
        )
        stamps = pd.to_datetime(hist["timestamp"], utc=True).dt.as_unit("ns")
        assert got_hist["timestamp"].tolist() == stamps.tolist()
        n_hist += len(hist) > 0
        for since in (T, ts - pd.Timedelta(days=30), ts):  # what the service asks before building history
            want = bool((pd.to_datetime(hist["timestamp"], utc=True) >= since).any())
            assert offers.acted_since(s, since, ts, EventWeights()) == want
            n_since += want
        seeker = SeekerArrays.from_row(qfeat.iloc[i], ctx, s)
        pos = stage_one(
            StageIndex.compile(st, items), items, ctx, seeker, mask, days(ts), user_emb[i], hist, T, 300
        )
        lists = key_lists(items, pos)
        got = union(lists, FAST.quotas, 300)[0]
        applied_before = set(
            ev[(ev["seeker_id"] == s) & (ev["event_type"] == "apply") & (ev["ts"] < ts)]["item_id"]
        )
        hires = ev[(ev["event_type"] == "hire") & (ev["ts"] <= ts)].groupby("item_id").size()
        for item in got:
            assert item not in applied_before
            assert p.at[item, "open_at"] <= ts < p.at[item, "close_at"]
            assert hires.get(item, 0) < p.at[item, "headcount"]
        n_cold += st.als.users_.index([s])[0] < 0
        assert len(got) == mask.sum() > 0  # tiny catalogue: everything allowed is a candidate
    assert n_cold >= 1  # cold seekers were checked too
    assert n_since >= 1  # and seekers who acted since a cut
    assert n_hist >= 5  # and seekers with a history


def test_planted_preference_each_generator_ranks_the_occupation_first(local_repo, tiny_tables, split):
    """A group of seekers who only ever apply to one occupation: ALS (from history), the two-tower
    (from features) and the rules rank that occupation's open postings first for a held-out member."""
    T, end = split
    p = tiny_tables["postings"]
    occ = int(p["occupation_id"].value_counts().index[0])
    target = p.loc[p["occupation_id"] == occ, "posting_id"].to_numpy()[:12]
    seekers = tiny_tables["seekers"]["seeker_id"].to_numpy()[:40]
    held = int(seekers[0])
    rng = np.random.default_rng(0)
    rows = [(int(s), int(it), 4.0) for s in seekers[1:] for it in rng.choice(target, 4, replace=False)]
    others = tiny_tables["events"]
    others = others[
        (others["item_type"] == "posting") & ~others["seeker_id"].isin(seekers) & (others["ts"] < T)
    ]
    inter = pd.concat(
        [
            pd.DataFrame(rows, columns=["user", "item", "weight"]),
            pd.DataFrame({"user": others["seeker_id"], "item": others["item_id"], "weight": 1.0}),
        ]
    )
    from training.candidates.als import ALSRecommender
    from training.candidates.two_tower import TwoTowerRecommender
    from training.candidates.world import item_side_table

    st = fstore.open_store(local_repo)
    ids = np.union1d(np.unique(inter["user"]), [held]).astype("int64")
    users = fstore.historical_features(
        st, pd.DataFrame({"seeker_id": ids, "event_timestamp": T}), "seeker_online_v1"
    )
    planted = users["seeker_id"].isin(seekers).to_numpy()
    users.loc[planted, "seeker_profile__desired_occupation_ids"] = pd.Series(
        [[occ]] * planted.sum(), index=users.index[planted]
    )
    ctx = context(local_repo, len(tiny_tables["competency_units"]))
    items = item_features(local_repo, "posting", end)
    k = 5  # the held-out member has 2 of the 12 in its history; 5 of the other 10 are open
    all_target = p.loc[p["occupation_id"] == occ, "posting_id"].to_numpy()
    open_items = items[items["posting_id"].isin(target[2 : 2 + k]) | ~items["posting_id"].isin(all_target)]
    allowed = open_items["posting_id"].to_numpy()
    als = ALSRecommender(factors=16, alpha=10, iterations=15, random_state=0).fit(inter)
    top = als.recommend(held, k, items=allowed, history=pd.DataFrame({"item": target[:2], "weight": 4.0}))[0]
    assert len(top) == k and set(top) <= set(target), ("als", top)
    tt = TwoTowerRecommender(
        dim=32, hidden=128, epochs=12, samples_per_epoch=30_000, temperature=0.05, random_state=0
    ).fit(inter, seeker_side_table(users[users["seeker_id"] != held]), item_side_table("posting", items, ctx))
    me = users[users["seeker_id"] == held]
    assert len(me) == 1
    top = tt.recommend(held, k, items=allowed, user_features=seeker_side_table(me))[0]
    assert len(top) == k and set(top) <= set(target), ("two_tower", top)
    from training.candidates.rules import rule_scores

    arrays = ItemArrays.compile("posting", open_items, ctx)
    seeker = SeekerArrays.from_row(me.iloc[0], ctx, held)
    idx = np.arange(len(arrays))
    scores = rule_scores("posting", seeker, arrays, idx, days(end - pd.Timedelta(days=1)), ctx)
    top = arrays.keys[np.argsort(-scores, kind="stable")[:k]]
    assert len(top) == k and set(top) <= set(target), ("rules", top)


def test_candidates_evaluate_cli_prints_and_logs_to_mlflow(tiny_world, local_repo, tmp_path):
    import mlflow
    import yaml
    from typer.testing import CliRunner

    from jobcare.cli import app

    cfg = {
        "candidates": FAST.model_dump() | {"item_types": ["posting", "certificate"]},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "artifacts": str(tmp_path / "art")},
        "features": {"repo": str(local_repo)},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(
        app,
        [
            "candidates",
            "evaluate",
            "--world",
            str(tiny_world),
            "-c",
            str(tmp_path / "c.yaml"),
            "--json",
            str(tmp_path / "t.json"),
            "--oracle",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "recall@300" in r.output and "union" in r.output and "oracle" in r.output
    mlflow.set_tracking_uri(cfg["tracking"]["uri"])
    runs = mlflow.search_runs(experiment_names=["jobcare"])
    assert len(runs) == 1
    m = runs.iloc[0]
    assert 0 <= m["metrics.cand_posting_union_all_recall_at_300"] <= 1
    assert (
        m["metrics.cand_posting_oracle_all_recall_at_300"]
        >= m["metrics.cand_posting_als_all_recall_at_100"] - 1e-9
    )
    # without --oracle (what a service's logs allow): the same sources, no oracle row
    r = CliRunner().invoke(
        app, ["candidates", "evaluate", "--world", str(tiny_world), "-c", str(tmp_path / "c.yaml")]
    )
    assert r.exit_code == 0, r.output
    runs = mlflow.search_runs(experiment_names=["jobcare"], order_by=["start_time DESC"])
    m2 = runs.iloc[0]
    assert not [c for c in runs.columns if "oracle" in c and pd.notna(m2[c])]
    assert (
        m2["metrics.cand_posting_union_all_recall_at_300"]
        == m["metrics.cand_posting_union_all_recall_at_300"]
    )
