"""Feature tables on hand-built data: rolling counts and competencies use only earlier events."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.tables import seeker_activity, seeker_competency

T = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731


def _events(rows):
    return pd.DataFrame(rows, columns=["seeker_id", "item_type", "item_id", "event_type", "ts"]).assign(
        ts=lambda d: pd.to_datetime(d["ts"], utc=True, format="ISO8601")
    )


def test_rolling_activity_counts_only_events_before_the_snapshot_day():
    ev = _events(
        [
            (1, "posting", 10, "view", "2024-01-10 09:00"),
            (1, "posting", 10, "apply", "2024-01-10 09:05"),
            (1, "posting", 11, "view", "2024-01-20 10:00"),
            (2, "course", 3, "enrol", "2024-01-12 12:00"),
        ]
    )
    seekers = pd.DataFrame(
        {"seeker_id": [1, 2, 3], "registered_at": pd.to_datetime(["2024-01-01"] * 3, utc=True)}
    )
    act = seeker_activity(ev, seekers, T("2024-12-31"))
    s1 = act[act["seeker_id"] == 1].set_index("event_timestamp")
    # registration row: all zero
    assert s1.loc[T("2024-01-01"), ["views_7d", "applies_90d"]].tolist() == [0, 0]
    # the snapshot at 00:00 of 2024-01-11 sees the view and apply of 2024-01-10
    r = s1.loc[T("2024-01-11")]
    assert (r["views_7d"], r["applies_7d"], r["views_30d"], r["applies_90d"]) == (1, 1, 1, 1)
    # 2024-01-10 events leave the 7-day window on 2024-01-18
    r = s1.loc[T("2024-01-18")]
    assert (r["views_7d"], r["applies_7d"], r["views_30d"]) == (0, 0, 1)
    r = s1.loc[T("2024-01-21")]
    assert (r["views_7d"], r["views_30d"], r["applies_30d"]) == (1, 2, 1)
    # no snapshot counts an event of its own day or later
    assert not (s1.index == T("2024-01-10")).any()
    # after 90 days everything has left every window
    r = s1.loc[T("2024-04-20")]
    assert r[[c for c in s1.columns if c.endswith(("_7d", "_30d", "_90d"))]].sum() == 0
    s2 = act[act["seeker_id"] == 2].set_index("event_timestamp")
    assert s2.loc[T("2024-01-13"), "enrolments_7d"] == 1
    assert (act["seeker_id"] == 3).sum() == 1  # no events: only the registration row


def test_competency_rows_change_when_a_course_is_completed():
    t = {
        "seekers": pd.DataFrame(
            {"seeker_id": [0, 1], "registered_at": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True)}
        ),
        "seeker_competency_events": pd.DataFrame(
            {
                "seeker_id": [0, 0, 0],
                "unit_id": [5, 7, 5],
                "level": [2, 1, 4],
                "ts": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:00", "2024-03-01 02:00"], utc=True),
                "source": ["initial", "initial", "course"],
                "source_id": [-1, -1, 9],
            }
        ),
        "seeker_certificates": pd.DataFrame(
            {"seeker_id": [1], "certificate_id": [4], "acquired_at": pd.to_datetime(["2024-02-01"], utc=True)}
        ),
        "events": _events([(0, "course", 9, "complete", "2024-03-01 02:00")]),
        "occupation_units": pd.DataFrame(
            {"occupation_id": [0, 1], "unit_id": [5, 7], "importance": [3, 3], "level": [2, 2]}
        ),
        "occupations": pd.DataFrame({"occupation_id": [0, 1], "group_id": [0, 1]}),
    }
    comp = seeker_competency(t, n_groups=2)
    s0 = comp[comp["seeker_id"] == 0].set_index("event_timestamp")
    assert s0.loc[T("2024-01-01"), "unit_ids"] == [5, 7]
    assert s0.loc[T("2024-01-01"), "unit_levels"] == [2, 1]
    after = s0.loc[T("2024-03-01 02:00")]
    assert after["unit_levels"] == [4, 1] and after["n_courses_completed"] == 1
    assert after["units_by_group"] == [1, 1]
    assert after["mean_unit_level"] == pytest.approx(2.5)
    s1 = comp[comp["seeker_id"] == 1].set_index("event_timestamp")
    assert s1.loc[T("2024-01-02"), "n_units"] == 0  # empty state at registration
    assert s1.loc[T("2024-02-01"), "certificate_ids"] == [4]


def test_views_are_split_into_groups_of_about_equal_cost_and_parallel_needs_redis():
    from pydantic import ValidationError

    from features.store import view_groups
    from jobcare.config import FeaturesConfig

    # national scale: four seeker views of 1M entities each, five small item views
    cost = {"profile": 10**6, "psych": 10**6, "competency": 10**6, "activity": 10**6, "posting": 2 * 10**5}
    cost |= {"course": 3000, "cert": 300, "occ": 400, "popularity": 2 * 10**5}
    groups = view_groups(cost, 2)
    assert sorted(v for g in groups for v in g) == sorted(cost)  # every view once
    loads = [sum(cost[v] for v in g) for g in groups]
    assert abs(loads[0] - loads[1]) <= 3000  # 2.2M vs 2.2M (+/- the small ones)
    assert [len(set(g) & {"profile", "psych", "competency", "activity"}) for g in groups] == [2, 2]
    assert view_groups({"a": 5}, 3) == [["a"]]  # no empty group
    with pytest.raises(ValidationError, match="materialize_workers 2 needs profile production"):
        FeaturesConfig(materialize_workers=2)
    assert FeaturesConfig(profile="production", materialize_workers=2).materialize_workers == 2


def _random_competency_world(seed: int, n_seekers: int = 300) -> dict:
    """Seekers with registration-time units, later unit events (levels up and down, the same unit twice at
    one moment, ties with certificates and completions), certificates acquired twice, and seekers with
    nothing at all."""
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2024-01-01", tz="UTC")
    reg = day + pd.to_timedelta(rng.integers(0, 30, n_seekers), unit="D")
    n_ev = 6 * n_seekers
    ev_seeker = rng.integers(0, n_seekers - 20, n_ev)  # the last 20 seekers have no events
    # few distinct moments, so that many rows share one (same unit twice, units with certificates)
    ev_ts = reg[ev_seeker] + pd.to_timedelta(rng.integers(0, 4, n_ev) * 7, unit="D")
    n_c = n_seekers
    c_seeker = rng.integers(0, n_seekers - 20, n_c)
    c_ts = reg[c_seeker] + pd.to_timedelta(rng.integers(0, 4, n_c) * 7, unit="D")
    n_done = n_seekers // 2
    d_seeker = rng.integers(0, n_seekers - 20, n_done)
    d_ts = reg[d_seeker] + pd.to_timedelta(rng.integers(0, 4, n_done) * 7, unit="D")
    units = 12
    return {
        "seekers": pd.DataFrame({"seeker_id": np.arange(n_seekers), "registered_at": reg}),
        "seeker_competency_events": pd.DataFrame(
            {
                "seeker_id": ev_seeker,
                "unit_id": rng.integers(0, units, n_ev),
                "level": rng.integers(0, 5, n_ev),
                "ts": ev_ts,
                "source": "course",
                "source_id": -1,
            }
        ),
        "seeker_certificates": pd.DataFrame(
            {"seeker_id": c_seeker, "certificate_id": rng.integers(0, 6, n_c), "acquired_at": c_ts}
        ),
        "events": _events(
            [(int(s), "course", 1, "complete", str(t)) for s, t in zip(d_seeker, d_ts)]
            + [(0, "posting", 3, "apply", str(day))]
        ),
        "occupation_units": pd.DataFrame(
            {"occupation_id": np.arange(units) % 4, "unit_id": np.arange(units), "importance": 3, "level": 2}
        ),
        "occupations": pd.DataFrame({"occupation_id": np.arange(4), "group_id": [0, 1, 2, 1]}),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_competency_table_equals_the_row_by_row_build(seed):
    """The vectorised build gives the very table of the loop it replaced (tests/reference_competency.py),
    Parquet round trip included: same rows in the same order, lists, counts and means."""
    from jobcare.world.io import to_arrow
    from tests.reference_competency import reference_seeker_competency

    t = _random_competency_world(seed)
    got, want = seeker_competency(t, n_groups=3), reference_seeker_competency(t, n_groups=3)
    assert len(got) == len(want) > 300  # more rows than seekers: states change after registration
    assert (got["n_units"] > 0).any() and (got["n_certificates"] > 0).any()
    assert (got["n_courses_completed"] > 1).any()
    assert to_arrow(got).equals(to_arrow(want))


def _random_events(seed: int, n: int = 3000) -> pd.DataFrame:
    """Events of 40 seekers on 30 postings over 200 days, many on the same day and on the windows' edges."""
    rng = np.random.default_rng(seed)
    day0 = pd.Timestamp("2024-01-01", tz="UTC")
    days = rng.integers(0, 200, n)
    return pd.DataFrame(
        {
            "seeker_id": rng.integers(0, 40, n),
            "item_type": rng.choice(["posting", "course"], n, p=[0.8, 0.2]),
            "item_id": rng.integers(0, 30, n),
            "event_type": rng.choice(["view", "apply", "hire", "enrol", "register"], n),
            "ts": day0 + pd.to_timedelta(days * 86_400 + rng.integers(0, 86_400, n), unit="s"),
        }
    )


