"""The request path against the reference path (tests/reference_path.py) on the tiny world.

1. Ranker inputs: >= 1,000 random (seeker, item, time) triples per item type; the request path's
   values equal the ranker FeatureService read point in time from Feast plus the pandas pair features.
2. Whole requests: >= 200 random requests through the service's engine (seekers by id, cold seekers,
   inline profiles, region / occupation filters, blocked items) give the reference's candidates, scores
   and top k.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import store as fstore
from features.item_arrays import ItemArrays
from features.item_index import item_features
from features.pair_arrays import SeekerArrays, days
from serving.engine import Engine
from serving.schemas import Profile
from tests import reference_path as ref
from training.candidates.world import ITEM_KEY, seeker_side_table
from training.request_path import (
    RankerPlan,
    context,
    default_features,
    occupation_columns,
)

pytestmark = pytest.mark.integration
ITEM_TYPES = ("posting", "course", "certificate")


@pytest.fixture(scope="module")
def engine(served):
    return Engine(served[0])


def _triples(tables, items_at, item_type, n, rng, open_only=True):
    """n random (seeker, item, ts) with the seeker registered and the item open (offerable) at ts."""
    sess = tables["sessions"]
    out = []
    while len(out) < n:
        row = sess.iloc[int(rng.integers(len(sess)))]
        ts = row["ts"] + pd.Timedelta(minutes=int(rng.integers(0, 600)))
        day_items = items_at(ts)
        ok = day_items.open_mask(ts) if open_only else np.ones(len(day_items), bool)
        pos = np.flatnonzero(ok)
        if pos.size == 0:
            continue
        for p in rng.choice(pos, min(8, pos.size), replace=False):
            out.append((int(row["seeker_id"]), int(day_items.keys[p]), ts))
    return pd.DataFrame(out[:n], columns=["seeker_id", "item_id", "event_timestamp"])


@pytest.mark.parametrize("item_type", ITEM_TYPES)
def test_ranker_inputs_equal_feast_point_in_time_plus_reference_pairs(local_repo, tiny_tables, item_type):
    rng = np.random.default_rng(3)
    ctx = context(local_repo, len(tiny_tables["competency_units"]))
    store = fstore.open_store(local_repo)
    cache: dict = {}

    def items_at(ts):
        day = ts.floor("D")
        if day not in cache:
            at = day + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
            cache[day] = ItemArrays.compile(item_type, item_features(local_repo, item_type, at), ctx)
        return cache[day]

    tri = _triples(tiny_tables, items_at, item_type, 1000, rng)
    key = ITEM_KEY[item_type]
    entity = tri.rename(columns={"item_id": key})
    if item_type == "posting":
        occ = tiny_tables["postings"].set_index("posting_id")["occupation_id"]
        entity["occupation_id"] = occ.loc[entity[key]].to_numpy(np.int64)
    want = ref.feast_rows(store, item_type, entity, ctx)
    seek = fstore.historical_features(store, tri[["seeker_id", "event_timestamp"]], "seeker_online_v1")
    seeker_cols = fstore.scalar_columns(store.get_feature_service("seeker_online_v1"))
    occ_cols = occupation_columns(local_repo) if item_type == "posting" else None
    got, plan = [], None
    for i in range(len(tri)):
        ts = tri.at[i, "event_timestamp"]
        items = items_at(ts)
        if plan is None:
            names = default_features(item_type, seeker_cols, items, occ_cols, (), absolute_time=True)
            plan = RankerPlan(item_type, names, seeker_cols, items, occ_cols)
        s = SeekerArrays.from_row(seek.iloc[i], ctx, int(tri.at[i, "seeker_id"]))
        pos = items.positions([tri.at[i, "item_id"]])
        got.append(plan.matrix(s, items, pos, days(ts), ctx, dtype=np.float64)[0])
    got = pd.DataFrame(np.vstack(got), columns=plan.features)
    # every ranker input the Feast + pandas path produces (numeric, not an id) is built by the request path
    numeric = [
        c
        for c in want.columns
        if pd.api.types.is_numeric_dtype(want[c].dtype)
        and not c.split("__")[-1].endswith("_id")
        and c not in ("seeker_id", key, "occupation_id")
    ]
    assert sorted(numeric) == sorted(plan.features)
    assert len(plan.features) >= {"posting": 60, "course": 40, "certificate": 35}[item_type]
    a = got[plan.features].to_numpy(np.float64)
    b = want[plan.features].astype(float).to_numpy(np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=0, atol=1e-9)


def _reference_request(engine, item_type, seeker_row, s, regions=None, occupations=None, alias="champion"):
    """The reference path's candidates and scores for one request at the service clock."""
    state = engine.state
    v = state.variants[alias]
    bundle = v.bundles[item_type]
    stage = v.stages[item_type].stage
    held = seeker_row["seeker_competency__certificate_ids"]
    items = ref.allowed_items(
        state.offers[item_type], s, state.as_of, state.items[item_type], held, regions, occupations
    )
    if items.empty:
        return np.zeros(0, np.int64), np.zeros(0)
    q = pd.DataFrame([dict(seeker_row)]).assign(seeker_id=s)
    user_vec = stage.two_tower.embed_users(seeker_side_table(q))[0]
    weights, trained_until = v.history[item_type]
    hist = state.offers[item_type].history(s, state.as_of, weights) if s >= 0 else None
    op = None
    if item_type == "certificate":
        p = state.items["posting"]
        op = p[ref.open_mask("posting", p, state.as_of)]
    row = pd.Series({**seeker_row, "seeker_id": s})
    cand, _, scores = ref.recommend(
        stage,
        bundle,
        engine.ctx,
        item_type,
        row,
        state.as_of,
        items,
        user_vec,
        hist,
        trained_until,
        op,
        ref.occupation_profile(engine.repo),
    )
    return cand, scores


