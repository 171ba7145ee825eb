"""Employers, training providers, training courses and job postings over the simulated span."""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobcare.config import ScaleConfig
from jobcare.world.taxonomy import Taxonomy


def to_ts(start: np.datetime64, days: np.ndarray) -> pd.DatetimeIndex:
    """Fractional day offsets from ``start`` as UTC timestamps (microsecond precision)."""
    us = np.rint(np.asarray(days, dtype=np.float64) * 86_400e6).astype("int64")
    return pd.to_datetime(start + us.astype("timedelta64[us]"), utc=True)


def group_arrays(df: pd.DataFrame, key: str, n: int, cols: list[str]) -> list[tuple[np.ndarray, ...]]:
    """Rows of ``df`` grouped by integer ``key`` in 0..n-1, as a list of column-array tuples (fast lookup)."""
    d = df.sort_values(key, kind="stable")
    bounds = np.searchsorted(d[key].to_numpy(), np.arange(n + 1))
    arrays = [d[c].to_numpy() for c in cols]
    return [tuple(a[bounds[i] : bounds[i + 1]] for a in arrays) for i in range(n)]


def region_weights(tax: Taxonomy) -> np.ndarray:
    w = tax.regions["population_m"].to_numpy(dtype=np.float64)
    return w / w.sum()


def make_employers(n: int, n_providers: int, tax: Taxonomy, rng: np.random.Generator):
    """Employers (group, region, size) and training providers (region)."""
    n_groups = len(tax.groups)
    employers = pd.DataFrame(
        {
            "employer_id": np.arange(n, dtype=np.int32),
            "name": [f"Employer {i:05d}" for i in range(n)],
            "group_id": (np.arange(n) % n_groups).astype(np.int32),
            "region_id": rng.choice(len(tax.regions), n, p=region_weights(tax)).astype(np.int32),
            "size": np.clip(np.rint(rng.lognormal(3.0, 1.3, n)), 1, 50_000).astype(np.int32),
        }
    )
    providers = pd.DataFrame(
        {
            "provider_id": np.arange(n_providers, dtype=np.int32),
            "name": [f"Training provider {i:04d}" for i in range(n_providers)],
            "region_id": rng.choice(len(tax.regions), n_providers, p=region_weights(tax)).astype(np.int32),
        }
    )
    return employers, providers


def _logit_normal(rng: np.random.Generator, median: float, q1: float, q3: float, n: int) -> np.ndarray:
    lg = np.log(np.array([median, q1, q3]) / (1 - np.array([median, q1, q3])))
    sd = (lg[2] - lg[1]) / (2 * 0.6745)
    return 1 / (1 + np.exp(-rng.normal(lg[0], sd, n)))


