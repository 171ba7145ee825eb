"""The LambdaRank ranker's contract and its feature selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.ranker import LambdaRankRanker, RankerInputError, protected_in
from training.ranking_data import NOT_SHOWN, request_columns


def _data(n_groups=60, per=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_groups * per, 3))
    y = (x[:, 0] > 0.8).astype(int) + (x[:, 0] > 1.5)
    return pd.DataFrame(x, columns=["a", "b", "c"]), y, np.full(n_groups, per)


def test_learns_a_planted_signal_and_round_trips(tmp_path):
    X, y, g = _data()
    r = LambdaRankRanker(n_estimators=30, num_leaves=7, min_child_samples=5).fit(X, y, g)
    Xt, yt, gt = _data(seed=1)
    s = r.predict(Xt)
    rows = pd.DataFrame({"request_id": np.repeat(np.arange(len(gt)), gt), "label": yt})
    from training.stage_two import ndcg_by_request

    learned = ndcg_by_request(rows, s, k=3)
    rnd = ndcg_by_request(rows, np.random.default_rng(0).random(len(yt)), k=3)
    has_pos = rows.groupby("request_id")["label"].max() > 0
    assert learned[has_pos].mean() > 0.95 and learned[has_pos].mean() > rnd[has_pos].mean() + 0.3
    assert r.feature_importance().index[0] == "a"
    loaded = LambdaRankRanker.load(r.save(tmp_path / "r"))
    np.testing.assert_array_equal(loaded.predict(Xt), s)


def test_protected_columns_never_reach_the_model():
    X, y, g = _data()
    for col in ("gender", "seeker_profile__age", "age_band"):
        with pytest.raises(RankerInputError, match="protected"):
            LambdaRankRanker(n_estimators=2).fit(X.assign(**{col: 1.0}), y, g)
    assert protected_in(["seeker_profile__gender", "seeker_profile__region_id", "wage", "age"]) == [
        "seeker_profile__gender",
        "age",
    ]


def test_group_sizes_must_cover_the_rows():
    X, y, g = _data()
    with pytest.raises(RankerInputError, match="group sizes"):
        LambdaRankRanker(n_estimators=2).fit(X, y, g[:-1])


def test_request_columns_keep_shown_and_positives_and_rank_sources():
    rng = np.random.default_rng(0)
    cands = {"als": np.array([5, 6, 7]), "rules": np.array([7, 8, 9, 10])}
    cols = request_columns(
        3, 99, cands, shown=np.array([5, 1]), labels={5: 2, 1: 0}, n_candidates=300, negatives=2, rng=rng
    )
    rows = pd.DataFrame(cols).set_index("item_id")
    assert list(cols) == [
        "request_id",
        "item_id",
        "label",
        "shown",
        "shown_position",
        "cand_rank_als",
        "cand_rank_rules",
    ]
    assert len(rows) == 4 and {1, 5} <= set(rows.index)  # both shown + 2 of the 5 other candidates
    assert (rows["request_id"] == 3).all() and list(rows.index) == sorted(rows.index)
    assert rows.loc[5, "label"] == 2 and rows.loc[1, "label"] == 0
    assert rows.loc[5, "shown_position"] == 0 and rows.loc[1, "shown_position"] == 1  # display order
    sampled = sorted(set(rows.index) - {1, 5})
    assert set(sampled) <= {6, 7, 8, 9, 10}
    assert (rows.loc[sampled, "shown"] == 0).all() and (
        rows.loc[sampled, "shown_position"] == NOT_SHOWN
    ).all()
    assert rows.loc[5, "cand_rank_als"] == 1 and rows.loc[1, "cand_rank_rules"] == 301
    assert {k: v.dtype for k, v in cols.items()}["shown_position"] == np.int32
    assert request_columns(0, 1, cands, np.array([1]), {1: 0}, 300, 2, rng) is None  # no positive: dropped


def test_unbiased_ranker_does_not_learn_the_logging_order_as_relevance():
    """Clicks = examination(position) x appeal(a). The logging policy ordered by ``b``, which has nothing
    to do with appeal, so items with a high ``b`` were examined (and clicked) more. The plain ranker
    learns ``b`` as relevance; the unbiased one, given the positions, ranks by appeal."""
    from training.stage_two import ndcg_by_request

    rng = np.random.default_rng(0)
    n_groups, per = 1500, 10
    a, b = rng.normal(size=n_groups * per), rng.normal(size=n_groups * per)
    position = np.empty(a.size, dtype=np.int32)
    for gi in range(n_groups):
        sl = slice(gi * per, (gi + 1) * per)
        position[sl] = np.argsort(np.argsort(-b[sl]))  # shown in the order of b
    examine = 1.0 / (1.0 + position) ** 1.5
    y = (rng.random(a.size) < examine * (1 / (1 + np.exp(-2 * a)))).astype(int)
    X, g = pd.DataFrame({"a": a, "b": b}), np.full(n_groups, per)
    kw = dict(n_estimators=60, num_leaves=7, min_child_samples=20)
    plain = LambdaRankRanker(**kw, unbiased=False).fit(X, y, g, position=position)
    unbiased = LambdaRankRanker(**kw).fit(X, y, g, position=position)
    # judged on true appeal over fresh requests
    rt = np.random.default_rng(1)
    at, bt = rt.normal(size=3000), rt.normal(size=3000)
    rows = pd.DataFrame({"request_id": np.repeat(np.arange(300), 10), "label": (at > 1.0).astype(int)})
    Xt = pd.DataFrame({"a": at, "b": bt})
    nd = {
        name: ndcg_by_request(rows, m.predict(Xt)).mean() for name, m in (("plain", plain), ("unb", unbiased))
    }
    assert nd["unb"] > nd["plain"] + 0.05, nd
    ratio = {
        m: r.feature_importance()["b"] / r.feature_importance()["a"]
        for m, r in (("p", plain), ("u", unbiased))
    }
    assert ratio["u"] < 0.5 * ratio["p"], ratio  # far less weight on the logging order's feature
    with pytest.raises(RankerInputError, match="rule: positions"):
        LambdaRankRanker(**kw).fit(X, y, g, position=-position)


def test_ranker_overrides_apply_per_item_type_and_bad_keys_are_named():
    from jobcare.config import TrainConfig

    tc = TrainConfig(ranker_overrides={"posting": {"unbiased": True, "num_leaves": 15}})
    assert tc.ranker_for("posting").unbiased and tc.ranker_for("posting").num_leaves == 15
    assert not tc.ranker_for("course").unbiased and tc.ranker_for("course").num_leaves == 31
    with pytest.raises(ValueError, match="ranker_overrides.posting: unbiasd: Extra inputs are not permitted"):
        TrainConfig(ranker_overrides={"posting": {"unbiasd": True}})
    with pytest.raises(ValueError, match="ranker_overrides.course: num_leaves"):
        TrainConfig(ranker_overrides={"course": {"num_leaves": 1}})


def test_the_content_baseline_drops_every_collaborative_feature_and_keeps_the_rest():
    from training.stage_two import content_features

    feats = [
        "cand_rank_als",
        "cand_rank_two_tower",
        "posting_popularity__views_7d",
        "posting_popularity__applies_per_headcount",
        "seeker_activity__applies_30d",
        "course_attributes__completion_rate",
        "certificate_attributes__pass_rate",
        "seeker_profile__education_level",
        "seeker_psych__riasec_R",
        "coverage",
        "posting_attributes__wage",
    ]
    assert content_features(feats) == [
        "seeker_activity__applies_30d",  # the seeker's own activity is not collaborative
        "seeker_profile__education_level",
        "seeker_psych__riasec_R",
        "coverage",
        "posting_attributes__wage",
    ]


def test_the_legacy_baseline_orders_by_the_logging_policys_rule():
    import pandas as pd

    from training.stage_two import legacy_scores

    rows = pd.DataFrame(
        {
            "desired_occupation_match": [1, 0, 0, 0, 1],
            "desired_group_match": [1, 1, 0, 0, 0],
            "same_region": [0, 1, 1, 0, 1],
            "cand_rank_popularity": [5, 1, 2, 1, 301],
        }
    )
    # rule units first (3, 2, 1, 0, 3), popularity only inside a tie, never across one rule unit
    assert list(np.argsort(-legacy_scores(rows), kind="stable")) == [0, 4, 1, 2, 3]