def _fast_request(engine, item_type, seeker_row, s, regions=None, occupations=None, alias="champion"):
    from training.offers import allowed_mask

    state = engine.state
    v = state.variants[alias]
    arrays = state.arrays[item_type]
    held = seeker_row["seeker_competency__certificate_ids"]
    mask = allowed_mask(
        arrays, state.offers[item_type], s, state.as_of, held, state.base[item_type], regions, occupations
    )
    if not mask.any():
        return np.zeros(0, np.int64), np.zeros(0)
    sa = SeekerArrays.from_row(seeker_row, engine.ctx, s)
    scored = engine.score(state, v, item_type, seeker_row, sa, mask)
    return arrays.keys[scored.candidates], v.bundles[item_type].ranker.predict(scored.matrix)


@pytest.fixture(scope="module")
def small_engine(engine):
    """The champion with 12 candidates instead of 300: on the tiny world every source then cuts its list
    inside ties (discrete rule scores, popularity 0) and the union's quotas bind."""
    import copy

    v = engine.state.variants["champion"]
    small = {}
    for it, b in v.bundles.items():
        b = copy.copy(b)
        b.n_candidates = 12
        b.quotas = {"two_tower": 4, "rules": 4, "als": 3, "popularity": 1}
        small[it] = b
    engine.add_variant("small", small, v.versions)
    return engine


def test_whole_requests_equal_the_reference_path(small_engine, tiny_tables):
    engine = small_engine
    rng = np.random.default_rng(5)
    seekers = tiny_tables["seekers"]["seeker_id"].to_numpy()
    n_occ, n_units = len(engine.catalog.occupations), engine.catalog.n_units
    kinds = {"id": 0, "cold": 0, "profile": 0, "filtered": 0, "blocked": 0, "cut": 0}
    n = 0
    for item_type in ITEM_TYPES:
        v = engine.state.variants["champion"]
        als_users = v.bundles[item_type].als.users_
        for j in range(70):
            regions = occupations = None
            if j % 5 == 4:  # an inline profile (no id: no history, no blocked items)
                prof = Profile(
                    region_id=int(rng.integers(17)),
                    education_level=int(rng.integers(5)),
                    career_years=int(rng.integers(20)),
                    desired_occupation_ids=rng.choice(n_occ, int(rng.integers(1, 4)), replace=False).tolist(),
                    reservation_wage=float(rng.uniform(150, 450)),
                    riasec={c: float(x) for c, x in zip("RIASEC", rng.uniform(0, 100, 6))},
                    competencies=[
                        {"unit_id": int(u), "level": int(rng.integers(1, 9))}
                        for u in rng.choice(n_units, int(rng.integers(0, 12)), replace=False)
                    ],
                    certificate_ids=rng.choice(30, int(rng.integers(0, 3)), replace=False).tolist(),
                )
                row, s = engine.profile_seeker(prof), -1
                kinds["profile"] += 1
            else:
                s = int(rng.choice(seekers))
                try:
                    row = engine.online_seeker(s)
                except Exception:
                    continue
                kinds["cold" if als_users.index([s])[0] < 0 else "id"] += 1
                kinds["blocked"] += len(engine.state.offers[item_type].blocked(s, engine.as_of)) > 0
            if j % 3 == 2 and item_type != "certificate":
                regions = sorted(rng.choice(17, 6, replace=False).tolist())
                kinds["filtered"] += 1
            elif j % 7 == 6:
                occupations = sorted(rng.choice(n_occ, n_occ // 2, replace=False).tolist())
                kinds["filtered"] += 1
            alias = "small" if j % 2 else "champion"
            want_ids, want_scores = _reference_request(engine, item_type, row, s, regions, occupations, alias)
            got_ids, got_scores = _fast_request(engine, item_type, row, s, regions, occupations, alias)
            assert np.array_equal(got_ids, want_ids), (item_type, j, s, alias)
            if alias == "small":
                kinds["cut"] += len(want_ids) == 12
            np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=1e-9)
            top = lambda ids, sc: ids[np.argsort(-sc, kind="stable")[:10]]  # noqa: E731
            assert np.array_equal(top(got_ids, got_scores), top(want_ids, want_scores))
            n += 1
    assert n >= 200
    assert all(x >= 5 for x in kinds.values()), kinds
