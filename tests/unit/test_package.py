"""The package's rules on a hand-built state with answers computed by hand (serving/package.py).

Occupation 0 requires unit 0 (importance 2, level 4), unit 1 (1, 4) and unit 2 (1, 2). The seeker holds
unit 0 at level 2 and unit 2 at level 2: coverage (2 * 2/4 + 0 + 1) / 4 = 0.5, units 0 and 1 missing.
The clock is day 100.

- course 10: unit 0 at 4, starts day 110, 50 days, completes 0.8: done in 60 days, E gain 0.8 * 0.25 = 0.2
- course 11: unit 1 at 4, starts day 105, 100 days, completes 0.5: done in 105 days, E gain 0.125
- course 12: units 0 and 1 at 4 but recruiting only from day 150: never proposed
- certificate 0: unit 1 at 4, craftsman (45 days), pass 0.9: expected 50 days, E gain 0.225
- certificate 1: units 0 and 1 at 5, held by the seeker: never proposed
- certificate 2: unit 0 at 3, industrial engineer (75 days), pass 0.5: expected 150 days, E gain 0.0625,
  closes nothing alone

Bundles kept (each item adds coverage, at least one unit closed), by E gain / duration:
{c10, x0} 0.425 / 60, {x0} 0.225 / 50, {c10} 0.2 / 60, {c10, c11} 0.325 / 105 (courses overlap:
duration is the later end), {x0, x2} 0.2875 / 200 (exams in sequence), {c11, x2} 0.1875 / 150,
{c11} 0.125 / 105. Dropped: any bundle where c11 and x0 both give unit 1 or x2 sits beside c10.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.item_arrays import ItemArrays
from features.pairs import PairContext
from jobcare.errors import JobcareError
from serving.package import (
    PackageRules,
    PackageSizeError,
    UnknownOccupationError,
    bundle_coverage,
    demand_weight,
    exam_days,
    package,
)
from serving.package_schemas import PackageRequest, PackageResponse

NOW = 100.0


def _ctx() -> PairContext:
    pad = 4
    dist = np.array([[0.0, 50.0, 10.0], [50.0, 0.0, 40.0], [10.0, 40.0, 0.0]])
    return PairContext(
        group=np.array([0, 0]),
        riasec=np.zeros((2, 6)),
        work_values=np.zeros((2, 6)),
        req_units=np.array([[0, 1, 2], [3, pad, pad]]),
        req_imp=np.array([[2.0, 1.0, 1.0], [1.0, 0.0, 0.0]]),
        req_lvl=np.array([[4.0, 4.0, 2.0], [1.0, 1.0, 1.0]]),
        n_units=4,
        distance_km=dist,
    )


def _courses(rows) -> pd.DataFrame:
    v = "course_attributes"
    return pd.DataFrame(
        {
            "course_id": [r[0] for r in rows],
            f"{v}__target_occupation_id": 0,
            f"{v}__region_id": 0,
            f"{v}__recruit_start_days": [r[1] for r in rows],
            f"{v}__start_days": [r[2] for r in rows],
            f"{v}__duration_days": [r[3] for r in rows],
            f"{v}__completion_rate": [r[4] for r in rows],
            f"{v}__unit_ids": [r[5] for r in rows],
            f"{v}__unit_levels": [r[6] for r in rows],
        }
    )


def _certificates(rows) -> pd.DataFrame:
    v = "certificate_attributes"
    return pd.DataFrame(
        {
            "certificate_id": [r[0] for r in rows],
            f"{v}__anchor_occupation_id": 0,
            f"{v}__grade_level": [r[1] for r in rows],
            f"{v}__pass_rate": [r[2] for r in rows],
            f"{v}__unit_ids": [r[3] for r in rows],
            f"{v}__unit_levels": [r[4] for r in rows],
        }
    )


def _postings() -> pd.DataFrame:
    v = "posting_attributes"
    # (id, occupation, region, open, close): p4 closed at the clock, p5 and p6 another occupation
    rows = [(0, 0, 2, 90, 120), (1, 0, 0, 90, 120), (2, 0, 1, 90, 120), (3, 0, 0, 95, 101)]
    rows += [(4, 0, 0, 50, 99), (5, 1, 0, 90, 120), (6, 1, 1, 90, 120)]
    return pd.DataFrame(
        {
            "posting_id": [r[0] for r in rows],
            f"{v}__occupation_id": [r[1] for r in rows],
            f"{v}__region_id": [r[2] for r in rows],
            f"{v}__open_days": [float(r[3]) for r in rows],
            f"{v}__close_days": [float(r[4]) for r in rows],
            f"{v}__required_certificate_ids": [[] for _ in rows],
        }
    )


COURSES = [
    (10, 90.0, 110.0, 50, 0.8, [0], [4]),
    (11, 90.0, 105.0, 100, 0.5, [1], [4]),
    (12, 150.0, 190.0, 30, 0.99, [0, 1], [4, 4]),
]
CERTIFICATES = [(0, 1, 0.9, [1], [4]), (1, 1, 0.9, [0, 1], [5, 5]), (2, 2, 0.5, [0], [3])]


def _world(courses=COURSES, certificates=CERTIFICATES, ctx=None):
    ctx = ctx or _ctx()
    arrays = {
        "course": ItemArrays.compile("course", _courses(courses), ctx),
        "certificate": ItemArrays.compile("certificate", _certificates(certificates), ctx),
        "posting": ItemArrays.compile("posting", _postings(), ctx),
    }
    as_of = pd.Timestamp(NOW * 86_400, unit="s", tz="UTC")
    base = {it: arrays[it].open_mask(as_of) for it in ("course", "posting")}
    state = SimpleNamespace(arrays=arrays, base=base, as_of=as_of)
    titles = {
        "course": pd.Series({c[0]: f"course {c[0]}" for c in courses}),
        "certificate": pd.Series({c[0]: f"cert {c[0]}" for c in certificates}),
        "posting": pd.Series({i: f"posting {i}" for i in range(7)}),
    }
    catalog = SimpleNamespace(
        titles=titles,
        occupations=pd.Series({0: "analyst", 1: "baker"}),
        units=pd.Series({u: f"unit {u}" for u in range(ctx.n_units)}),
        regions=pd.Series({0: "Seoul", 1: "Busan", 2: "Incheon"}),
        n_units=ctx.n_units,
    )
    return state, catalog, ctx


SEEKER = {
    "seeker_profile__region_id": 0,
    "seeker_competency__unit_ids": [0, 2, 3],
    "seeker_competency__unit_levels": [2, 2, 2],
    "seeker_competency__certificate_ids": [1],
}


def _ids(b: dict) -> tuple:
    return tuple(c["id"] for c in b["courses"]), tuple(x["id"] for x in b["certificates"])


def test_the_best_bundle_its_coverage_duration_and_the_ranking_are_the_hand_computed_ones():
    state, catalog, ctx = _world()
    out = package(state, catalog, ctx, SEEKER, 0, 20)
    assert out["coverage"] == pytest.approx(0.5) and out["missing_units"] == 2 and out["reason"] is None
    got = [(_ids(b), b["score"]) for b in out["bundles"]]
    want = [
        (((10,), (0,)), 0.425 / 60),
        (((), (0,)), 0.225 / 50),
        (((10,), ()), 0.2 / 60),
        (((10, 11), ()), 0.325 / 105),
        (((), (0, 2)), 0.2875 / 200),
        (((11,), (2,)), 0.1875 / 150),
        (((11,), ()), 0.125 / 105),
    ]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-12)
    best = out["bundles"][0]
    assert best["rank"] == 1
    assert best["coverage"] == pytest.approx(1.0)  # both missing units reach their level
    assert best["expected_coverage"] == pytest.approx(0.925) and best["expected_gain"] == pytest.approx(0.425)
    assert best["duration_days"] == pytest.approx(60.0)  # the certificate's 50 days run beside the course
    assert best["cost_days"] == pytest.approx(100.0)  # 50 course days + 45 / 0.9 exam days
    assert [u["unit_id"] for u in best["closes_units"]] == [0, 1]
    assert best["closes_units"][0]["name"] == "unit 0"
    course, cert = best["courses"][0], best["certificates"][0]
    assert course["start_in_days"] == pytest.approx(10.0) and course["duration_days"] == 50.0
    assert course["closes_units"] == [0] and course["title"] == "course 10"
    assert cert["exam_days"] == 45.0 and cert["expected_days"] == pytest.approx(50.0)
    assert cert["closes_units"] == [1]
    seq = out["bundles"][4]  # two exams, one after the other: 50 + 150 days
    assert seq["duration_days"] == pytest.approx(200.0) and seq["cost_days"] == pytest.approx(200.0)
    assert seq["coverage"] == pytest.approx(0.875)  # (2 * 3/4 + 1 + 1) / 4
    assert PackageResponse(**out).bundles[0].rank == 1  # the response model accepts it


def test_k_cuts_the_ranked_list_and_the_demand_weight_scales_without_reordering():
    state, catalog, ctx = _world()
    full = package(state, catalog, ctx, SEEKER, 0, 20)
    top2 = package(state, catalog, ctx, SEEKER, 0, 2)
    assert [_ids(b) for b in top2["bundles"]] == [_ids(b) for b in full["bundles"][:2]]
    weighted = package(state, catalog, ctx, SEEKER, 0, 20, demand=2.0)
    assert weighted["demand_weight"] == 2.0
    assert [_ids(b) for b in weighted["bundles"]] == [_ids(b) for b in full["bundles"]]
    assert [b["score"] for b in weighted["bundles"]] == pytest.approx(
        [2 * b["score"] for b in full["bundles"]]
    )


def test_held_certificates_and_closed_courses_are_never_proposed_and_allowed_narrows():
    state, catalog, ctx = _world()
    out = package(state, catalog, ctx, SEEKER, 0, 20)
    ids = [_ids(b) for b in out["bundles"]]
    assert all(1 not in x for _, x in ids)  # certificate 1 would close both units: held
    assert all(12 not in c for c, _ in ids)  # course 12 closes both: not recruiting yet
    # not holding certificate 1 makes it the best single item: it closes both units at once
    free = {**SEEKER, "seeker_competency__certificate_ids": []}
    assert _ids(package(state, catalog, ctx, free, 0, 1)["bundles"][0]) == ((), (1,))
    # even an allowed mask that lets it through does not bring a held certificate back
    allowed = {"course": np.array([False, True, True]), "certificate": np.ones(3, bool)}
    narrowed = package(state, catalog, ctx, SEEKER, 0, 20, allowed=allowed)
    n_ids = [_ids(b) for b in narrowed["bundles"]]
    assert all(10 not in c and 1 not in x for c, x in n_ids)
    assert n_ids[0] == ((), (0,))


def test_max_course_km_keeps_only_courses_near_the_seeker():
    state, catalog, ctx = _world()  # every course is in Seoul (region 0); Busan is 50 km away
    busan = {**SEEKER, "seeker_profile__region_id": 1}
    far = package(state, catalog, ctx, busan, 0, 20, rules=PackageRules(max_course_km=40.0))
    assert all(not b["courses"] for b in far["bundles"]) and _ids(far["bundles"][0]) == ((), (0,))
    near = package(state, catalog, ctx, busan, 0, 20, rules=PackageRules(max_course_km=50.0))
    assert _ids(near["bundles"][0]) == ((10,), (0,))


def test_a_seeker_without_a_gap_gets_no_bundle_and_is_told_so():
    state, catalog, ctx = _world()
    out = package(state, catalog, ctx, SEEKER, 1, 3)  # occupation 1 needs unit 3 at level 1: held at 2
    assert out["bundles"] == [] and out["coverage"] == 1.0 and out["missing_units"] == 0
    assert out["reason"].startswith("no gap")
    # a gap nothing closes: only certificate 2 (partial) is left
    only_partial = package(
        state,
        catalog,
        ctx,
        {**SEEKER, "seeker_competency__certificate_ids": [0, 1]},
        0,
        3,
        allowed={"course": np.zeros(3, bool)},
    )
    assert only_partial["bundles"] == [] and only_partial["reason"].startswith("no open course")


def test_bundles_never_exceed_two_courses_and_two_certificates():
    # 6 missing units (importance 1, level 2); courses 0-5 and certificates 0-5 each close one distinct
    # unit. Courses end in 1 + 99 = 100 days and run side by side, an exam takes 45 / 0.9 = 50 days: two
    # exams fill the courses' 100 days, so a third course or exam would raise the score if it were allowed
    ctx = _ctx()
    ctx.req_units = np.array([[0, 1, 2, 3, 4, 5], [0, 6, 6, 6, 6, 6]])
    ctx.req_imp = np.array([[1.0] * 6, [1.0, 0, 0, 0, 0, 0]])
    ctx.req_lvl = np.array([[2.0] * 6, [1.0] * 6])
    ctx.n_units = 6
    courses = [(i, 90.0, 101.0, 99, 0.9, [i], [3]) for i in range(6)]
    certs = [(i, 1, 0.9, [i], [3]) for i in range(6)]
    state, catalog, _ = _world(courses, certs, ctx)
    seeker = {**SEEKER, "seeker_competency__unit_ids": [], "seeker_competency__unit_levels": []}
    out = package(state, catalog, ctx, {**seeker, "seeker_competency__certificate_ids": []}, 0, 20)
    sizes = [(len(b["courses"]), len(b["certificates"])) for b in out["bundles"]]
    assert sizes == [(2, 2)] * 20
    assert all(len(b["closes_units"]) == 4 for b in out["bundles"])
    assert out["bundles"][0]["score"] == pytest.approx(4 * 0.9 / 6 / 100)
    # ties: lower ids first; certificates 0 and 1 would only repeat the units courses 0 and 1 close
    assert _ids(out["bundles"][0]) == ((0, 1), (2, 3))
    assert len({_ids(b) for b in out["bundles"]}) == 20
    one = package(state, catalog, ctx, seeker, 0, 20, rules=PackageRules(max_courses=1, max_certificates=1))
    assert {(len(b["courses"]), len(b["certificates"])) for b in one["bundles"]} <= {(1, 1), (1, 0), (0, 1)}


def test_named_errors_for_an_unknown_occupation_and_k_out_of_range():
    state, catalog, ctx = _world()
    for occ in (-1, 2):
        with pytest.raises(UnknownOccupationError, match="occupation_id"):
            package(state, catalog, ctx, SEEKER, occ, 3)
    for k in (0, 21):
        with pytest.raises(PackageSizeError, match="k: "):
            package(state, catalog, ctx, SEEKER, 0, k)
    assert issubclass(UnknownOccupationError, JobcareError) and issubclass(PackageSizeError, JobcareError)


def test_open_postings_come_seeker_region_first_and_the_demand_weight_by_hand():
    state, catalog, ctx = _world()
    out = package(state, catalog, ctx, SEEKER, 0, 1)
    # region 0 by id, then Incheon (10 km), then Busan (50 km); posting 4 is closed, 5 and 6 another job
    assert [p["id"] for p in out["postings"]] == [1, 3, 0, 2]
    assert out["postings"][2]["region"] == "Incheon"
    d = demand_weight(state, 0, 0)
    # open: 0, 1, 2, 3, 5, 6; in region 0: 1, 3, 5; occupation 0 there: 1, 3; nationally: 0-3
    assert d["open_in_region"] == 2 and d["open_nationally"] == 4
    assert d["weight"] == pytest.approx((3 / 4) / (5 / 7))


def test_bundle_coverage_of_any_item_set_agrees_with_the_package():
    state, catalog, ctx = _world()
    got = bundle_coverage(state, catalog, ctx, SEEKER, 0, [10, 999], [0])  # 999: not a course, ignored
    assert got == pytest.approx({"coverage": 0.5, "reached": 1.0, "expected": 0.925})
    # three items (11 repeats unit 1): reaching 1.0 stays, expected 0.5 + 0.2 + 0.25 * (1 - 0.5 * 0.1)
    got3 = bundle_coverage(state, catalog, ctx, SEEKER, 0, [10, 11], [0])
    assert got3["expected"] == pytest.approx(0.5 + 0.2 + 0.25 * 0.95)
    assert bundle_coverage(state, catalog, ctx, SEEKER, 0) == pytest.approx(
        {"coverage": 0.5, "reached": 0.5, "expected": 0.5}
    )
    for b in package(state, catalog, ctx, SEEKER, 0, 20)["bundles"]:
        c, x = _ids(b)
        again = bundle_coverage(state, catalog, ctx, SEEKER, 0, c, x)
        assert again["reached"] == pytest.approx(b["coverage"])
        assert again["expected"] == pytest.approx(b["expected_coverage"])


def test_exam_days_by_grade():
    assert exam_days([1, 2, 3, 4]).tolist() == [45.0, 75.0, 105.0, 135.0]


def test_the_request_model_wants_exactly_one_seeker_and_forbids_unknown_fields():
    profile = {
        "region_id": 1,
        "education_level": 2,
        "desired_occupation_ids": [3],
        "reservation_wage": 250,
    }
    assert PackageRequest(seeker_id=4, occupation_id=3).k == 3
    assert PackageRequest(profile=profile, occupation_id=3, k=20).profile.region_id == 1
    for bad in (
        {"occupation_id": 3},
        {"seeker_id": 4, "profile": profile, "occupation_id": 3},
        {"seeker_id": 4, "occupation_id": 3, "k": 21},
        {"seeker_id": 4, "occupation_id": 3, "k": 0},
        {"seeker_id": 4, "occupation_id": 3, "top": 2},
        {"seeker_id": -1, "occupation_id": 3},
    ):
        with pytest.raises(ValidationError):
            PackageRequest(**bad)


def test_the_evaluation_helpers_hit_realised_gain_and_interval():
    from evaluation.package_eval import _hit, _mean_ci, _realised_gain

    did = {"course": {10}, "certificate": set()}
    assert _hit([11, 10], [], did) == 1.0 and _hit([11], [10], did) == 0.0  # ids count per item type
    assert _hit([], [], did) == 0.0
    ctx = _ctx()
    # the seeker gains unit 1 at 4 and unit 0 at 1 (below the held 2): (2 * 2/4 + 1 + 1) / 4
    assert _realised_gain(ctx, SEEKER, 0, {1: 4, 0: 1}) == pytest.approx(0.75)
    assert _realised_gain(ctx, SEEKER, 0, {}) == pytest.approx(0.5)
    m = _mean_ci([0.0, 1.0, 1.0, 0.0])
    assert m["mean"] == 0.5 and m["ci95"] == pytest.approx(round(1.96 * np.std([0, 1, 1, 0], ddof=1) / 2, 4))


def test_the_linear_expectation_equals_the_enumeration_of_every_outcome():
    from serving.package import _expected, _outcomes

    rng = np.random.default_rng(3)
    for _ in range(20):
        n, U = int(rng.integers(0, 6)), int(rng.integers(1, 8))
        L = rng.integers(0, 6, (n, U)).astype(float)
        P = rng.uniform(0, 1, n)
        held = rng.integers(0, 4, U).astype(float)
        need = rng.integers(1, 6, U).astype(float)
        imp = rng.uniform(0.5, 5, U)
        _, cov, prob = _outcomes(L[None], P[None], held, need, imp)
        assert prob.sum() == pytest.approx(1.0)
        assert _expected(L, P, held, need, imp) == pytest.approx(float(prob[0] @ cov[0]), abs=1e-12)
