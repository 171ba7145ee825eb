"""Build the Parquet feature tables behind the Feast data sources from a world's tables.

Point-in-time rules: profile rows are stamped at registration; a competency row is stamped at the
moment the competency changed; rolling counts are daily snapshots stamped 00:00 UTC of day D that
count only events on days before D. Feast's as-of join then returns, for an entity row at time t,
the latest row stamped at or before t, so no feature uses an event after t.
"""

from __future__ import annotations

import logging
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from jobcare.errors import JobcareError
from jobcare.ids import unique_sorted
from jobcare.stages import stage
from jobcare.world.io import read_manifest, read_tables, write_table
from jobcare.world.taxonomy import GRADES, RIASEC, WORK_VALUES

log = logging.getLogger(__name__)
DAY_S = 86_400
WINDOWS = (7, 30, 90)
TABLES = [
    "seeker_profile",
    "seeker_psych",
    "seeker_competency",
    "seeker_activity",
    "posting_attributes",
    "posting_popularity",
    "course_attributes",
    "certificate_attributes",
    "occupation_profile",
]
WORLD_TABLES = [
    "seekers",
    "occupations",
    "occupation_units",
    "occupation_groups",
    "postings",
    "posting_certificates",
    "courses",
    "course_units",
    "certificates",
    "certificate_units",
    "events",
    "seeker_competency_events",
    "seeker_certificates",
]


def _days(ts: pd.Series) -> np.ndarray:
    return ts.to_numpy(dtype="datetime64[us]").astype("int64") / (DAY_S * 1e6)


def _stamp(df: pd.DataFrame, ts) -> pd.DataFrame:
    df["event_timestamp"] = pd.to_datetime(ts, utc=True)
    df["created_timestamp"] = df["event_timestamp"]
    return df


def _lists(df: pd.DataFrame, key: str, cols: list[str], index) -> dict[str, pd.Series]:
    g = df.sort_values([key, cols[0]]).groupby(key)
    return {
        c: g[c]
        .apply(lambda s: [int(x) for x in s])
        .reindex(index)
        .apply(lambda v: v if isinstance(v, list) else [])
        for c in cols
    }


def build_feature_tables(world: str | Path, out: str | Path) -> dict[str, int]:
    """Write every feature table of :data:`TABLES` to ``out``; return their row counts."""
    out = Path(out)
    t = read_tables(world, WORLD_TABLES)
    span = read_manifest(world)["span"]
    start, end = pd.Timestamp(span["start"]), pd.Timestamp(span["end"])
    builders = {
        "seeker_profile": lambda: seeker_profile(t["seekers"]),
        "seeker_psych": lambda: seeker_psych(t["seekers"]),
        "seeker_competency": lambda: seeker_competency(t, len(t["occupation_groups"])),
        "seeker_activity": lambda: seeker_activity(t["events"], t["seekers"], end),
        "posting_attributes": lambda: posting_attributes(t["postings"], t["posting_certificates"]),
        "posting_popularity": lambda: posting_popularity(t["postings"], t["events"]),
        "course_attributes": lambda: course_attributes(t["courses"], t["course_units"]),
        "certificate_attributes": lambda: certificate_attributes(t, start, end),
        "occupation_profile": lambda: occupation_profile(t["occupations"], t["occupation_units"], start),
    }
    rows = {}
    for name, build in builders.items():
        with stage(f"feature_tables/{name}"):  # built and written, one table at a time
            df = build()
            write_table(df, out / f"{name}.parquet")
        rows[name] = len(df)
        log.info("feature table %s: %d rows", name, len(df))
        del df
    return rows


def seeker_profile(s: pd.DataFrame) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "seeker_id": s["seeker_id"].astype("int64"),
            "region_id": s["region_id"].astype("int64"),
            "education_level": s["education_level"].astype("int64"),
            "major_id": s["major_id"].astype("int64"),
            "career_years": s["career_years"].astype("int64"),
            "last_occupation_id": s["last_occupation_id"].fillna(-1).astype("int64"),
            "desired_occupation_ids": s["desired_occupation_ids"].apply(lambda v: [int(x) for x in v]),
            "reservation_wage": s["reservation_wage"].astype("float32"),
            "registered_days": _days(s["registered_at"]).astype("float64"),
            "gender": s["gender"].astype(str),
            "age": s["age"].astype("int64"),
        }
    )
    return _stamp(df, s["registered_at"])


