"""Pair features checked by hand on small cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.pairs import PAIR_FEATURES, PairContext, pad_lists, pair_features

RIASEC = ["riasec_r", "riasec_i", "riasec_a", "riasec_s", "riasec_e", "riasec_c"]
WV = [
    "wv_achievement",
    "wv_working_conditions",
    "wv_recognition",
    "wv_relationships",
    "wv_support",
    "wv_independence",
]


@pytest.fixture
def ctx():
    occ = pd.DataFrame(
        {
            "occupation_id": [0, 1],
            "group_id": [0, 1],
            "required_unit_ids": [[0, 1, 2], [3]],
            "required_unit_importance": [[4, 2, 2], [5]],
            "required_unit_levels": [[2, 4, 1], [3]],
            **{
                f"occ_{c}": [7, 1] if c == "riasec_r" else [1, 7] if c == "riasec_i" else [3, 3]
                for c in RIASEC
            },
            **{f"occ_{c}": [4.0, 4.0] for c in WV},
        }
    )
    occ.loc[:, "occ_riasec_a"] = [2, 2]
    return PairContext.from_occupation_profile(occ, n_units=10)


def _seeker(**kw):
    base = {
        "seeker_profile__region_id": 0,
        "seeker_profile__education_level": 2,
        "seeker_profile__career_years": 1,
        "seeker_profile__desired_occupation_ids": [1],
        "seeker_profile__reservation_wage": 300.0,
        "seeker_competency__unit_ids": [0, 1],
        "seeker_competency__unit_levels": [2, 2],
        "seeker_competency__certificate_ids": [8],
        **{f"seeker_psych__{c}": v for c, v in zip(RIASEC, [90, 10, 30, 30, 30, 30])},
        **{f"seeker_psych__{c}": 50.0 for c in WV},
        "event_timestamp": pd.Timestamp("1970-01-11", tz="UTC"),
    }
    base.update(kw)
    return base


def test_posting_pair_features_by_hand(ctx):
    row = _seeker() | {
        "posting_attributes__occupation_id": 0,
        "posting_attributes__region_id": 3,
        "posting_attributes__wage": 330.0,
        "posting_attributes__education_required": 3,
        "posting_attributes__career_required": 3,
        "posting_attributes__required_certificate_ids": [8, 9],
        "posting_attributes__open_days": 8.0,
        "posting_attributes__close_days": 15.0,
    }
    f = pair_features(pd.DataFrame([row]), "posting", ctx).iloc[0]
    # unit 0: held 2 / req 2 -> 1 (imp 4); unit 1: 2/4 -> .5 (imp 2); unit 2: not held -> 0 (imp 2)
    assert f["coverage"] == pytest.approx((4 * 1 + 2 * 0.5 + 0) / 8)
    assert f["missing_units"] == 2 and f["n_required_units"] == 3
    assert f["riasec_congruence"] > 0.9  # R-dominant seeker, R-dominant occupation
    assert f["region_distance_km"] == pytest.approx(ctx.distance_km[0, 3]) and f["same_region"] == 0
    assert f["log_wage_ratio"] == pytest.approx(np.log(1.1), rel=1e-5)
    assert (f["education_gap"], f["career_gap"]) == (1, 2)
    assert (f["certificates_required"], f["certificates_missing"]) == (2, 1)
    assert (f["desired_occupation_match"], f["desired_group_match"]) == (0, 0)
    assert (f["days_since_open"], f["days_to_close"]) == pytest.approx((2.0, 5.0))
    assert list(pair_features(pd.DataFrame([row]), "posting", ctx).columns) == PAIR_FEATURES["posting"]


def test_course_and_certificate_pair_features_by_hand(ctx):
    course = _seeker(**{"seeker_profile__desired_occupation_ids": [0]}) | {
        "course_attributes__target_occupation_id": 0,
        "course_attributes__region_id": 0,
        "course_attributes__unit_ids": [1, 2, 5],
        "course_attributes__unit_levels": [4, 1, 1],
        "course_attributes__start_days": 20.0,
    }
    f = pair_features(pd.DataFrame([course]), "course", ctx).iloc[0]
    assert f["new_unit_share"] == pytest.approx(1.0)  # all three taught above the held level
    # desired occupation 0: unmet units 1 (imp 2) and 2 (imp 2); the course closes both
    assert f["desired_gap_closure"] == pytest.approx(1.0)
    assert (f["desired_occupation_match"], f["same_region"], f["days_to_start"]) == (1, 1, 10)
    cert = _seeker() | {
        "certificate_id": 8,
        "certificate_attributes__anchor_occupation_id": 1,
        "certificate_attributes__unit_ids": [0, 3],
        "certificate_attributes__unit_levels": [4, 4],
        "certificate_attributes__min_education": 3,
    }
    f = pair_features(pd.DataFrame([cert]), "certificate", ctx).iloc[0]
    assert f["readiness"] == pytest.approx(0.25)  # unit 0: 2/4, unit 3: 0
    assert (f["already_held"], f["desired_occupation_match"], f["education_gap"]) == (1, 1, 1)
    assert f["desired_requires_units"] == pytest.approx(0.5)  # unit 3 of 2 is required by occupation 1


def test_rows_sharing_a_seeker_state_and_padding(ctx):
    rows = [
        _seeker()
        | {
            "course_attributes__target_occupation_id": o,
            "course_attributes__region_id": 0,
            "course_attributes__unit_ids": u,
            "course_attributes__unit_levels": lv,
            "course_attributes__start_days": 11.0,
        }
        for o, u, lv in ((0, [0], [2]), (1, [], []), (0, [0, 1], [3, 2]))
    ]
    f = pair_features(pd.DataFrame(rows), "course", ctx)
    assert f["new_unit_share"].tolist() == pytest.approx([0.0, 0.0, 0.5])
    np.testing.assert_array_equal(pad_lists([[1, 2], [], None], -1), [[1, 2], [-1, -1], [-1, -1]])


def test_unknown_item_type_is_a_clear_error(ctx):
    with pytest.raises(ValueError, match="item_type must be one of"):
        pair_features(pd.DataFrame([_seeker()]), "job", ctx)


def test_items_without_features_are_a_named_error(ctx):
    row = _seeker() | {"posting_attributes__occupation_id": None}
    with pytest.raises(ValueError, match="no item features"):
        pair_features(pd.DataFrame([row]), "posting", ctx)


def test_open_mask_resolves_minutes():
    from training.candidates.world import open_mask

    t = pd.Timestamp("2025-07-28 10:18:49", tz="UTC")
    day = t.value / 86_400e9
    items = pd.DataFrame(
        {
            "posting_attributes__open_days": [day + 60 / 86_400, day - 60 / 86_400],
            "posting_attributes__close_days": [day + 30, day + 30],
        }
    )
    assert open_mask("posting", items, t).tolist() == [False, True]


def test_open_mask_courses_recruit_between_recruit_start_and_start():
    from training.candidates.world import open_mask

    t = pd.Timestamp("2025-03-01 12:00", tz="UTC")
    d = t.value / 86_400e9
    items = pd.DataFrame(
        {
            "course_attributes__recruit_start_days": [d + 0.1, d - 10, d - 50],
            "course_attributes__start_days": [d + 40, d + 5, d - 1],
        }
    )
    assert open_mask("course", items, t).tolist() == [False, True, False]
