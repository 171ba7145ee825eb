"""benchmarks/observable_ceiling.py's row formulas, and both research scripts' named error without truth/."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from jobcare.world.utility import WEIGHTS
from tests.benchmark_scripts import load


@pytest.mark.parametrize("item_type", sorted(WEIGHTS))
def test_every_component_of_the_world_has_a_row_formula(item_type):
    assert set(load("observable_ceiling").ROW_COMPONENTS[item_type]) == set(WEIGHTS[item_type])


def test_course_and_certificate_formulas_by_hand():
    s = load("observable_ceiling")
    course = pd.DataFrame(
        {
            "new_unit_share": [0.5, 1.0],
            "desired_occupation_match": [1.0, 0.0],
            "desired_group_match": [1.0, 1.0],
            "riasec_congruence": [0.2, -0.4],
            "region_distance_km": [50.0, 0.0],
            "course_attributes__employment_rate": [0.6, 0.3],
        }
    )
    w = WEIGHTS["course"]
    first = (
        w["novelty_relevant"] * 0.5 * (1 + 0.5 + 0.1)
        + w["riasec"] * 0.2
        + w["distance_100km"] * 0.5
        + w["employment_rate"] * 0.6
        + w["desired"]
        + w["group_match"]
    )
    second = (
        w["novelty_relevant"] * 1.0 * 0.6 + w["riasec"] * -0.4 + w["employment_rate"] * 0.3 + w["group_match"]
    )
    np.testing.assert_allclose(s.world_formula(course, "course", w), [first, second])
    cert = pd.DataFrame(
        {
            "readiness": [0.25],
            "riasec_congruence": [0.5],
            "desired_occupation_match": [0.0],
            "desired_group_match": [1.0],
            "education_gap": [-2.0],  # over-qualified: no shortfall
            "certificate_attributes__pass_rate": [0.4],
        }
    )
    w = WEIGHTS["certificate"]
    want = w["readiness"] * 0.25 + w["riasec"] * 0.5 + w["group_match"] + w["difficulty"] * 0.6
    np.testing.assert_allclose(s.world_formula(cert, "certificate", w), [want])


def test_posting_shortfalls_are_one_sided_and_capped():
    s = load("observable_ceiling")
    rows = pd.DataFrame(
        {"education_gap": [2.0, -3.0], "career_gap": [9.0, -1.0], "log_wage_ratio": [2.0, -0.5]}
    )
    comp = s.ROW_COMPONENTS["posting"]
    np.testing.assert_allclose(comp["education_short"](rows), [2.0, 0.0])
    np.testing.assert_allclose(comp["education_over"](rows), [0.0, 2.0])
    np.testing.assert_allclose(comp["career_short"](rows), [2.0, 0.0])  # 9 / 3 capped at 2
    np.testing.assert_allclose(comp["log_wage_ratio"](rows), [1.0, -0.5])


def test_the_difference_to_the_ranker_is_paired_over_requests():
    a = pd.Series([0.5, 0.7, 0.9, 0.6], index=[10, 11, 12, 13])
    b = pd.Series([0.6, 0.5, 0.6, 0.7], index=[13, 10, 11, 12])  # the same requests, in another order
    out = load("observable_ceiling")._diff(a, b)
    # per request 0, 0.1, 0.2, 0: no resample is below 0. Row by row (unpaired) the differences would be
    # -0.1, 0.2, 0.3, -0.1: the same mean, but an interval reaching below 0
    assert out["mean"] == 0.075
    lo, hi = out["ci95"]
    assert 0.0 <= lo < 0.075 < hi <= 0.2


@pytest.mark.parametrize(
    ("script", "compares"), [("observable_ceiling", "the ranker"), ("latent_recovery", "what models learn")]
)
def test_a_world_without_truth_ends_with_the_named_error_before_any_work(
    script, compares, tmp_path, monkeypatch
):
    world = tmp_path / "logs"
    world.mkdir()
    (world / "manifest.json").write_text("{}")  # logs, no truth/
    monkeypatch.setattr(sys, "argv", [script, "--world", str(world), "--out", str(tmp_path / "out.json")])
    with pytest.raises(SystemExit) as e:
        load(script).main()
    assert str(e.value).startswith(f"NoTruthError: {world}: no truth/utility.json")
    assert str(e.value).endswith(f"this research script compares {compares} with it")
    assert sorted(p.name for p in world.iterdir()) == ["manifest.json"]  # no feature repository built
    assert not (tmp_path / "out.json").exists()