def seeker_psych(s: pd.DataFrame) -> pd.DataFrame:
    df = s[["seeker_id", *RIASEC, *WORK_VALUES]].astype({c: "float32" for c in RIASEC + WORK_VALUES})
    df["seeker_id"] = df["seeker_id"].astype("int64")
    return _stamp(df, s["registered_at"])


def seeker_competency(t: dict[str, pd.DataFrame], n_groups: int) -> pd.DataFrame:
    """One row per (seeker, moment its units, certificates or completed courses changed): the full state.

    The state at a moment: every unit the seeker has (its highest level so far), the certificates acquired
    so far (each once), the courses completed so far, all including the moment's own rows. Array
    arithmetic over the sorted rows, no loop per row (the national world has 18.4M competency events): each
    (seeker, unit) level and each first acquisition of a certificate holds from its moment until the
    seeker's next change of it, and is repeated over those moments."""
    unit_group = _unit_groups(t)
    ce = t["seeker_competency_events"][["seeker_id", "ts", "unit_id", "level"]].assign(kind=0, cert=-1)
    reg = t["seekers"][["seeker_id", "registered_at"]].rename(columns={"registered_at": "ts"})
    ce = pd.concat([reg.assign(kind=0, cert=-1, unit_id=-1, level=0), ce], ignore_index=True)
    sc = t["seeker_certificates"].rename(columns={"acquired_at": "ts"})[["seeker_id", "ts", "certificate_id"]]
    sc = sc.rename(columns={"certificate_id": "cert"}).assign(kind=1, unit_id=-1, level=0)
    ev = t["events"]
    done = ev.loc[ev["event_type"] == "complete", ["seeker_id", "ts"]].assign(
        kind=2, unit_id=-1, level=0, cert=-1
    )
    allc = pd.concat([ce, sc, done], ignore_index=True).sort_values(
        ["seeker_id", "ts", "kind"], kind="stable"
    )
    sid = allc["seeker_id"].to_numpy(np.int64)
    ts = allc["ts"]
    tsv = ts.to_numpy(dtype="datetime64[us]").astype(np.int64)
    kind, unit, level, cert = (allc[c].to_numpy(np.int64) for c in ("kind", "unit_id", "level", "cert"))
    n = sid.size
    # moments: runs of one (seeker, ts); each seeker's moments are consecutive
    first = np.r_[True, (sid[1:] != sid[:-1]) | (tsv[1:] != tsv[:-1])]
    mom = np.cumsum(first) - 1
    first_rows = np.flatnonzero(first)
    last_rows = np.r_[first_rows[1:], n] - 1
    n_mom = first_rows.size
    m_sid = sid[first_rows]
    new_seeker = np.r_[True, m_sid[1:] != m_sid[:-1]]
    seeker_end = np.r_[np.flatnonzero(new_seeker)[1:], n_mom]  # per seeker: one past its last moment
    m_end = seeker_end[np.cumsum(new_seeker) - 1]  # per moment: one past its seeker's last moment
    # completed courses so far: a running count per seeker, read at each moment's last row
    courses = np.cumsum(kind == 2)
    row_seeker_first = first_rows[np.flatnonzero(new_seeker)][np.cumsum(new_seeker) - 1]  # per moment
    before = np.where(row_seeker_first > 0, courses[np.maximum(row_seeker_first - 1, 0)], 0)
    n_courses = courses[last_rows] - before
    # units: per (seeker, unit), the running maximum level, one entry per moment it was touched
    u = (kind == 0) & (unit >= 0)
    um, uu, ul, us = mom[u], unit[u], level[u], sid[u]
    o = np.lexsort((um, uu, us))  # by seeker, unit, then time (moments rise with time within a seeker)
    um, uu, ul = um[o], uu[o], ul[o]
    gid = np.cumsum(np.r_[True, (us[o][1:] != us[o][:-1]) | (uu[1:] != uu[:-1])]) - 1
    lo = int(ul.min()) if ul.size else 0
    span = int(ul.max()) - lo + 1 if ul.size else 1  # groups offset by span: one running max for all
    run = np.maximum.accumulate(gid * span + ul - lo) - gid * span + lo
    last = np.r_[(gid[1:] != gid[:-1]) | (um[1:] != um[:-1]), True]  # the moment's last row of a unit
    ug, um, uu, ul = gid[last], um[last], uu[last], run[last]
    u_mom, u_idx = _hold(ug, um, m_end)
    u_unit, u_level = uu[u_idx], ul[u_idx]
    o = np.lexsort((u_unit, u_mom))
    u_mom, u_unit, u_level = u_mom[o], u_unit[o], u_level[o]
    n_units = np.bincount(u_mom, minlength=n_mom)
    level_sum = np.bincount(u_mom, weights=u_level, minlength=n_mom)
    mean_level = np.divide(level_sum, n_units, out=np.zeros(n_mom), where=n_units > 0)
    by_group = np.bincount(u_mom * n_groups + unit_group[u_unit], minlength=n_mom * n_groups).reshape(
        n_mom, n_groups
    )
    # certificates: the first acquisition of each (seeker, certificate)
    c = kind == 1
    cm, cc, cs = mom[c], cert[c], sid[c]
    o = np.lexsort((cm, cc, cs))
    cm, cc, cs = cm[o], cc[o], cs[o]
    keep = np.r_[True, (cs[1:] != cs[:-1]) | (cc[1:] != cc[:-1])]
    cm, cc = cm[keep], cc[keep]
    c_mom, c_idx = _hold(np.arange(cm.size), cm, m_end)
    c_cert = cc[c_idx]
    o = np.lexsort((c_cert, c_mom))
    c_mom, c_cert = c_mom[o], c_cert[o]
    n_certs = np.bincount(c_mom, minlength=n_mom)
    df = pd.DataFrame(
        {
            "seeker_id": m_sid,
            "unit_ids": _split(u_unit, n_units),
            "unit_levels": _split(u_level, n_units),
            "n_units": n_units.astype(np.int64),
            "mean_unit_level": mean_level.astype(np.float32),
            "units_by_group": by_group.tolist(),
            "certificate_ids": _split(c_cert, n_certs),
            "n_certificates": n_certs.astype(np.int64),
            "n_courses_completed": n_courses.astype(np.int64),
        }
    )
    return _stamp(df, ts.iloc[first_rows].reset_index(drop=True))


