"""Plain-word reasons for a recommended item, read from the ranker's own inputs (its pair features)."""

from __future__ import annotations

import numpy as np

LETTERS = "RIASEC"


def top_letters(scores: np.ndarray, n: int = 2) -> str:
    """The ``n`` strongest RIASEC letters of a profile, strongest first (ties by letter order)."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")[:n]
    return "".join(LETTERS[i] for i in order)


def reasons(
    item_type: str, pairs: dict, occupations: np.ndarray, psych: np.ndarray, home: int, catalog
) -> list[list[str]]:
    """Reasons per item: ``pairs`` maps pair-feature names to arrays over the items, ``occupations`` is
    each item's occupation, ``psych`` the seeker's RIASEC scores and ``home`` their region."""
    letters = top_letters(psych)
    out = []
    for j, occ in enumerate(int(o) for o in occupations):
        r = {k: float(v[j]) for k, v in pairs.items()}
        rs = []
        if item_type == "posting":
            need = int(r["n_required_units"])
            rs.append(f"covers {need - int(r['missing_units'])} of {need} required competency units")
            if r["certificates_required"] > 0 and r["certificates_missing"] == 0:
                rs.append("you hold the required certificate")
            elif r["certificates_required"] > 0:
                rs.append(f"requires {int(r['certificates_missing'])} certificate(s) you do not hold yet")
            if r["log_wage_ratio"] >= 0:
                rs.append("pays at least your desired wage")
        elif item_type == "course":
            if r["desired_gap_closure"] > 0:
                rs.append(f"closes {r['desired_gap_closure']:.0%} of your gap to a desired occupation")
            if r["new_unit_share"] > 0:
                rs.append(f"{r['new_unit_share']:.0%} of what it teaches is new to you")
        else:
            rs.append(f"you already hold {r['readiness']:.0%} of the competencies it certifies")
            if r["desired_requires_units"] > 0:
                rs.append("certifies units your desired occupation requires")
        if r["desired_occupation_match"] > 0:
            rs.append(f"in your desired occupation ({catalog.occupations.get(occ, occ)})")
        if r["riasec_congruence"] >= 0.5:
            rs.append(
                f"matches your interest type {letters} (this work is {top_letters(catalog.occ_riasec[occ])})"
            )
        if "same_region" in r and r["same_region"] > 0:
            rs.append(f"in your region ({catalog.regions.get(home, home)})")
        elif "region_distance_km" in r:
            rs.append(f"{r['region_distance_km']:.0f} km from your region")
        out.append(rs)
    return out