def _count(ev: pd.DataFrame, key: str, k, et: str, day: int, w: int | None) -> int:
    """Events of key ``k`` and type ``et`` on days [day - w, day - 1] (every earlier day if w is None)."""
    d = np.floor((ev["ts"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds() / 86_400).astype(int)
    m = (ev[key] == k) & (ev["event_type"] == et) & (d < day) & ((d >= day - w) if w else True)
    return int(m.sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_rolling_counts_equal_a_count_of_the_events_per_snapshot(seed):
    """Every snapshot of seeker_activity and posting_popularity counts exactly the events of its key on
    the days before it within each window (a window one day short, or a count that sees its own day,
    fails here); a seeker gets a snapshot the day after an event and the day it leaves each window."""
    from features.tables import posting_popularity

    ev = _random_events(seed)
    # seeker 41 registers at the very moment of a snapshot (midnight after an event): its registration row
    # must still come first, as a stable sort of registration rows before snapshots would put it
    ev.loc[len(ev)] = (41, "posting", 1, "view", pd.Timestamp("2024-01-10 08:00", tz="UTC"))
    registered = [pd.Timestamp("2023-12-01", tz="UTC")] * 41 + [pd.Timestamp("2024-01-11", tz="UTC")]
    seekers = pd.DataFrame({"seeker_id": np.arange(42)[::-1], "registered_at": registered[::-1]})
    act = seeker_activity(ev, seekers, pd.Timestamp("2024-12-31", tz="UTC"))
    snaps = act[act["event_timestamp"] > pd.Timestamp("2023-12-01", tz="UTC")]
    assert (act["seeker_id"] == 40).sum() == 1  # no events: only the registration row
    order = act[["seeker_id", "event_timestamp"]]
    assert order.equals(order.sort_values(["seeker_id", "event_timestamp"], ignore_index=True))
    heads = act.groupby("seeker_id").head(1).set_index("seeker_id")
    assert (heads["event_timestamp"] == pd.Series(registered, index=range(42))).all()
    assert (heads.drop(columns=["event_timestamp", "created_timestamp"]) == 0).all().all()
    s41 = act[act["seeker_id"] == 41]
    assert s41["event_timestamp"].tolist()[:2] == [pd.Timestamp("2024-01-11", tz="UTC")] * 2
    assert s41["views_7d"].tolist()[:2] == [0, 1]
    kinds = {"views": "view", "applies": "apply", "hires": "hire", "enrolments": "enrol"}
    checked = 0
    for r in snaps[snaps["seeker_id"] < 41].sample(150, random_state=seed).itertuples():
        day = int((r.event_timestamp - pd.Timestamp(0, tz="UTC")).total_seconds() // 86_400)
        for name, et in kinds.items():
            for w in (7, 30, 90):
                assert getattr(r, f"{name}_{w}d") == _count(ev, "seeker_id", r.seeker_id, et, day, w), (
                    r.seeker_id,
                    day,
                    name,
                    w,
                )
                checked += getattr(r, f"{name}_{w}d") > 0
    assert checked > 300  # most checks are of non-zero counts
    s0 = ev[ev["seeker_id"] == 0]
    first = int(np.floor((s0["ts"].min() - pd.Timestamp(0, tz="UTC")).total_seconds() / 86_400))
    days0 = set((snaps.loc[snaps["seeker_id"] == 0, "event_timestamp"] - pd.Timestamp(0, tz="UTC")).dt.days)
    assert {first + 1, first + 8, first + 31, first + 91} <= days0

    postings = pd.DataFrame(
        {
            "posting_id": np.arange(30),
            "headcount": np.arange(30) % 4 + 1,
            "open_at": pd.Timestamp("2024-02-01 09:00", tz="UTC") + pd.to_timedelta(np.arange(30), unit="D"),
            "close_at": pd.Timestamp("2024-04-01 18:00", tz="UTC") + pd.to_timedelta(np.arange(30), unit="D"),
        }
    )
    pop = posting_popularity(postings, ev)
    pev = ev[ev["item_type"] == "posting"].rename(columns={"item_id": "posting_id"})
    for r in pop.sample(150, random_state=seed).itertuples():
        day = int((r.event_timestamp - pd.Timestamp(0, tz="UTC")).total_seconds() // 86_400)
        if r.event_timestamp.hour:  # the all-zero row at the opening moment
            assert (r.views_7d, r.applies_total) == (0, 0)
            continue
        applies = _count(pev, "posting_id", r.posting_id, "apply", day, None)
        assert (r.views_7d, r.applies_7d, r.applies_30d, r.applies_total) == (
            _count(pev, "posting_id", r.posting_id, "view", day, 7),
            _count(pev, "posting_id", r.posting_id, "apply", day, 7),
            _count(pev, "posting_id", r.posting_id, "apply", day, 30),
            applies,
        )
        assert r.applies_per_headcount == np.float32(applies / (r.posting_id % 4 + 1))
    assert pop["applies_total"].max() > 5


def test_rolling_counts_name_timestamps_outside_their_range():
    from features.tables import FeatureTableError

    ev = _events([(1, "posting", 10, "view", "1970-01-05 09:00"), (1, "posting", 10, "view", "2024-01-10")])
    seekers = pd.DataFrame({"seeker_id": [1], "registered_at": pd.to_datetime(["1970-01-01"], utc=True)})
    with pytest.raises(FeatureTableError, match=r"1 timestamp\(s\) outside .* e.g. 1970-01-05"):
        seeker_activity(ev, seekers, T("2024-12-31"))