def _hold(group: np.ndarray, moment: np.ndarray, moment_end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries (sorted by ``group``, then ``moment``) each holding from its moment until the next entry of
    its group, the last until its seeker's end (``moment_end`` per moment): (moment, entry index) pairs
    for every moment an entry holds."""
    same_next = np.r_[group[1:] == group[:-1], False]
    until = np.where(same_next, np.r_[moment[1:], 0], moment_end[moment])
    lens = until - moment
    idx = np.repeat(np.arange(moment.size), lens)
    step = np.arange(idx.size) - np.repeat(np.cumsum(lens) - lens, lens)
    return moment[idx] + step, idx


def _split(values: np.ndarray, counts: np.ndarray) -> list:
    """``values`` cut into consecutive lists of ``counts`` (Python ints, as the Parquet list columns)."""
    return [a.tolist() for a in np.split(values, np.cumsum(counts)[:-1])]


def _unit_groups(t) -> np.ndarray:
    """Group of each unit: the occupation group that requires it most (hierarchy level 1)."""
    ou = t["occupation_units"].merge(t["occupations"][["occupation_id", "group_id"]], on="occupation_id")
    top = (
        ou.groupby(["unit_id", "group_id"])
        .size()
        .reset_index(name="n")
        .sort_values(["unit_id", "n", "group_id"], ascending=[True, False, True])
        .drop_duplicates("unit_id")
    )
    n_units = int(max(t["seeker_competency_events"]["unit_id"].max(), ou["unit_id"].max())) + 1
    g = np.zeros(n_units, dtype=np.int64)
    g[top["unit_id"].to_numpy()] = top["group_id"].to_numpy()
    return g


_DAY_BITS = 16  # (key, day) packed as key << 16 | day: days since 1970 stay below 2**16 until 2149
_DAY_MASK = 2**_DAY_BITS - 1


class FeatureTableError(JobcareError):
    """A world's rows cannot be turned into a feature table."""


def _pack(key: np.ndarray, day: np.ndarray) -> np.ndarray:
    """(key, day) as one sortable integer; a window's first day stays within its key's range."""
    day = np.asarray(day, dtype=np.int64)
    lo, hi = max(WINDOWS) + 1, 2**_DAY_BITS - max(WINDOWS) - 2
    bad = (day < lo) | (day > hi)
    if bad.any():
        first = pd.Timestamp(int(day[bad][0]) * DAY_S, unit="s", tz="UTC")
        raise FeatureTableError(
            f"rolling counts: {int(bad.sum())} timestamp(s) outside {pd.Timestamp(lo * DAY_S, unit='s')}"
            f" .. {pd.Timestamp(hi * DAY_S, unit='s')} (days since 1970 packed in 16 bits), e.g. {first}"
        )
    return (np.asarray(key, dtype=np.int64) << _DAY_BITS) | day


def _rolling_counts(
    codes: np.ndarray,
    daily: np.ndarray,
    ev_kind: np.ndarray,
    kinds: list[str],
    snaps: np.ndarray,
    sums: dict[str, tuple[str, int | None]],
) -> dict[str, np.ndarray]:
    """Per snapshot (a sorted packed (key, day)), the events of each kind of its key on days
    [day - w, day - 1] (w None: every earlier day). ``codes``: each event's packed (key, day);
    ``daily``: their distinct values, sorted (:func:`unique_sorted`, which the caller needs too).

    A snapshot's count is the difference of two prefix counts of its kind's events, found by binary
    searches of sorted arrays. A join would pair each snapshot with every event of its
    window (the national world: 14.7M snapshots with up to 90 days of events each)."""
    prefix = {}  # per kind, at daily index j: the kind's events before daily[j] (and all of them, last)
    for kind in kinds:
        of_kind = np.sort(codes[ev_kind == kind])
        prefix[kind] = np.append(np.searchsorted(of_kind, daily), len(of_kind))
    before = np.searchsorted(daily, snaps)  # daily counts of days < the snapshot's day
    first = {}  # per window: the first daily count inside it
    for _, w in sums.values():
        if w not in first:
            lower = (snaps >> _DAY_BITS) << _DAY_BITS if w is None else snaps - w
            first[w] = np.searchsorted(daily, lower)
    return {name: prefix[kind][before] - prefix[kind][first[w]] for name, (kind, w) in sums.items()}


def _first_rows_and_snapshots(
    key_name: str, keys, at: pd.Series, snaps: np.ndarray, counts: dict[str, np.ndarray]
) -> pd.DataFrame:
    """Each key's all-zero row at ``at`` (its registration or opening) and the snapshots (sorted packed
    (key, day), stamped at midnight), in key and time order, a key's first row before a snapshot of the
    same moment: the order a stable sort of the two gives, found by one binary search per key."""
    keys = np.asarray(keys, np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    at_ns = pd.to_datetime(at, utc=True).dt.tz_localize(None).to_numpy("datetime64[ns]").view("int64")[order]
    day_ns = DAY_S * 10**9
    first = np.searchsorted(snaps, _pack(keys, -(-at_ns // day_ns))) + np.arange(len(keys))
    is_first = np.zeros(len(keys) + len(snaps), bool)
    is_first[first] = True
    is_snap = ~is_first
    key = np.empty(len(is_first), np.int64)
    key[first], key[is_snap] = keys, snaps >> _DAY_BITS
    ts = np.empty(len(is_first), np.int64)
    ts[first], ts[is_snap] = at_ns, (snaps & _DAY_MASK) * day_ns
    columns = {key_name: key}
    for name, c in counts.items():
        columns[name] = np.zeros(len(is_first), c.dtype)
        columns[name][is_snap] = c
    df = pd.DataFrame(columns)
    return _stamp(df, pd.to_datetime(ts, utc=True))


def seeker_activity(events: pd.DataFrame, seekers: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Daily snapshots of rolling 7/30/90-day counts, only on days where some count changes (the day after
    an event, and the days it leaves each window), plus an all-zero row at registration (Feast's file
    offline store drops an entity row whose entity has feature rows only after it, so every entity gets a
    row from its first moment)."""
    kinds = {"view": "views", "apply": "applies", "hire": "hires", "enrol": "enrolments"}
    m = events["event_type"].isin(list(kinds)).to_numpy()
    codes = _pack(events["seeker_id"].to_numpy()[m], np.floor(_days(events.loc[m, "ts"])).astype("int64"))
    last_day = int(np.floor(_days(pd.Series([end]))[0]))
    daily = unique_sorted(codes)  # the (seeker, day) pairs with an event
    snaps = unique_sorted(np.concatenate([daily + o for o in (1, *(w + 1 for w in WINDOWS))]))
    snaps = snaps[(snaps & _DAY_MASK) <= last_day]
    sums = {f"{name}_{w}d": (kind, w) for w in WINDOWS for kind, name in kinds.items()}
    kind = events["event_type"].to_numpy()[m]
    counts = _rolling_counts(codes, daily, kind, list(kinds), snaps, sums)
    return _first_rows_and_snapshots(
        "seeker_id", seekers["seeker_id"], seekers["registered_at"], snaps, counts
    )


def posting_attributes(p: pd.DataFrame, pc: pd.DataFrame) -> pd.DataFrame:
    certs = _lists(pc, "posting_id", ["certificate_id"], p["posting_id"])["certificate_id"]
    df = pd.DataFrame(
        {
            "posting_id": p["posting_id"].astype("int64"),
            "employer_id": p["employer_id"].astype("int64"),
            "occupation_id": p["occupation_id"].astype("int64"),
            "region_id": p["region_id"].astype("int64"),
            "wage": p["wage"].astype("float32"),
            "headcount": p["headcount"].astype("int64"),
            "education_required": p["education_required"].astype("int64"),
            "career_required": p["career_required"].astype("int64"),
            "required_certificate_ids": certs.to_numpy(),
            "open_days": _days(p["open_at"]).astype("float64"),
            "close_days": _days(p["close_at"]).astype("float64"),
        }
    )
    return _stamp(df, p["open_at"])


def posting_popularity(p: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Snapshots at every midnight while the posting is open."""
    d0 = np.ceil(_days(p["open_at"])).astype("int64")
    n = np.maximum(np.floor(_days(p["close_at"])).astype("int64") - d0 + 1, 0)
    within = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    snaps = np.repeat(_pack(p["posting_id"].to_numpy(), d0), n) + within
    order = np.argsort(snaps, kind="stable")
    snaps, headcount = snaps[order], np.repeat(p["headcount"].to_numpy(np.int64), n)[order]
    m = ((events["item_type"] == "posting") & events["event_type"].isin(["view", "apply"])).to_numpy()
    sums = {
        "views_7d": ("view", 7),
        "applies_7d": ("apply", 7),
        "applies_30d": ("apply", 30),
        "applies_total": ("apply", None),
    }
    codes = _pack(events["item_id"].to_numpy()[m], np.floor(_days(events.loc[m, "ts"])).astype("int64"))
    kind = events["event_type"].to_numpy()[m]
    counts = _rolling_counts(codes, unique_sorted(codes), kind, ["view", "apply"], snaps, sums)
    counts["applies_per_headcount"] = (counts["applies_total"] / headcount).astype(np.float32)
    return _first_rows_and_snapshots("posting_id", p["posting_id"], p["open_at"], snaps, counts)


def course_attributes(c: pd.DataFrame, cu: pd.DataFrame) -> pd.DataFrame:
    lists = _lists(cu, "course_id", ["unit_id", "level"], c["course_id"])
    df = pd.DataFrame(
        {
            "course_id": c["course_id"].astype("int64"),
            "provider_id": c["provider_id"].astype("int64"),
            "region_id": c["region_id"].astype("int64"),
            "target_occupation_id": c["target_occupation_id"].astype("int64"),
            "capacity": c["capacity"].astype("int64"),
            "duration_days": c["duration_days"].astype("int64"),
            "recruit_start_days": _days(c["recruit_start_at"]).astype("float64"),
            "start_days": _days(c["start_at"]).astype("float64"),
            "completion_rate": c["completion_rate"].astype("float32"),
            "employment_rate": c["employment_rate"].astype("float32"),
            "unit_ids": lists["unit_id"].to_numpy(),
            "unit_levels": lists["level"].to_numpy(),
        }
    )
    return _stamp(df, c["recruit_start_at"])


def certificate_attributes(t, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Static certificate attributes with daily snapshots of their demand in open postings."""
    c, cu, p, pc = t["certificates"], t["certificate_units"], t["postings"], t["posting_certificates"]
    lists = _lists(cu, "certificate_id", ["unit_id", "level"], c["certificate_id"])
    static = pd.DataFrame(
        {
            "certificate_id": c["certificate_id"].astype("int64"),
            "grade_level": c["grade"].map({g: i + 1 for i, g in enumerate(GRADES)}).astype("int64"),
            "anchor_occupation_id": c["anchor_occupation_id"].astype("int64"),
            "pass_rate": c["pass_rate"].astype("float32"),
            "min_education": c["min_education"].astype("int64"),
            "unit_ids": lists["unit_id"].to_numpy(),
            "unit_levels": lists["level"].to_numpy(),
        }
    )
    d0, d1 = int(np.floor(_days(pd.Series([start]))[0])), int(np.floor(_days(pd.Series([end]))[0]))
    con = duckdb.connect()
    con.register(
        "p",
        pd.DataFrame({"posting_id": p["posting_id"], "o": _days(p["open_at"]), "c": _days(p["close_at"])}),
    )
    con.register("pc", pc)
    con.register("cert", static[["certificate_id"]])
    demand = con.execute(f"""
        WITH days AS (SELECT unnest(range({d0}, {d1} + 1)) AS sday),
        open AS (SELECT d.sday, p.posting_id FROM days d JOIN p ON p.o <= d.sday AND p.c > d.sday),
        n_open AS (SELECT sday, count(*) AS n FROM open GROUP BY sday),
        req AS (SELECT o.sday, pc.certificate_id, count(*) AS k FROM open o JOIN pc USING (posting_id)
                GROUP BY 1, 2)
        SELECT cert.certificate_id::BIGINT AS certificate_id, d.sday,
               coalesce(req.k, 0)::BIGINT AS open_postings_requiring,
               (coalesce(req.k, 0) / greatest(coalesce(n_open.n, 0), 1))::FLOAT AS demand_share
        FROM days d CROSS JOIN cert
        LEFT JOIN req ON req.sday = d.sday AND req.certificate_id = cert.certificate_id
        LEFT JOIN n_open ON n_open.sday = d.sday
        ORDER BY 1, 2""").df()
    con.close()
    df = demand.merge(static, on="certificate_id")
    return _stamp(df.drop(columns="sday"), pd.to_datetime(df["sday"] * DAY_S, unit="s", utc=True))


def occupation_profile(o: pd.DataFrame, ou: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    lists = _lists(ou, "occupation_id", ["unit_id", "importance", "level"], o["occupation_id"])
    df = pd.DataFrame(
        {
            "occupation_id": o["occupation_id"].astype("int64"),
            "group_id": o["group_id"].astype("int64"),
            "education_level": o["education_level"].astype("int64"),
            "job_zone": o["job_zone"].astype("int64"),
            "typical_wage": o["wage"].astype("float32"),
            "required_unit_ids": lists["unit_id"].to_numpy(),
            "required_unit_importance": lists["importance"].to_numpy(),
            "required_unit_levels": lists["level"].to_numpy(),
        }
    )
    for c in RIASEC + WORK_VALUES:
        df[f"occ_{c}"] = o[c].astype("float32").to_numpy()
    return _stamp(df, pd.Series([start - pd.Timedelta(days=365)] * len(df)))
