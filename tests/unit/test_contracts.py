"""Each data-contract rule catches a hand-made corruption of a tiny world."""

from __future__ import annotations

import pandas as pd
import pytest

from jobcare.contracts import validate_tables, validate_world
from jobcare.errors import ContractError


def _span(tiny_world):
    import json

    m = json.loads((tiny_world / "manifest.json").read_text())["span"]
    return pd.Timestamp(m["start"]), pd.Timestamp(m["end"])


def _copy(tables):
    return {k: v.copy() for k, v in tables.items()}


def test_generated_world_is_valid(tiny_world):
    rows = validate_world(tiny_world)
    assert rows["seekers"] == 500 and rows["events"] > 1000


def _first(violations, rule):
    found = [v for v in violations if v.rule == rule]
    assert found, f"rule {rule} not reported; got {[v.rule for v in violations]}"
    return found[0]


def test_missing_column(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    t["postings"] = t["postings"].drop(columns=["wage"])
    v = _first(validate_tables(t, *_span(tiny_world)), "missing_column")
    assert (v.table, v.column) == ("postings", "wage")


def test_null_id(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    t["events"]["seeker_id"] = t["events"]["seeker_id"].astype("Int32")
    t["events"].loc[5, "seeker_id"] = pd.NA
    v = _first(validate_tables(t, *_span(tiny_world)), "null_value")
    assert (v.table, v.column, v.n_rows) == ("events", "seeker_id", 1)
    assert v.examples[0]["row"] == 5


def test_foreign_key_break(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    t["postings"].loc[3, "occupation_id"] = 99_999
    v = _first(validate_tables(t, *_span(tiny_world)), "foreign_key")
    assert (v.table, v.column, v.n_rows) == ("postings", "occupation_id", 1)
    assert "occupations.occupation_id" in v.detail


def test_future_timestamp(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    t["events"].loc[7, "ts"] = pd.Timestamp("2031-01-01", tz="UTC")
    v = _first(validate_tables(t, *_span(tiny_world)), "outside_span")
    assert (v.table, v.column) == ("events", "ts") and v.examples[0]["row"] == 7


def test_duplicate_id(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    t["seekers"].loc[10, "seeker_id"] = 9
    vs = validate_tables(t, *_span(tiny_world))
    v = _first(vs, "duplicate_key")
    assert (v.table, v.column, v.n_rows) == ("seekers", "seeker_id", 2)


def test_hire_without_apply(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    ev = t["events"]
    hire = ev.index[ev["event_type"] == "hire"][0]
    s, item = ev.loc[hire, "seeker_id"], ev.loc[hire, "item_id"]
    ev = ev.drop(ev.index[(ev["event_type"] == "apply") & (ev["seeker_id"] == s) & (ev["item_id"] == item)])
    t["events"] = ev
    v = _first(validate_tables(t, *_span(tiny_world)), "outcome_without_action")
    assert v.table == "events" and v.examples[0]["event_type"] == "hire"


def test_apply_before_view_and_out_of_range(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    ev = t["events"]
    a = ev.index[ev["event_type"] == "apply"][0]
    ev.loc[a, "ts"] = ev.loc[a, "ts"] - pd.Timedelta(days=3)
    t["postings"].loc[0, "headcount"] = 0
    vs = validate_tables(t, *_span(tiny_world))
    assert _first(vs, "action_without_view").table == "events"
    assert _first(vs, "out_of_range").column == "headcount"


def test_missing_table_and_error_message(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    del t["courses"]
    vs = validate_tables(t, *_span(tiny_world))
    assert [v.rule for v in vs] == ["missing_table"]
    err = ContractError(vs)
    assert "[missing_table] courses" in str(err)


def test_validate_world_raises_on_corrupt_files(tiny_world, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_world, bad)
    p = pd.read_parquet(bad / "postings.parquet")
    p.loc[1, "posting_id"] = 0
    p.to_parquet(bad / "postings.parquet")
    with pytest.raises(ContractError) as e:
        validate_world(bad)
    assert {"duplicate_key", "id_not_dense"} <= e.value.rules


def test_events_before_registration_and_outside_the_posting_window_are_counted_exactly(
    tiny_tables, tiny_world
):
    """The time checks compare int64 nanoseconds (not one Timestamp object per row): exact counts, and a
    moment equal to the bound is no violation."""
    t = _copy(tiny_tables)
    ev, seekers, postings = t["events"], t["seekers"], t["postings"].set_index("posting_id")
    # three events of one seeker moved to 1 s before its registration, one exactly at it (allowed)
    s = int(ev["seeker_id"].iloc[0])
    reg = seekers.set_index("seeker_id").at[s, "registered_at"]
    rows = ev.index[ev["seeker_id"] == s][:4]
    ev.loc[rows[:3], "ts"] = reg - pd.Timedelta(seconds=1)
    ev.loc[rows[3], "ts"] = reg
    v = _first(validate_tables(t, *_span(tiny_world)), "event_before_registration")
    assert v.n_rows == 3
    # two posting views moved after their posting's close, one exactly at the close (allowed)
    t = _copy(tiny_tables)
    ev = t["events"]
    views = ev.index[(ev["event_type"] == "view") & (ev["item_type"] == "posting")][:3]
    close = postings["close_at"].reindex(ev.loc[views, "item_id"]).to_numpy()
    ev.loc[views[:2], "ts"] = close[:2] + pd.Timedelta(seconds=1)
    ev.loc[views[2], "ts"] = close[2]
    v = _first(validate_tables(t, *_span(tiny_world)), "posting_event_outside_window")
    assert v.n_rows == 2 and {e["event_id"] for e in v.examples} == set(ev.loc[views[:2], "event_id"])


def test_duplicated_keys_on_packed_integers_equal_pandas():
    import numpy as np

    from jobcare.contracts import duplicated_keys

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"s": rng.integers(0, 50, 400), "p": rng.integers(0, 8, 400)})
    df["n"] = -rng.integers(0, 3, 400)  # a negative key column: offsets by its minimum
    for frame in (
        df,
        df.sort_values(["s", "p"], ignore_index=True),
    ):  # unsorted: one int64; sorted: neighbours
        for key in (["s", "p"], ["s", "p", "n"]):
            want = frame.duplicated(key, keep=False).to_numpy()
            assert want.any() and (duplicated_keys(frame, key) == want).all()
    uniq = df.drop_duplicates(["s", "p"]).sort_values(["s", "p"], ignore_index=True)
    assert not duplicated_keys(uniq, ["s", "p"]).any()
    assert not duplicated_keys(uniq.sample(frac=1, random_state=0), ["s", "p"]).any()  # unique, unsorted
    one = pd.concat([uniq, uniq.iloc[[5]]], ignore_index=True).sample(frac=1, random_state=1)
    assert duplicated_keys(one, ["s", "p"]).sum() == 2  # one repeat, far apart: both rows
    assert duplicated_keys(pd.DataFrame({"s": ["a", "a"]}), ["s"]).tolist() == [True, True]  # not integers


def test_funnel_counts_equal_a_recount_by_merge(tiny_tables, tiny_world):
    """Applies without an earlier view of the same item by the same seeker, counted by the packed-key
    funnel check and by a plain merge of the events with their first views."""
    t = _copy(tiny_tables)
    ev = t["events"]
    views = ev.index[(ev["event_type"] == "view") & (ev["item_type"] == "posting")]
    t["events"] = ev.drop(views[::7]).reset_index(drop=True)  # every 7th posting view lost
    e = t["events"]
    first_view = e[e["event_type"] == "view"].groupby(["seeker_id", "item_type", "item_id"])["ts"].min()
    ap = e[e["event_type"] == "apply"].join(
        first_view.rename("seen"), on=["seeker_id", "item_type", "item_id"]
    )
    want = int((ap["seen"].isna() | (ap["seen"] > ap["ts"])).sum())
    assert want > 0
    v = _first(validate_tables(t, *_span(tiny_world)), "action_without_view")
    assert v.n_rows == want


def test_id_index_membership_and_lookups_equal_pandas_hashing():
    """The array-indexed foreign-key check and lookups give what ``isin`` / ``reindex`` give: absent ids,
    ids below and above the range, nulls, negative ids; a range too sparse for an array falls back."""
    import numpy as np

    from jobcare.contracts import NAT, _lookup, _not_in
    from jobcare.ids import IdIndex

    rng = np.random.default_rng(1)
    ref = pd.Series(rng.choice(np.arange(-50, 5000), 3000, replace=False))
    index = IdIndex.build(ref.to_numpy())
    values = pd.Series(rng.integers(-80, 5100, 20_000))
    want = (~values.isin(ref)).to_numpy()
    assert want.any() and not want.all()
    assert (_not_in(values, ref, index) == want).all()
    assert (_not_in(values, ref, None) == want).all()  # the hashing path, the same rule
    nullable = values.astype("Int64")
    nullable[::50] = pd.NA
    assert (_not_in(nullable, ref, index) == (~nullable.isin(ref) & nullable.notna()).to_numpy()).all()
    assert IdIndex.build(np.array([0, 10**12])) is None  # too sparse: pandas hashing instead
    dense_anyway = IdIndex.build(np.array([0, 10**6]), sparse=True)  # the item arrays' index: always
    assert dense_anyway.positions(np.array([10**6, 5, -1, 0])).tolist() == [1, -1, -1, 0]
    # lookups of datetime columns by id (one index for both), NaT where the id is absent
    when = pd.DataFrame(
        {"a": pd.date_range("2024-01-01", periods=len(ref), freq="h", tz="UTC")}, index=ref.to_numpy()
    )
    when["b"] = when["a"] + pd.Timedelta(days=1)
    got_a, got_b = _lookup(when, values)
    for got, col in ((got_a, "a"), (got_b, "b")):
        exp = pd.DatetimeIndex(when[col].reindex(values)).asi8
        assert (got == exp).all() and (got == NAT).sum() == want.sum()
    sparse = when.set_axis(when.index.to_numpy() * 10**9)  # too sparse for an array: pandas reindex
    got_a, _ = _lookup(sparse, values * 10**9)
    assert (got_a == pd.DatetimeIndex(sparse["a"].reindex(values * 10**9)).asi8).all()


def test_first_moments_equal_a_groupby_minimum():
    import numpy as np

    from jobcare.contracts import NAT, _first_moments

    rng = np.random.default_rng(2)
    keys = rng.integers(0, 500, 5000)
    ts = rng.integers(0, 10**9, 5000)
    want = pd.Series(ts).groupby(keys).min()
    wanted = np.arange(-5, 520)  # keys absent below, inside and above the range
    got = _first_moments(keys, ts)(wanted)
    assert (got == want.reindex(wanted, fill_value=NAT).to_numpy()).all()
    assert (got == NAT).sum() == 525 - want.size
    assert (_first_moments(np.zeros(0, np.int64), np.zeros(0, np.int64))(np.array([3])) == NAT).all()


def test_out_of_range_on_nullable_integers_counts_only_present_rows(tiny_tables, tiny_world):
    t = _copy(tiny_tables)
    pos = t["impressions"]["position"].astype("Int64")
    pos[[0, 1]] = [100, -1]  # both outside [0, 99]
    pos[2] = pd.NA
    t["impressions"]["position"] = pos
    vs = validate_tables(t, *_span(tiny_world))
    v = [v for v in vs if v.rule == "out_of_range" and v.column == "position"]
    assert v and v[0].n_rows == 2 and {e["row"] for e in v[0].examples} == {0, 1}
    assert _first(vs, "null_value").column == "position"


def test_unique_sorted_equals_numpys_unique():
    import numpy as np

    from jobcare.ids import unique_sorted

    rng = np.random.default_rng(0)
    for a in (
        rng.integers(-50, 50, 1000),
        rng.integers(0, 2**40, 500),
        np.array([3, 3, 3]),
        np.array([], int),
    ):
        got = unique_sorted(a)
        assert got.tolist() == np.unique(a).tolist() and got.dtype == a.dtype
