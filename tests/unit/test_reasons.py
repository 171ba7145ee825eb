"""Reasons from the ranker's own contributions: the path attribution adds up to the score and credits
the feature the model uses; topics speak in the direction of their contribution only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.reasons import MIN_SHARE, contribution_reasons, topic_index
from training.ranker import LambdaRankRanker


@pytest.fixture(scope="module")
def planted():
    """A ranker on rows where only ``coverage`` decides the label; ``noise`` is irrelevant."""
    rng = np.random.default_rng(0)
    n, g = 4000, 20
    X = pd.DataFrame({"coverage": rng.random(n), "noise": rng.random(n), "riasec_congruence": rng.random(n)})
    y = (X["coverage"] > 0.7).astype(int) + (X["coverage"] > 0.9).astype(int)
    r = LambdaRankRanker(n_estimators=60, num_leaves=7, unbiased=False).fit(
        X, y.to_numpy(), np.full(n // g, g)
    )
    return r, X


def test_contributions_add_up_to_the_score_and_credit_the_feature_that_decides(planted):
    r, X = planted
    M = X.to_numpy(np.float32)[:200]
    c = r.contributions(M)
    assert c.shape == (200, 4)
    assert np.allclose(c.sum(axis=1), r.predict(M), atol=1e-9)
    share = np.abs(c[:, :-1]).mean(axis=0) / np.abs(c[:, :-1]).mean(axis=0).sum()
    assert share[0] > 0.8  # coverage
    # high coverage is credited upwards, low coverage downwards
    hi, lo = M[:, 0] > 0.9, M[:, 0] < 0.3
    assert (c[hi, 0] > 0).all() and (c[lo, 0] < 0).all()
    # close to LightGBM's TreeSHAP on the deciding feature (the two attributions differ by design)
    shap = r.booster_.predict(M, pred_contrib=True)
    assert np.corrcoef(shap[:, 0], c[:, 0])[0, 1] > 0.95


class _Catalog:
    occ_riasec = np.array([[90, 10, 10, 10, 10, 80]] * 3, float)
    regions = {0: "Seoul"}
    occupations = {0: "Welder", 1: "Baker", 2: "Nurse"}


def _explain(contrib_rows, values):
    feats = ["coverage", "missing_units", "n_required_units", "riasec_congruence", "same_region", "seeker_x"]
    topics = topic_index(feats)
    assert set(topics) == {"competency", "interest", "location"}  # the seeker's own feature is no topic
    c = np.asarray(contrib_rows, float)
    vals = {k: np.asarray(v, float) for k, v in values.items()}
    psych = np.array([80, 10, 10, 10, 10, 70.0])
    return contribution_reasons("posting", c, topics, vals, np.zeros(len(c), int), psych, 0, _Catalog())


def test_a_shortfall_is_something_to_improve_never_a_reason():
    vals = {
        "n_required_units": [9, 9],
        "missing_units": [9, 2],
        "same_region": [1, 1],
        "riasec_congruence": [0.9, 0.9],
    }
    # item 0: the competency topic pulls the score down; item 1: it pushes it up
    reasons, improve = _explain(
        [[-0.6, -0.2, 0.0, 0.3, 0.2, 0.5, 0.0], [0.5, 0.1, 0.0, 0.05, 0.2, 0.5, 0.0]], vals
    )
    assert reasons[0] == ["matches your interest type RC (this work is RC)", "in your region (Seoul)"]
    assert improve[0] == ["you hold 0 of the 9 competency units it requires: see the competency gap"]
    assert reasons[1][0] == "covers 7 of 9 required competency units" and improve[1] == []
    assert not [x for r in reasons for x in r if x.startswith("covers 0 of")]


def test_a_topic_below_the_floor_says_nothing():
    vals = {"n_required_units": [4], "missing_units": [1], "same_region": [1], "riasec_congruence": [0.9]}
    total = 1.0
    tiny = MIN_SHARE * total / 2
    reasons, improve = _explain([[0.9, 0.0, 0.0, tiny, -tiny, 0.1 - tiny * 0, 0.0]], vals)
    assert reasons == [["covers 3 of 4 required competency units"]] and improve == [[]]


def test_the_als_order_baseline_explains_its_score_by_the_als_rank_alone():
    """``baseline:als`` is served through the same path as a model, reasons included: its contributions
    must add up to its score and name only the ALS rank."""
    from evaluation.ope import _ALSOrder

    features = ["a", "cand_rank_als", "b"]
    X = np.array([[0.5, 3.0, 1.0], [2.0, 250.0, -1.0]], np.float32)
    r = _ALSOrder(features)
    c = r.contributions(X)
    assert c.shape == (2, 4)
    assert np.allclose(c.sum(axis=1), r.predict(X))
    assert np.array_equal(np.flatnonzero(c.any(axis=0)), [1])


def test_every_value_the_words_read_is_declared_so_the_shown_items_carry_it():
    """``contribution_reasons`` hands ``_words`` only the values in ``WORD_INPUTS``: a key read there but
    not declared would silently read as absent (a wrong sentence, not an error)."""
    import ast
    import inspect

    from serving import reasons

    tree = ast.parse(inspect.getsource(reasons._words))
    read = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get":
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "v":
                read.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "v":
            read.add(node.slice.value)
        elif isinstance(node, ast.Compare) and isinstance(node.comparators[0], ast.Name):
            if node.comparators[0].id == "v" and isinstance(node.left, ast.Constant):
                read.add(node.left.value)
    assert {"n_required_units", "days_to_close", "log_wage_ratio", "certificates_missing"} <= read
    assert read <= set(reasons.WORD_INPUTS), read - set(reasons.WORD_INPUTS)


def test_the_reason_plan_computes_only_the_pair_values_the_model_does_not_take():
    from features.pairs import PAIR_FEATURES
    from serving.reasons import ReasonPlan

    feats = ["coverage", "missing_units", "riasec_congruence", "seeker_x"]
    plan = ReasonPlan.of(feats, PAIR_FEATURES["posting"])
    assert "n_required_units" in plan.extra_pairs  # read by the competency words, not a model input
    assert not {"coverage", "missing_units"} & set(plan.extra_pairs)  # the matrix has them
    assert "riasec_congruence" not in plan.extra_pairs  # an input, and the words never read it
    assert set(plan.extra_pairs) <= set(PAIR_FEATURES["posting"])
    assert plan.topics["competency"].tolist() == [0, 1]
