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
_WORLD_TABLES = [
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
    t = read_tables(world, _WORLD_TABLES)
    span = read_manifest(world)["span"]
    start, end = pd.Timestamp(span["start"]), pd.Timestamp(span["end"])
    built = {
        "seeker_profile": seeker_profile(t["seekers"]),
        "seeker_psych": seeker_psych(t["seekers"]),
        "seeker_competency": seeker_competency(t, len(t["occupation_groups"])),
        "seeker_activity": seeker_activity(t["events"], t["seekers"], end),
        "posting_attributes": posting_attributes(t["postings"], t["posting_certificates"]),
        "posting_popularity": posting_popularity(t["postings"], t["events"]),
        "course_attributes": course_attributes(t["courses"], t["course_units"]),
        "certificate_attributes": certificate_attributes(t, start, end),
        "occupation_profile": occupation_profile(t["occupations"], t["occupation_units"], start),
    }
    for name, df in built.items():
        write_table(df, out / f"{name}.parquet")
        log.info("feature table %s: %d rows", name, len(df))
    return {k: len(v) for k, v in built.items()}


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
    """One row per (seeker, moment its units, certificates or completed courses changed): the full state."""
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
    sid, ts = allc["seeker_id"].to_numpy(), allc["ts"].to_numpy()
    kind, unit, level, cert = (allc[c].to_numpy() for c in ("kind", "unit_id", "level", "cert"))
    rows = []
    n = len(allc)
    i = 0
    while i < n:
        s = sid[i]
        units: dict[int, int] = {}
        certs: set[int] = set()
        courses = 0
        while i < n and sid[i] == s:
            t_now = ts[i]
            while i < n and sid[i] == s and ts[i] == t_now:
                if kind[i] == 0:
                    u = int(unit[i])
                    if u >= 0:  # u == -1: the registration row (state may be empty)
                        units[u] = max(units.get(u, 0), int(level[i]))
                elif kind[i] == 1:
                    certs.add(int(cert[i]))
                else:
                    courses += 1
                i += 1
            ids = sorted(units)
            lv = [units[u] for u in ids]
            by_group = np.bincount(unit_group[ids], minlength=n_groups).tolist() if ids else [0] * n_groups
            rows.append(
                (
                    int(s),
                    t_now,
                    ids,
                    lv,
                    len(ids),
                    float(np.mean(lv)) if lv else 0.0,
                    by_group,
                    sorted(certs),
                    len(certs),
                    courses,
                )
            )
    df = pd.DataFrame(
        rows,
        columns=[
            "seeker_id",
            "ts",
            "unit_ids",
            "unit_levels",
            "n_units",
            "mean_unit_level",
            "units_by_group",
            "certificate_ids",
            "n_certificates",
            "n_courses_completed",
        ],
    )
    df = df.astype(
        {
            "seeker_id": "int64",
            "n_units": "int64",
            "mean_unit_level": "float32",
            "n_certificates": "int64",
            "n_courses_completed": "int64",
        }
    )
    return _stamp(df.drop(columns="ts"), df["ts"])


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


def seeker_activity(events: pd.DataFrame, seekers: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Daily snapshots of rolling 7/30/90-day counts, only on days where some count changes, plus an
    all-zero row at registration (Feast's file offline store drops an entity row whose entity has
    feature rows only after it, so every entity gets a row from its first moment)."""
    ev = events.loc[
        events["event_type"].isin(["view", "apply", "hire", "enrol"]), ["seeker_id", "event_type"]
    ]
    ev = ev.assign(day=np.floor(_days(events.loc[ev.index, "ts"])).astype("int64"))
    last_day = int(np.floor(_days(pd.Series([end]))[0]))
    aggs = ",\n".join(
        f"count(*) FILTER (WHERE e.event_type = '{et}' AND e.day >= s.sday - {w})::BIGINT AS {name}_{w}d"
        for w in WINDOWS
        for et, name in (("view", "views"), ("apply", "applies"), ("hire", "hires"), ("enrol", "enrolments"))
    )
    offsets = ", ".join(f"({o})" for o in (1, *(w + 1 for w in WINDOWS)))
    con = duckdb.connect()
    con.register("ev", ev)
    df = con.execute(f"""
        WITH snap AS (
            SELECT DISTINCT seeker_id, day + o AS sday FROM ev, (VALUES {offsets}) AS t(o)
            WHERE day + o <= {last_day})
        SELECT s.seeker_id::BIGINT AS seeker_id, s.sday, {aggs}
        FROM snap s LEFT JOIN ev e
          ON e.seeker_id = s.seeker_id AND e.day < s.sday AND e.day >= s.sday - {max(WINDOWS)}
        GROUP BY s.seeker_id, s.sday
        ORDER BY 1, 2""").df()
    con.close()
    snaps = _stamp(df.drop(columns="sday"), pd.to_datetime(df["sday"] * DAY_S, unit="s", utc=True))
    counts = [c for c in snaps.columns if c not in ("seeker_id", "event_timestamp", "created_timestamp")]
    zero = pd.DataFrame({c: np.zeros(len(seekers), dtype="int64") for c in counts})
    zero.insert(0, "seeker_id", seekers["seeker_id"].astype("int64").to_numpy())
    zero = _stamp(zero, seekers["registered_at"])
    return pd.concat([zero, snaps], ignore_index=True).sort_values(
        ["seeker_id", "event_timestamp"], ignore_index=True
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
    pp = pd.DataFrame(
        {
            "posting_id": p["posting_id"].astype("int64"),
            "headcount": p["headcount"],
            "d0": np.ceil(_days(p["open_at"])).astype("int64"),
            "d1": np.floor(_days(p["close_at"])).astype("int64"),
        }
    )
    m = (events["item_type"] == "posting") & events["event_type"].isin(["view", "apply"])
    ev = pd.DataFrame(
        {
            "posting_id": events.loc[m, "item_id"].astype("int64"),
            "event_type": events.loc[m, "event_type"],
            "day": np.floor(_days(events.loc[m, "ts"])).astype("int64"),
        }
    )
    con = duckdb.connect()
    con.register("pp", pp)
    con.register("ev", ev)
    df = con.execute("""
        WITH days AS (SELECT posting_id, headcount, unnest(range(d0, d1 + 1)) AS sday FROM pp)
        SELECT d.posting_id, d.sday,
          count(e.day) FILTER (WHERE e.event_type = 'view' AND e.day >= d.sday - 7)::BIGINT AS views_7d,
          count(e.day) FILTER (WHERE e.event_type = 'apply' AND e.day >= d.sday - 7)::BIGINT AS applies_7d,
          count(e.day) FILTER (WHERE e.event_type = 'apply' AND e.day >= d.sday - 30)::BIGINT AS applies_30d,
          count(e.day) FILTER (WHERE e.event_type = 'apply')::BIGINT AS applies_total,
          (count(e.day) FILTER (WHERE e.event_type = 'apply') / any_value(d.headcount))::FLOAT
            AS applies_per_headcount
        FROM days d LEFT JOIN ev e ON e.posting_id = d.posting_id AND e.day < d.sday
        GROUP BY d.posting_id, d.sday ORDER BY 1, 2""").df()
    con.close()
    snaps = _stamp(df.drop(columns="sday"), pd.to_datetime(df["sday"] * DAY_S, unit="s", utc=True))
    zero = pd.DataFrame(
        {
            "posting_id": pp["posting_id"],
            "views_7d": 0,
            "applies_7d": 0,
            "applies_30d": 0,
            "applies_total": 0,
            "applies_per_headcount": np.float32(0),
        }
    ).astype(snaps.dtypes.drop(["event_timestamp", "created_timestamp"]).to_dict())
    zero = _stamp(zero, p["open_at"])
    return pd.concat([zero, snaps], ignore_index=True).sort_values(
        ["posting_id", "event_timestamp"], ignore_index=True
    )


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
