"""The seeker_competency table built row by row (the implementation before it was vectorised), kept to
test :func:`features.tables.seeker_competency` against."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.tables import _stamp, _unit_groups


def reference_seeker_competency(t: dict[str, pd.DataFrame], n_groups: int) -> pd.DataFrame:
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