def make_courses(
    n: int,
    tax: Taxonomy,
    providers: pd.DataFrame,
    sizes: ScaleConfig,
    start: np.datetime64,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training course runs at K-Digital magnitudes.

    Completion rate median ~80% (quartiles 63/90%), employment at 6 months median ~50% (38/67%),
    capacity median 30 (mostly 20-30), duration median ~120 days. Recruiting opens 45 days before start.
    """
    occ = rng.integers(0, len(tax.occupations), n)
    prov = rng.integers(0, len(providers), n)
    start_day = rng.uniform(-60, sizes.days, n)
    duration = np.clip(np.rint(rng.lognormal(np.log(120), 0.4, n)), 20, 365)
    ou = group_arrays(tax.occupation_units, "occupation_id", len(tax.occupations), ["unit_id", "level"])
    c_ids, u_ids, lvls = [], [], []
    for c in range(n):
        units, levels = ou[occ[c]]
        pick = rng.choice(len(units), min(len(units), int(rng.integers(3, 9))), replace=False)
        c_ids.append(np.full(pick.size, c))
        u_ids.append(units[pick])
        lvls.append(np.minimum(levels[pick], 6))
    course_units = pd.DataFrame(
        {"course_id": np.concatenate(c_ids), "unit_id": np.concatenate(u_ids), "level": np.concatenate(lvls)}
    ).astype(np.int32)
    occs = tax.occupations
    courses = pd.DataFrame(
        {
            "course_id": np.arange(n, dtype=np.int32),
            "title": [f"{occs['title'].iat[o]} training {c:04d}" for c, o in enumerate(occ)],
            "provider_id": prov.astype(np.int32),
            "region_id": providers["region_id"].to_numpy()[prov].astype(np.int32),
            "target_occupation_id": occ.astype(np.int32),
            "group_id": occs["group_id"].to_numpy()[occ].astype(np.int32),
            "capacity": rng.choice([15, 20, 20, 25, 25, 30, 30, 30, 30, 35, 40], n).astype(np.int32),
            "duration_days": duration.astype(np.int32),
            "recruit_start_at": to_ts(start, start_day - 45),
            "start_at": to_ts(start, start_day),
            "end_at": to_ts(start, start_day + duration),
            "completion_rate": _logit_normal(rng, 0.80, 0.63, 0.90, n).round(3),
            "employment_rate": _logit_normal(rng, 0.50, 0.38, 0.67, n).round(3),
        }
    )
    return courses, course_units


def make_postings(
    n: int,
    tax: Taxonomy,
    employers: pd.DataFrame,
    sizes: ScaleConfig,
    start: np.datetime64,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Job postings: occupation demand is heavy-tailed (Zipf over occupations), open 1-9 weeks."""
    n_occ = len(tax.occupations)
    demand = 1.0 / np.arange(1, n_occ + 1) ** 0.8
    demand = rng.permutation(demand)
    occ = rng.choice(n_occ, n, p=demand / demand.sum())
    occ_group = tax.occupations["group_id"].to_numpy()[occ]
    by_group = [employers.index[employers["group_id"] == g].to_numpy() for g in range(len(tax.groups))]
    size = employers["size"].to_numpy(dtype=np.float64)
    emp = np.empty(n, dtype=np.int64)
    for g in np.unique(occ_group):
        idx = np.flatnonzero(occ_group == g)
        pool = by_group[g] if len(by_group[g]) else employers.index.to_numpy()
        w = np.sqrt(size[pool])
        emp[idx] = rng.choice(pool, idx.size, p=w / w.sum())
    open_day = rng.uniform(-30, sizes.days - 1, n)
    duration = np.clip(rng.lognormal(np.log(30), 0.45, n), 7, 63)
    occ_edu = tax.occupations["education_level"].to_numpy()[occ]
    wage = tax.occupations["wage"].to_numpy()[occ] * np.exp(rng.normal(0, 0.15, n))
    postings = pd.DataFrame(
        {
            "posting_id": np.arange(n, dtype=np.int32),
            "employer_id": emp.astype(np.int32),
            "occupation_id": occ.astype(np.int32),
            "region_id": employers["region_id"].to_numpy()[emp].astype(np.int32),
            "title": [f"{tax.occupations['title'].iat[o]} @ employer {e}" for o, e in zip(occ, emp)],
            "wage": wage.round(0),
            "headcount": (1 + rng.geometric(0.55, n) - 1).astype(np.int32),
            "education_required": np.clip(occ_edu - rng.integers(0, 2, n), 0, 4).astype(np.int8),
            "career_required": rng.choice([0, 0, 0, 1, 2, 3, 5], n).astype(np.int8),
            "open_at": to_ts(start, np.maximum(open_day, 0)),
            "close_at": to_ts(start, np.minimum(np.maximum(open_day, 0) + duration, sizes.days)),
        }
    )
    # required certificates: 0-2 of the certificates anchored in the posting's occupation group
    certs = tax.certificates
    cert_by_group = [certs.index[certs["group_id"] == g].to_numpy() for g in range(len(tax.groups))]
    n_req = rng.choice([0, 0, 1, 1, 2], n)
    pc_p, pc_c = [], []
    for i in np.flatnonzero(n_req > 0):
        pool = cert_by_group[occ_group[i]]
        if len(pool) == 0:
            continue
        chosen = rng.choice(pool, min(len(pool), int(n_req[i])), replace=False)
        pc_p.extend([i] * len(chosen))
        pc_c.extend(chosen.tolist())
    posting_certificates = pd.DataFrame(
        {"posting_id": np.asarray(pc_p, dtype=np.int32), "certificate_id": np.asarray(pc_c, dtype=np.int32)}
    )
    return postings, posting_certificates
