"""The seeker groups of the fairness audit and of the exposure-aware re-ranking: gender and age band."""

from __future__ import annotations

AGE_BANDS = ("<30", "30-39", "40-49", "50+")
GENDERS = ("F", "M")
GROUPS = {"age band": AGE_BANDS, "gender": GENDERS}


def age_band(age) -> str:
    """The audit's age band of an age in years."""
    a = float(age)
    return "<30" if a < 30 else "30-39" if a < 40 else "40-49" if a < 50 else "50+"


def group_of(dimension: str, gender, age) -> str | None:
    """The seeker's group in ``dimension`` (None when the attribute is unknown)."""
    if dimension == "gender":
        return None if gender is None else str(gender)
    return None if age is None or age != age else age_band(age)  # age != age: NaN
