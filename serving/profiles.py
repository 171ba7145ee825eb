"""An inline seeker profile (JobCare's "My data input") turned into the ``seeker_online_v1`` columns the
request path reads, with every id checked against the world (named errors, field and rule)."""

from __future__ import annotations

import numpy as np

from jobcare.world.taxonomy import RIASEC, WORK_VALUES
from serving.errors import ServingError
from serving.reasons import LETTERS
from serving.schemas import Profile


def profile_row(profile: Profile, catalog, seeker_columns, as_of, seeker_id: int = -1) -> dict:
    """The seeker row of ``profile``: the columns of ``seeker_online_v1`` (activity counts 0, as for a new
    seeker); ServingError naming every field whose ids are not the world's."""
    n_occ, n_reg = len(catalog.occupations), len(catalog.regions)
    bad = []
    if profile.region_id >= n_reg:
        bad.append(f"profile.region_id: {profile.region_id} is not a region (0-{n_reg - 1})")
    for name, ids in (
        ("desired_occupation_ids", profile.desired_occupation_ids),
        ("last_occupation_id", [profile.last_occupation_id] if profile.last_occupation_id >= 0 else []),
    ):
        wrong = [i for i in ids if not 0 <= i < n_occ]
        if wrong:
            bad.append(f"profile.{name}: {wrong} not occupation ids (0-{n_occ - 1})")
    units = [c.unit_id for c in profile.competencies]
    wrong = [u for u in units if u >= catalog.n_units]
    if wrong:
        bad.append(f"profile.competencies.unit_id: {wrong[:5]} not units (0-{catalog.n_units - 1})")
    if len(set(units)) != len(units):
        bad.append("profile.competencies: a unit is listed twice (rule: one level per unit)")
    n_cert = len(catalog.titles["certificate"])
    wrong = [c for c in profile.certificate_ids if not 0 <= c < n_cert]
    if wrong:
        bad.append(f"profile.certificate_ids: {wrong[:5]} not certificates (0-{n_cert - 1})")
    if bad:
        raise ServingError("; ".join(bad))
    comp = sorted((c.unit_id, c.level) for c in profile.competencies)
    levels = [lv for _, lv in comp]
    row = {c: 0 for c in seeker_columns}  # activity counts of a new seeker are 0
    row.update(
        {
            "seeker_id": seeker_id,
            "seeker_profile__region_id": profile.region_id,
            "seeker_profile__education_level": profile.education_level,
            "seeker_profile__major_id": profile.major_id,
            "seeker_profile__career_years": profile.career_years,
            "seeker_profile__last_occupation_id": profile.last_occupation_id,
            "seeker_profile__desired_occupation_ids": list(profile.desired_occupation_ids),
            "seeker_profile__reservation_wage": profile.reservation_wage,
            "seeker_profile__registered_days": as_of.value / 86_400e9,
            "seeker_competency__unit_ids": [u for u, _ in comp],
            "seeker_competency__unit_levels": levels,
            "seeker_competency__n_units": len(comp),
            "seeker_competency__mean_unit_level": float(np.mean(levels)) if levels else 0.0,
            "seeker_competency__units_by_group": [],
            "seeker_competency__certificate_ids": sorted(set(profile.certificate_ids)),
            "seeker_competency__n_certificates": len(set(profile.certificate_ids)),
            "seeker_competency__n_courses_completed": 0,
        }
    )
    for col, letter in zip(RIASEC, LETTERS):
        row[f"seeker_psych__{col}"] = getattr(profile.riasec, letter)
    for col in WORK_VALUES:
        row[f"seeker_psych__{col}"] = getattr(profile.work_values, col.removeprefix("wv_"))
    return row
