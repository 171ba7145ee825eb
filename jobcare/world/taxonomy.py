"""Occupational taxonomy: competency units, occupations, certificates and majors.

The built-in synthetic pack is NCS/KECO-flavoured: ten major groups, competency units with 8-digit
codes in a four-level hierarchy (major/middle/minor/sub), occupations requiring 5-15 units with an
importance (1-5) and a level (1-8), a RIASEC interest profile and work values on O*NET's 1-7 scale.
:func:`jobcare.world.onet.onet_taxonomy` builds the same tables from real O*NET 29.2 files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from jobcare.config import ScaleConfig
from jobcare.world.elements import synthetic_unit_elements
from jobcare.world.regions import regions_table

RIASEC = ["riasec_r", "riasec_i", "riasec_a", "riasec_s", "riasec_e", "riasec_c"]
WORK_VALUES = [
    "wv_achievement",
    "wv_working_conditions",
    "wv_recognition",
    "wv_relationships",
    "wv_support",
    "wv_independence",
]
GRADES = ["craftsman", "industrial_engineer", "engineer", "master"]
GRADE_LEVEL = {"craftsman": 3, "industrial_engineer": 4, "engineer": 5, "master": 7}
EDUCATION = ["high_school", "college", "bachelor", "master", "doctorate"]

# name, RIASEC centroid (1-7), female share of the group, monthly wage base (10k KRW), mean education
_GROUPS = [
    ("Management & Finance", (2, 3, 2, 4, 6, 6), 0.45, 380, 2.2),
    ("Engineering & IT", (4, 6, 2, 2, 3, 4), 0.20, 420, 2.3),
    ("Health & Medical", (3, 5, 2, 6, 2, 4), 0.75, 360, 2.0),
    ("Education & Research", (2, 6, 4, 6, 3, 3), 0.60, 340, 2.6),
    ("Culture, Arts & Media", (2, 3, 6, 3, 4, 2), 0.55, 300, 1.9),
    ("Sales & Customer Service", (2, 2, 2, 5, 6, 4), 0.60, 260, 1.2),
    ("Personal Services", (3, 2, 3, 6, 3, 3), 0.70, 230, 0.6),
    ("Construction & Mining", (6, 3, 2, 2, 3, 4), 0.08, 320, 0.7),
    ("Manufacturing & Machinery", (6, 4, 2, 2, 2, 4), 0.25, 300, 0.8),
    ("Transport, Logistics & Agriculture", (6, 2, 1, 3, 3, 4), 0.15, 270, 0.5),
]
_UNIT_WORDS = [
    "planning",
    "analysis",
    "operation",
    "maintenance",
    "design",
    "quality control",
    "safety",
    "documentation",
    "development",
    "testing",
    "consulting",
    "assessment",
    "installation",
    "inspection",
    "coordination",
    "instruction",
]


@dataclass
class Taxonomy:
    """All static reference tables of a world."""

    regions: pd.DataFrame
    units: pd.DataFrame
    occupations: pd.DataFrame
    occupation_units: pd.DataFrame
    certificates: pd.DataFrame
    certificate_units: pd.DataFrame
    majors: pd.DataFrame
    major_units: pd.DataFrame
    groups: pd.DataFrame
    attribution: str | None = None
    unit_elements: pd.DataFrame | None = None  # knowledge / skills / tools per unit (jobcare.world.elements)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The tables by file name."""
        return {
            "regions": self.regions,
            "occupation_groups": self.groups,
            "competency_units": self.units,
            "occupations": self.occupations,
            "occupation_units": self.occupation_units,
            "certificates": self.certificates,
            "certificate_units": self.certificate_units,
            "majors": self.majors,
            "major_units": self.major_units,
        } | ({"unit_elements": self.unit_elements} if self.unit_elements is not None else {})


def groups_table(names: list[str], female: list[float], wage: list[float], edu: list[float]) -> pd.DataFrame:
    """Occupation major groups: id, name and the group-level tendencies used by the generator."""
    return pd.DataFrame(
        {
            "group_id": np.arange(len(names), dtype=np.int32),
            "name": names,
            "female_share": np.asarray(female, dtype=np.float64),
            "wage_base": np.asarray(wage, dtype=np.float64),
            "education_mean": np.asarray(edu, dtype=np.float64),
        }
    )


