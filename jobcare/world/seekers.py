"""Job seekers at registration: profile, psych tests, desired occupations, initial competencies.

Gender and age never enter the utility. Labour-market segregation comes from occupational
preferences (desired and last occupations are drawn with gender- and age-dependent weights), so a
fair ranker is possible and an unfair one is detectable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from jobcare.config import ScaleConfig
from jobcare.world.catalog import group_arrays, region_weights, to_ts
from jobcare.world.taxonomy import RIASEC, WORK_VALUES, Taxonomy

N_DESIRED = 3


@dataclass
class SeekerPack:
    seekers: pd.DataFrame
    initial_units: pd.DataFrame  # seeker_id, unit_id, level
    initial_certificates: pd.DataFrame  # seeker_id, certificate_id
    desired: np.ndarray  # (n, N_DESIRED) occupation ids, -1 padded


def _occupation_weights(tax: Taxonomy, female: bool, age: float) -> np.ndarray:
    fs = tax.occupations["female_share"].to_numpy()
    w = (fs if female else 1 - fs) ** 2
    w = w * np.exp(-((age - tax.occupations["mean_age"].to_numpy()) ** 2) / (2 * 12.0**2))
    return w / w.sum()


def make_seekers(
    sizes: ScaleConfig, tax: Taxonomy, start: np.datetime64, rng: np.random.Generator
) -> SeekerPack:
    """Generate ``sizes.n_seekers`` seekers; 30% are registered on day 0, the rest arrive daily."""
    n = sizes.n_seekers
    occs = tax.occupations
    n_occ = len(occs)
    gender_f = rng.random(n) < 0.5
    age = np.clip(np.rint(18 + rng.gamma(2.2, 7.5, n)), 18, 69).astype(np.int32)
    region = rng.choice(len(tax.regions), n, p=region_weights(tax)).astype(np.int32)
    reg_day = np.where(rng.random(n) < 0.3, rng.uniform(0, 0.3, n), rng.uniform(0, sizes.days - 1, n))
    reg_day = np.sort(reg_day)  # seeker ids in registration order

    occ_group = occs["group_id"].to_numpy()
    by_group = [np.flatnonzero(occ_group == g) for g in range(len(tax.groups))]
    # desired occupations: gender/age-dependent preference; 2nd/3rd mostly from the same group
    age_bins = np.clip((age - 18) // 5, 0, 10)
    weight_cache: dict[tuple[bool, int], np.ndarray] = {}
    desired = np.full((n, N_DESIRED), -1, dtype=np.int32)
    n_desired = rng.choice([1, 2, 3], n, p=[0.3, 0.4, 0.3])
    last_occ = np.full(n, -1, dtype=np.int32)
    for i in range(n):
        key = (bool(gender_f[i]), int(age_bins[i]))
        if key not in weight_cache:
            weight_cache[key] = np.cumsum(_occupation_weights(tax, key[0], 20.5 + 5 * key[1]))
        cw = weight_cache[key]
        first = min(int(np.searchsorted(cw, rng.random() * cw[-1])), n_occ - 1)
        desired[i, 0] = first
        for j in range(1, int(n_desired[i])):
            if rng.random() < 0.7:
                pool = by_group[occ_group[first]]
                desired[i, j] = pool[rng.integers(len(pool))]
            else:
                desired[i, j] = min(int(np.searchsorted(cw, rng.random() * cw[-1])), n_occ - 1)
        if rng.random() < 0.6:
            last_occ[i] = (
                desired[i, 0]
                if rng.random() < 0.5
                else min(int(np.searchsorted(cw, rng.random() * cw[-1])), n_occ - 1)
            )
    first = desired[:, 0]
    edu = np.clip(np.rint(occs["education_level"].to_numpy()[first] + rng.normal(0, 0.9, n)), 0, 4)
    edu = np.where(age < 22, np.minimum(edu, 1), edu).astype(np.int8)
    career = np.maximum(0, np.rint((age - 20 - 2 * edu) * rng.uniform(0.0, 0.8, n))).astype(np.int16)
    last_occ = np.where(career > 0, last_occ, -1).astype(np.int32)
    majors_by_group = [
        tax.majors.index[tax.majors["group_id"] == g].to_numpy() for g in range(len(tax.groups))
    ]
    major = np.empty(n, dtype=np.int32)
    for i in range(n):
        pool = majors_by_group[occ_group[first[i]]]
        major[i] = (
            pool[rng.integers(len(pool))]
            if (rng.random() < 0.7 and len(pool))
            else rng.integers(len(tax.majors))
        )
    # psych tests on 0-100: the desired occupation's profile blended with a personal component
    prof = occs[RIASEC].to_numpy()[first]
    riasec = np.clip(
        ((prof - 1) / 6 * 100) * 0.6 + rng.normal(50, 18, (n, 6)) * 0.4 + rng.normal(0, 8, (n, 6)), 0, 100
    )
    wvp = occs[WORK_VALUES].to_numpy()[first]
    wv = np.clip(((wvp - 1) / 6 * 100) * 0.4 + rng.normal(55, 18, (n, 6)) * 0.6, 0, 100)
    res_wage = (
        occs["wage"].to_numpy()[first]
        * (0.85 + 0.02 * np.minimum(career, 10))
        * np.exp(rng.normal(0, 0.15, n))
    )
    seekers = pd.DataFrame(
        {
            "seeker_id": np.arange(n, dtype=np.int32),
            "registered_at": to_ts(start, reg_day),
            "gender": np.where(gender_f, "F", "M"),
            "age": age,
            "region_id": region,
            "education_level": edu,
            "major_id": major,
            "career_years": career,
            "last_occupation_id": pd.array(np.where(last_occ >= 0, last_occ, 0), dtype="Int32"),
            "desired_occupation_ids": [row[row >= 0].tolist() for row in desired],
            "reservation_wage": res_wage.round(0),
        }
    )
    seekers.loc[last_occ < 0, "last_occupation_id"] = pd.NA
    for j, c in enumerate(RIASEC):
        seekers[c] = riasec[:, j].round(1)
    for j, c in enumerate(WORK_VALUES):
        seekers[c] = wv[:, j].round(1)

    units, certs = _initial_competencies(seekers, last_occ, tax, rng)
    return SeekerPack(seekers, units, certs, desired)


def _initial_competencies(
    seekers: pd.DataFrame, last_occ: np.ndarray, tax: Taxonomy, rng: np.random.Generator
):
    """Units from the major, from the last occupation (scaled by career years), from held certificates."""
    n = len(seekers)
    major = seekers["major_id"].to_numpy()
    first = np.array([d[0] for d in seekers["desired_occupation_ids"]])
    edu = seekers["education_level"].to_numpy()
    career = seekers["career_years"].to_numpy()
    mu_by_major = group_arrays(tax.major_units, "major_id", len(tax.majors), ["unit_id", "affinity"])
    ou_by_occ = group_arrays(
        tax.occupation_units, "occupation_id", len(tax.occupations), ["unit_id", "level"]
    )
    cu_by_cert = group_arrays(
        tax.certificate_units, "certificate_id", len(tax.certificates), ["unit_id", "level"]
    )
    certs_by_group = [
        tax.certificates.index[(tax.certificates["group_id"] == g)].to_numpy() for g in range(len(tax.groups))
    ]
    cert_min_edu = tax.certificates["min_education"].to_numpy()
    occ_group = tax.occupations["group_id"].to_numpy()
    s_ids, u_ids, lvls, cs, cc = [], [], [], [], []
    for i in range(n):
        m_units, m_aff = mu_by_major[major[i]]
        keep = rng.random(len(m_units)) < m_aff
        lv = np.clip(np.rint(1 + edu[i] * 0.7 + rng.normal(0, 0.7, keep.sum())), 1, 5)
        s_ids.append(np.full(keep.sum(), i))
        u_ids.append(m_units[keep])
        lvls.append(lv)
        if last_occ[i] >= 0:
            o_units, o_lvl = ou_by_occ[last_occ[i]]
            keep = rng.random(len(o_units)) < min(0.95, 0.35 + 0.08 * career[i])
            lv = np.minimum(o_lvl[keep], np.clip(1 + career[i] // 2 + rng.integers(0, 2, keep.sum()), 1, 8))
            s_ids.append(np.full(keep.sum(), i))
            u_ids.append(o_units[keep])
            lvls.append(lv)
        n_c = rng.poisson(0.3 + 0.1 * min(career[i], 10))
        grp = occ_group[last_occ[i]] if last_occ[i] >= 0 else occ_group[first[i]]
        pool = certs_by_group[grp]
        pool = pool[cert_min_edu[pool] <= edu[i]]
        if n_c and len(pool):
            for c in rng.choice(pool, min(n_c, len(pool)), replace=False):
                cs.append(i)
                cc.append(int(c))
                c_units, c_lvl = cu_by_cert[c]
                s_ids.append(np.full(len(c_units), i))
                u_ids.append(c_units)
                lvls.append(c_lvl)
        k = rng.poisson(1.5)
        s_ids.append(np.full(k, i))
        u_ids.append(rng.integers(0, len(tax.units), k))
        lvls.append(rng.integers(1, 3, k))
    units = pd.DataFrame(
        {
            "seeker_id": np.concatenate(s_ids).astype(np.int32),
            "unit_id": np.concatenate(u_ids).astype(np.int32),
            "level": np.concatenate(lvls).astype(np.int8),
        }
    )
    units = units.groupby(["seeker_id", "unit_id"], as_index=False)["level"].max()
    certs = pd.DataFrame(
        {"seeker_id": np.asarray(cs, dtype=np.int32), "certificate_id": np.asarray(cc, dtype=np.int32)}
    )
    return units, certs
