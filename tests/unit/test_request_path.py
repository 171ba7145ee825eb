"""The request path's array primitives against obviously-right references (seeded, synthetic)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.item_arrays import ItemArrays, certificate_demand
from tests import reference_path as ref
from training.candidates.base import top_k
from training.candidates.two_tower import TableEncoder
from training.candidates.union import union
from training.request_path import RankerPlan, RequestPathError, source_ranks


def test_union_equals_the_loop_reference_on_random_lists():
    rng = np.random.default_rng(0)
    for _ in range(400):
        n_items = int(rng.integers(1, 60))
        lists = {
            name: rng.permutation(n_items)[: int(rng.integers(0, n_items + 1))]
            for name in ("two_tower", "rules", "als", "popularity")
        }
        quotas = {name: int(rng.integers(0, 15)) for name in rng.permutation(list(lists))}
        n = int(rng.integers(1, 40))
        got, src = union(lists, quotas, n)
        want = ref.union(lists, quotas, n)
        assert got.tolist() == want.tolist()
        for item, name in zip(got, src):  # each item is credited to a source that proposed it
            assert item in lists[name]


def test_top_k_orders_by_score_then_position_including_ties_at_the_cut():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 200))
        scores = rng.integers(0, 4, n).astype(float)  # heavy ties
        scores[rng.random(n) < 0.1] = np.nan
        items = np.arange(n) * 10
        k = int(rng.integers(1, n + 3))
        got, got_scores = top_k(items, scores, k)
        ok = np.flatnonzero(~np.isnan(scores))
        want = ok[np.lexsort((ok, -scores[ok]))][:k]
        assert got.tolist() == (want * 10).tolist()
        assert np.array_equal(got_scores, scores[want])
    assert top_k(np.arange(5), np.ones(5), 0)[0].size == 0


def test_top_k_allowed_is_the_best_allowed_positions_ties_by_position():
    from training.candidates.base import top_k_allowed

    rng = np.random.default_rng(6)
    for _ in range(300):
        n = int(rng.integers(1, 3000))
        scores = rng.integers(0, 5, n).astype(float) + rng.choice([0.0, 0.5], n)  # many ties
        mask = rng.random(n) < rng.choice([0.01, 0.05, 0.5, 1.0])
        k = int(rng.integers(1, 400))
        want = sorted(np.flatnonzero(mask).tolist(), key=lambda i: (-scores[i], i))[:k]  # by brute force
        assert top_k_allowed(scores, mask, k).tolist() == want


def test_source_ranks_are_one_based_positions_or_the_missing_rank():
    lists = {"als": np.array([7, 3, 9]), "rules": np.array([], np.int64)}
    r = source_ranks(lists, np.array([3, 4, 9, 7]), n_candidates=300)
    assert r["als"].tolist() == [2, 301, 3, 1]
    assert r["rules"].tolist() == [301] * 4


def test_table_encoder_record_path_equals_the_frame_path():
    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {
            "user": np.arange(50),
            "region_id": rng.integers(0, 17, 50),
            "education_level": rng.integers(0, 5, 50).astype(float),
            "desired_occupation_ids": [list(rng.integers(0, 30, int(rng.integers(0, 4)))) for _ in range(50)],
            "R": rng.uniform(0, 100, 50),
        }
    )
    enc = TableEncoder("user").fit(df)
    records = [
        {"user": 1, "region_id": 3, "education_level": 2.0, "desired_occupation_ids": [4, 5], "R": 55.5},
        {"user": 2, "region_id": 99, "education_level": None, "desired_occupation_ids": [], "R": np.nan},
        {"user": 3, "region_id": 16, "education_level": 4.0, "desired_occupation_ids": None, "R": 0.0},
    ]
    for rec in records:
        frame = enc.transform(pd.DataFrame([rec]))
        one = enc.transform_record(rec)
        for c in frame["cat"]:
            assert np.array_equal(one["cat"][c], frame["cat"][c])
        for c in frame["list"]:
            assert all(np.array_equal(a, b) for a, b in zip(one["list"][c], frame["list"][c]))
        assert np.array_equal(one["num"], frame["num"])
    assert enc.transform_record(records[1])["cat"]["region_id"].tolist() == [0]  # unknown -> 0


def _postings(n_units: int = 10):
    from features.pairs import PairContext

    occ = pd.DataFrame(
        {
            "occupation_id": [0, 1, 2],
            "group_id": [0, 0, 1],
            "required_unit_ids": [[1, 2], [3], [4, 5, 6]],
            "required_unit_importance": [[3, 1], [5], [1, 1, 1]],
            "required_unit_levels": [[2, 2], [3], [1, 1, 1]],
        }
    )
    from jobcare.world.taxonomy import RIASEC, WORK_VALUES

    for c in RIASEC + WORK_VALUES:
        occ[f"occ_{c}"] = [1.0, 2.0, 3.0]
    ctx = PairContext.from_occupation_profile(occ, n_units)
    items = pd.DataFrame(
        {
            "posting_id": [4, 0, 2, 3],
            "posting_attributes__occupation_id": [0, 1, 0, 2],
            "posting_attributes__region_id": [1, 2, 3, 1],
            "posting_attributes__wage": [300.0, 250.0, 280.0, np.nan],
            "posting_attributes__required_certificate_ids": [[1, 1, 2], [], [2], None],
            "posting_attributes__open_days": [0.0, 0.0, 10.0, 0.0],
            "posting_attributes__close_days": [20.0, 5.0, 30.0, 20.0],
        }
    )
    return ItemArrays.compile("posting", items, ctx), ctx


def test_item_arrays_index_by_ascending_id_with_nan_kept():
    arr, _ = _postings()
    assert arr.keys.tolist() == [0, 2, 3, 4]
    assert arr.positions([4, 0, 7, -1]).tolist() == [3, 0, -1, -1]
    assert np.isnan(arr.num["posting_attributes__wage"][2])
    assert arr.open_mask(pd.Timestamp(12 * 86_400e9)).tolist() == [False, True, True, True]
    assert arr.req_certs[3].tolist()[:3] == [1, 1, 2]


def test_certificate_demand_counts_each_open_posting_once_per_certificate():
    arr, _ = _postings()
    n_open, count = certificate_demand(arr, np.array([True, True, True, True]), 3, 4)
    assert n_open.tolist() == [2, 1, 1]
    # occupation 0: postings 2 (requires 2) and 4 (requires 1, 1, 2): cert 1 once, cert 2 twice
    assert count[0].tolist() == [0, 1, 2, 0]
    assert count[2].tolist() == [0, 0, 0, 0]


def test_ranker_plan_names_the_input_it_cannot_build():
    arr, _ = _postings()
    with pytest.raises(
        RequestPathError, match=r"\['mystery_feature'\].*rule: every model input has a source"
    ):
        RankerPlan("posting", ["coverage", "mystery_feature"], ["seeker_profile__career_years"], arr)


def testfirst_allowed_scans_in_chunks_and_equals_a_full_filter():
    from training.request_path import first_allowed

    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(0, 6000))
        order = rng.permutation(n)
        mask = rng.random(n) < rng.choice([0.001, 0.1, 0.9])
        k = int(rng.integers(1, 400))
        assert first_allowed(order, mask, k).tolist() == order[mask[order]][:k].tolist()


def test_filter_membership_ignores_ids_no_item_has():
    from training.offers import member

    codes = np.array([0, 3, 3, -1, 7, 2])
    for wanted in ([3], [0, 7], [-1], [-5, 10**15], [2, 10**15, -3], [7, 7, 3]):
        want = np.isin(codes, [w for w in wanted if w >= 0])
        np.testing.assert_array_equal(member(codes, wanted), want)
    assert member(np.zeros(0, np.int64), [1]).shape == (0,)


def test_closed_items_are_those_whose_capacity_events_reach_the_limit_by_then():
    """OfferIndex.closed from each item's moment of filling equals counting the capacity events at or
    before ``ts`` (ties at ``ts`` count, hires of unknown items and other event types do not, a limit of
    0 is always full), on random logs and at every event's own moment."""
    from training.offers import OfferIndex

    rng = np.random.default_rng(3)
    n_items, n_ev = 40, 400
    base = pd.Timestamp("2024-01-01", tz="UTC")
    ts = base + pd.to_timedelta(rng.integers(0, 50, n_ev), unit="D")  # many ties
    events = pd.DataFrame(
        {
            "seeker_id": rng.integers(0, 30, n_ev),
            "item_type": rng.choice(["posting", "course"], n_ev, p=[0.8, 0.2]),
            "item_id": rng.integers(0, n_items + 5, n_ev),  # ids 40-44 are in no table
            "event_type": rng.choice(["hire", "apply", "view"], n_ev),
            "ts": ts,
        }
    )
    postings = pd.DataFrame({"posting_id": np.arange(n_items), "headcount": rng.integers(0, 6, n_items)})
    offers = OfferIndex({"events": events, "postings": postings}, "posting")
    hires = events[(events["item_type"] == "posting") & (events["event_type"] == "hire")]
    moments = [base - pd.Timedelta(days=1), *sorted(set(ts)), base + pd.Timedelta(days=60)]
    n_changes = 0
    for at in moments:
        used = hires[hires["ts"] <= at].groupby("item_id").size()
        want = [i for i, lim in enumerate(postings["headcount"]) if used.get(i, 0) >= lim]
        got = offers.closed(at).tolist()
        assert got == want, at
        n_changes += len(want)
    assert 0 in postings["headcount"].tolist() and n_changes > len(moments)  # the cases are present