def synthetic_taxonomy(sizes: ScaleConfig, rng: np.random.Generator, seed: int) -> Taxonomy:
    """Build the synthetic NCS/KECO-style taxonomy for ``sizes``.

    ``seed`` (the world's) only seeds the units' knowledge / skills / tools, drawn from their own
    generator (:func:`jobcare.world.elements.synthetic_unit_elements`), so ``rng`` draws as before.
    """
    n_groups = len(_GROUPS)
    groups = groups_table(
        [g[0] for g in _GROUPS], [g[2] for g in _GROUPS], [g[3] for g in _GROUPS], [g[4] for g in _GROUPS]
    )
    # competency units: split evenly over groups, coded major/middle/minor/sub
    unit_group = np.arange(sizes.n_units) % n_groups
    order = np.argsort(unit_group, kind="stable")
    unit_group = unit_group[order]
    within = np.concatenate([np.arange((unit_group == g).sum()) for g in range(n_groups)])
    middle, minor, sub = within // 30 + 1, (within // 6) % 5 + 1, within % 6 + 1
    codes = [f"{g + 1:02d}{a:02d}{b:02d}{c:02d}" for g, a, b, c in zip(unit_group, middle, minor, sub)]
    units = pd.DataFrame(
        {
            "unit_id": np.arange(sizes.n_units, dtype=np.int32),
            "code": codes,
            "name": [
                f"{_short(g)} {_UNIT_WORDS[w % len(_UNIT_WORDS)]} {w // 16 + 1}"
                for g, w in zip(unit_group, within)
            ],
            "group_id": unit_group.astype(np.int32),
            "middle_code": [c[:4] for c in codes],
            "minor_code": [c[:6] for c in codes],
            "kind": "ncs",
        }
    )
    units_by_group = [np.flatnonzero(unit_group == g) for g in range(n_groups)]
    unit_elements = synthetic_unit_elements(
        [_GROUPS[g][0] for g in unit_group], [_UNIT_WORDS[w % len(_UNIT_WORDS)] for w in within], seed
    )

    # occupations
    occ_group = np.sort(np.arange(sizes.n_occupations) % n_groups).astype(np.int32)
    centroids = np.array([g[1] for g in _GROUPS], dtype=np.float64)
    riasec = np.clip(centroids[occ_group] + rng.normal(0, 0.9, (sizes.n_occupations, 6)), 1, 7)
    wv = np.clip(rng.normal(4.5, 1.0, (sizes.n_occupations, 6)), 1, 7)
    edu = np.clip(
        np.rint(groups["education_mean"].to_numpy()[occ_group] + rng.normal(0, 0.8, occ_group.size)), 0, 4
    )
    wage = (
        groups["wage_base"].to_numpy()[occ_group]
        * np.exp(rng.normal(0, 0.2, occ_group.size))
        * (1 + 0.08 * edu)
    )
    female = np.clip(
        rng.beta(2, 2, occ_group.size) * 0.5 + groups["female_share"].to_numpy()[occ_group] * 0.75 - 0.15,
        0.02,
        0.97,
    )
    occ_rows, ou_rows = [], []
    for o in range(sizes.n_occupations):
        g = occ_group[o]
        k = int(rng.integers(5, 16))
        n_own = min(len(units_by_group[g]), int(round(k * 0.8)))
        own = rng.choice(units_by_group[g], n_own, replace=False)
        other_pool = np.setdiff1d(np.arange(sizes.n_units), units_by_group[g])
        other = rng.choice(other_pool, k - n_own, replace=False)
        chosen = np.concatenate([own, other])
        imp = rng.integers(1, 6, chosen.size)
        lvl = np.clip(np.rint(2 + edu[o] + rng.normal(0, 1.0, chosen.size)), 1, 8).astype(int)
        ou_rows.append(pd.DataFrame({"occupation_id": o, "unit_id": chosen, "importance": imp, "level": lvl}))
        occ_rows.append((o, f"{g + 1:02d}{o % 100:02d}", f"{_short(g)} job {o:03d}", g))
    occupations = pd.DataFrame(occ_rows, columns=["occupation_id", "code", "title", "group_id"])
    occupations = occupations.astype({"occupation_id": np.int32, "group_id": np.int32})
    for j, c in enumerate(RIASEC):
        occupations[c] = riasec[:, j].round(2)
    for j, c in enumerate(WORK_VALUES):
        occupations[c] = wv[:, j].round(2)
    occupations["education_level"] = edu.astype(np.int8)
    occupations["job_zone"] = np.clip(edu + 1, 1, 5).astype(np.int8)
    occupations["wage"] = wage.round(0)
    occupations["female_share"] = female.round(3)
    occupations["mean_age"] = np.clip(38 + rng.normal(0, 6, occ_group.size), 26, 55).round(1)
    occupation_units = _ints(pd.concat(ou_rows, ignore_index=True))

    tax = complete_taxonomy(units, occupations, occupation_units, groups, sizes, rng)
    tax.unit_elements = unit_elements
    return tax


