"""One suite over every candidate generator (style brief item 9) on a synthetic planted-preference set:
3 user groups x 3 item groups; users only interact with items of their own group."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.candidates.als import ALSRecommender
from training.candidates.popularity import PopularityRecommender
from training.candidates.two_tower import TwoTowerRecommender

N_USERS, N_ITEMS, G = 90, 60, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    users = pd.DataFrame(
        {
            "user": [f"u{i}" for i in range(N_USERS)],
            "segment": [f"g{i % G}" for i in range(N_USERS)],
            "age": rng.normal(40, 10, N_USERS),
        }
    )
    items = pd.DataFrame(
        {
            "item": np.arange(N_ITEMS) + 1000,
            "category_id": np.arange(N_ITEMS) % G,
            "tags": [[f"t{i % G}", f"x{i % 7}"] for i in range(N_ITEMS)],
            "price": rng.random(N_ITEMS),
        }
    )
    rows = []
    for u in range(N_USERS):
        own = np.flatnonzero(np.arange(N_ITEMS) % G == u % G)
        for it in rng.choice(own, 8, replace=False):
            rows.append((f"u{u}", int(it) + 1000, float(rng.integers(1, 4))))
    inter = pd.DataFrame(rows, columns=["user", "item", "weight"])
    held_out = "u0"  # group 0; its interactions are removed from training
    return inter, users, items, held_out


def make(name):
    return {
        "popularity": lambda: PopularityRecommender(),
        "als": lambda: ALSRecommender(
            factors=8, iterations=15, regularization=0.01, alpha=10, random_state=0, num_threads=1
        ),
        "two_tower": lambda: TwoTowerRecommender(
            dim=8, hidden=32, epochs=6, batch_size=64, samples_per_epoch=3000, random_state=0
        ),
    }[name]()


@pytest.fixture(scope="module", params=["popularity", "als", "two_tower"])
def fitted(request, data):
    inter, users, items, held = data
    train = inter[inter["user"] != held]
    return request.param, make(request.param).fit(train, users, items)


def test_fit_returns_self_and_learned_state_ends_in_underscore(data):
    inter, users, items, _ = data
    for name in ("popularity", "als", "two_tower"):
        m = make(name)
        assert not [k for k in vars(m) if k.endswith("_")]
        assert m.fit(inter, users, items) is m
        assert [k for k in vars(m) if k.endswith("_")]


def test_single_and_batch_agree(fitted, data):
    name, m = fitted
    _, users, _, _ = data
    us = ["u1", "u2", "u4"]
    batch = m.recommend_batch(us, 5, user_features=users if name == "two_tower" else None)
    for u, (items, scores) in zip(us, batch):
        single = m.recommend(u, 5, user_features=users[users.user == u] if name == "two_tower" else None)
        np.testing.assert_array_equal(items, single[0])
        np.testing.assert_allclose(scores, single[1])


def test_save_load_round_trip_gives_identical_scores(fitted, tmp_path):
    name, m = fitted
    m.save(tmp_path / name)
    loaded = type(m).load(tmp_path / name)
    items = m.known_items()
    np.testing.assert_array_equal(m.score("u1", items), loaded.score("u1", items))


def test_k_larger_than_the_catalogue(fitted):
    _, m = fitted
    items, scores = m.recommend("u1", 10_000)
    assert len(items) == len(m.known_items()) and len(set(items)) == len(items)
    assert np.all(np.diff(scores) <= 1e-12)


def test_empty_history(fitted, data):
    name, m = fitted
    _, users, _, _ = data
    items, _ = m.recommend("nobody", 5)
    if name == "popularity":
        assert len(items) == 5
    else:  # no history and no side features: nothing to base a recommendation on
        assert len(items) == 0
    if name == "two_tower":
        feats = pd.DataFrame({"user": ["nobody"], "segment": ["g1"], "age": [30.0]})
        items, _ = m.recommend("nobody", 5, user_features=feats)
        assert len(items) == 5


def test_planted_preference_is_recovered_for_a_held_out_member(fitted, data):
    name, m = fitted
    inter, users, _, held = data
    if name == "popularity":
        pytest.skip("popularity is the same list for everyone: it cannot personalise by design")
    kw = (
        {"user_features": users[users.user == held]}
        if name == "two_tower"
        else {"history": inter[inter.user == held][["item", "weight"]].head(3)}
    )
    items, _ = m.recommend(held, 10, **kw)
    assert np.all((items - 1000) % G == 0), items


def test_als_recalculates_a_user_whose_history_changed(data):
    inter, users, items, _ = data
    m = make("als").fit(inter, users, items)
    # u1 is in group 1; a new history entirely in group 2 moves its recommendations to group 2
    new = pd.DataFrame({"item": [1002, 1005, 1008, 1011], "weight": [3.0] * 4})
    rec, _ = m.recommend("u1", 5, history=new, exclude=new["item"])
    assert np.all((rec - 1000) % G == 2)


def test_two_tower_record_embedding_equals_the_torch_towers(data):
    """The serving path's numpy forward pass gives the torch tower's embedding for one record, with
    categorical, list (empty and unknown entries included) and numeric (missing included) fields."""
    inter, users, items, _ = data
    users = users.assign(
        skills=[[f"s{i % 5}", f"s{i % 3}"] if i % 4 else [] for i in range(N_USERS)],
        region_id=np.arange(N_USERS) % 4,
    )
    m = TwoTowerRecommender(dim=8, hidden=16, epochs=2, batch_size=64, samples_per_epoch=500).fit(
        inter, users, items
    )
    probe = pd.concat(
        [
            users.head(6),
            pd.DataFrame(  # unseen categories and list entries, a missing number, no list
                {
                    "user": ["new", "bare"],
                    "segment": ["g9", "g1"],
                    "age": [np.nan, 51.0],
                    "skills": [["s1", "zz"], None],
                    "region_id": [99, 2],
                }
            ),
        ],
        ignore_index=True,
    )
    want = m.embed_users(probe)
    got = np.stack([m.embed_user_record(r) for r in probe.to_dict("records")])
    assert got.dtype == np.float32 and got.shape == want.shape == (8, 8)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.abs(want[6] - want[0]).max() > 1e-3  # the probes differ: the comparison has teeth


def test_the_list_encoder_gives_the_bag_of_a_per_row_reading():
    """The vectorised list encoding equals the obvious per-row one: each row's known tokens in order,
    unknown tokens as 0, an empty, missing or NaN list as a single 0; arrays and ints as tokens; a
    non-default index does not matter."""
    from training.candidates.two_tower import TableEncoder

    train = pd.DataFrame({"k": [1, 2, 3], "tags": [["b", "a"], np.array(["c"]), [7, "a"]]})
    enc = TableEncoder("k").fit(train)
    assert enc.vocab_["tags"] == {"7": 1, "a": 2, "b": 3, "c": 4}
    probe = pd.DataFrame(
        {"k": range(7), "tags": [["a", "zz", "b"], [], None, np.array(["c", "c"]), [7], np.nan, ["q"]]},
        index=[10, 10, 3, 2, 1, 0, 99],
    )
    idx, offsets = enc.transform(probe)["list"]["tags"]
    want = [[2, 0, 3], [0], [0], [4, 4], [1], [0], [0]]
    assert idx.tolist() == [x for row in want for x in row]
    assert offsets.tolist() == [0, 3, 4, 5, 7, 8, 9]
    one = enc.transform_record({"tags": ["a", "zz", "b"]})["list"]["tags"]
    assert one[0].tolist() == [2, 0, 3] and one[1].tolist() == [0]
    assert enc.transform_record({"tags": np.nan})["list"]["tags"][0].tolist() == [0]


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([3, 1, 3, 7, 1], dtype="int64"),
        pd.Series(["b", None, "a", np.nan, "b"], dtype=object),
        pd.Series([1.0, np.nan, 2.5, 1.0]),
        pd.Series(["x", "y", None, "x"], dtype="category"),
        pd.Series([True, False, True]),
    ],
    ids=["int", "object_with_nulls", "float_with_nan", "categorical", "bool"],
)
def test_categorical_codes_are_those_of_astype_str_on_every_dtype(values):
    """The encoder converts each distinct value to str once; the vocabulary and the codes are those of
    converting every row (``astype(str)``: nulls spelled 'None' / 'nan'), unknown values 0."""
    from training.candidates.two_tower import _cat_codes, _distinct_str

    want_vocab = sorted(set(values.astype(str)))
    assert sorted(_distinct_str(values)) == want_vocab
    vocab = {v: i + 1 for i, v in enumerate(want_vocab[:-1])}  # the last value is unknown
    want = values.astype(str).map(vocab).fillna(0).to_numpy(np.int64)
    np.testing.assert_array_equal(_cat_codes(values, vocab), want)
    assert (want == 0).any() and (want > 0).any()


def test_a_batch_of_bags_is_each_rows_slice_of_the_flat_tokens():
    from training.candidates.two_tower import _to_torch

    flat = np.arange(100, 112)
    offsets = np.array([0, 3, 3, 4, 9, 9])  # rows 1 and 4 hold no token, the last row the last three
    enc = {"cat": {}, "list": {"t": (flat, offsets)}, "num": np.zeros((6, 0), np.float32)}
    rows = np.array([3, 0, 5, 1, 4, 2, 3])  # any order, repeats
    bag, off = _to_torch(enc, rows)["list"]["t"]
    ends = np.append(offsets[1:], flat.size)
    want = [flat[offsets[r] : ends[r]] for r in rows]
    assert bag.tolist() == np.concatenate(want).tolist()
    assert off.tolist() == np.cumsum([0] + [len(w) for w in want[:-1]]).tolist()
    assert [len(w) for w in want] == [5, 3, 3, 0, 0, 1, 5]


def test_als_widened_to_every_core_mid_fit_gives_the_same_factors(data):
    """``fit(widen=event)``: once the event is set, the remaining iterations run on every core (the stage
    one fits ALS on one thread beside the two-tower, then widens it); the factors are those of a fit on one
    thread, and the fitted model keeps its configured thread count."""
    import threading

    inter = data[0]

    class CountingEvent(threading.Event):
        calls = 0

        def is_set(self):
            CountingEvent.calls += 1
            return CountingEvent.calls > 2  # set after the second iteration

    one = ALSRecommender(factors=8, iterations=6, num_threads=1).fit(inter)
    widened = ALSRecommender(factors=8, iterations=6, num_threads=1).fit(inter, widen=CountingEvent())
    assert CountingEvent.calls == 6  # asked once per iteration
    assert widened.model_.num_threads == 1
    np.testing.assert_array_equal(widened.user_factors_, one.user_factors_)
    np.testing.assert_array_equal(widened.item_factors_, one.item_factors_)
