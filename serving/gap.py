"""The competency gap between a seeker and an occupation, and the open courses and certificates that
close it (``POST /competency-gap``)."""

from __future__ import annotations

import numpy as np

from jobcare.competency import coverage


def competency_gap(state, catalog, ctx, occupation_id: int, seeker: dict) -> dict:
    """Required vs held units (levels, importance), the missing ones, the importance-weighted coverage and
    up to 5 recruiting courses and 5 certificates not held that reach the missing levels."""
    held = dict(zip(seeker["seeker_competency__unit_ids"], seeker["seeker_competency__unit_levels"]))
    units, imp, lvl = ctx.req_units[occupation_id], ctx.req_imp[occupation_id], ctx.req_lvl[occupation_id]
    req = [(int(u), float(i), int(lv)) for u, i, lv in zip(units, imp, lvl) if i > 0 and u < ctx.n_units]
    rows = [
        {
            "unit_id": u,
            "name": str(catalog.units.get(u, u)),
            "required_level": lv,
            "importance": i,
            "held_level": int(held.get(u, 0)),
        }
        for u, i, lv in sorted(req, key=lambda x: -x[1])
    ]
    missing = [r for r in rows if r["held_level"] < r["required_level"]]
    cov = (
        float(
            coverage(
                np.array([[r["held_level"] for r in rows]]),
                np.array([[r["required_level"] for r in rows]]),
                np.array([[r["importance"] for r in rows]]),
            )[0]
        )
        if rows
        else 1.0
    )
    need = {r["unit_id"]: r["required_level"] for r in missing}
    courses = state.arrays["course"]
    course_ok = state.base["course"] if "course" in state.base else courses.open_mask(state.as_of)
    certs = state.arrays["certificate"]
    held_pos = certs.positions(np.asarray(seeker["seeker_competency__certificate_ids"], dtype=np.int64))
    cert_ok = np.ones(len(certs), bool)
    cert_ok[held_pos[held_pos >= 0]] = False

    return {
        "occupation_id": occupation_id,
        "occupation": str(catalog.occupations.get(occupation_id)),
        "coverage": cov,
        "required": rows,
        "missing": missing,
        "courses": _closers(catalog, ctx, courses, np.flatnonzero(course_ok), need),
        "certificates": _closers(catalog, ctx, certs, np.flatnonzero(cert_ok), need),
    }


def _closers(catalog, ctx, items, idx: np.ndarray, need: dict, top: int = 5) -> list[dict]:
    """Items (positions ``idx`` of an ItemArrays) whose units reach the missing levels, most missing units
    closed first, ties by id."""
    if not need or idx.size == 0:
        return []
    required = np.full(ctx.n_units + 1, 99, np.int64)  # 99: a unit that is not missing
    required[list(need)] = list(need.values())
    units, levels = items.units[idx], items.unit_levels[idx]
    closes = (units < ctx.n_units) & (levels >= required[units])
    n = closes.sum(axis=1)
    order = np.lexsort((items.keys[idx], -n))
    out = []
    for j in order[:top]:
        if n[j] == 0:
            break
        iid = int(items.keys[idx[j]])
        out.append(
            {
                "id": iid,
                "title": str(catalog.titles[items.item_type].get(iid, iid)),
                "closes_units": sorted(int(u) for u in units[j][closes[j]]),
            }
        )
    return out