def complete_taxonomy(
    units: pd.DataFrame,
    occupations: pd.DataFrame,
    occupation_units: pd.DataFrame,
    groups: pd.DataFrame,
    sizes: ScaleConfig,
    rng: np.random.Generator,
    attribution: str | None = None,
) -> Taxonomy:
    """Generate certificates and majors around the given occupations and units; assemble the taxonomy."""
    certificates, certificate_units = make_certificates(
        sizes.n_certificates, units, occupations, occupation_units, rng
    )
    majors, major_units = make_majors(sizes.n_majors, groups, units, rng)
    return Taxonomy(
        regions=regions_table(),
        units=units,
        occupations=occupations,
        occupation_units=occupation_units,
        certificates=certificates,
        certificate_units=certificate_units,
        majors=majors,
        major_units=major_units,
        groups=groups,
        attribution=attribution,
    )


def _short(g: int) -> str:
    """First word of a synthetic group's name ("Engineering & IT" -> "Engineering")."""
    return _GROUPS[g][0].split(" ")[0].split(",")[0]


def _ints(df: pd.DataFrame) -> pd.DataFrame:
    for c in df.columns:
        if df[c].dtype.kind in "iu":
            df[c] = df[c].astype(np.int32)
    return df


def make_certificates(
    n: int,
    units: pd.DataFrame,
    occupations: pd.DataFrame,
    occupation_units: pd.DataFrame,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Certificates (Q-Net style grades) covering units of an anchor occupation.

    Pass rates follow the national technical qualification range (~30-80%); the master grade is rare
    and hardest.
    """
    grade_idx = rng.choice(4, n, p=[0.40, 0.30, 0.25, 0.05])
    anchor = rng.integers(0, len(occupations), n)
    rows, cu = [], []
    ou = occupation_units.groupby("occupation_id")["unit_id"].apply(np.asarray)
    for c in range(n):
        grade = GRADES[grade_idx[c]]
        occ_units = ou[anchor[c]]
        k = min(len(occ_units), int(rng.integers(3, 9)))
        chosen = rng.choice(occ_units, k, replace=False)
        lvl = GRADE_LEVEL[grade]
        cu.append(pd.DataFrame({"certificate_id": c, "unit_id": chosen, "level": lvl}))
        base = {0: 0.62, 1: 0.50, 2: 0.42, 3: 0.30}[int(grade_idx[c])]
        pass_rate = float(np.clip(base + rng.normal(0, 0.12), 0.25, 0.85))
        occ = occupations.iloc[anchor[c]]
        rows.append(
            (
                c,
                f"{grade.replace('_', ' ').title()} in {occ['title']}",
                grade,
                int(occ["occupation_id"]),
                int(occ["group_id"]),
                round(pass_rate, 3),
                lvl,
                [0, 1, 2, 2][int(grade_idx[c])],
            )
        )
    certificates = pd.DataFrame(
        rows,
        columns=[
            "certificate_id",
            "name",
            "grade",
            "anchor_occupation_id",
            "group_id",
            "pass_rate",
            "level",
            "min_education",
        ],
    )
    return _ints(certificates), _ints(pd.concat(cu, ignore_index=True))


def make_majors(
    n: int, groups: pd.DataFrame, units: pd.DataFrame, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """University/college majors, each with affinities to 8-20 units mostly of its group."""
    n_groups = len(groups)
    major_group = np.arange(n) % n_groups
    rows, mu = [], []
    for m in range(n):
        g = major_group[m]
        own = units.index[units["group_id"] == g].to_numpy()
        k = min(len(own), int(rng.integers(8, 21)))
        chosen = rng.choice(own, k, replace=False)
        mu.append(
            pd.DataFrame({"major_id": m, "unit_id": chosen, "affinity": rng.uniform(0.3, 1.0, k).round(3)})
        )
        rows.append((m, f"{groups['name'][g].split(' ')[0].split(',')[0]} studies {m:03d}", g))
    majors = pd.DataFrame(rows, columns=["major_id", "name", "group_id"])
    return _ints(majors), _ints(pd.concat(mu, ignore_index=True))
