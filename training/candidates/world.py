"""Adapters from the world's feature frames (Feast column names) to the generic generators' side tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.item_arrays import ITEM_KEY, open_at
from features.pairs import PairContext
from jobcare.world.simulate import APPLY_EVENT
from jobcare.world.taxonomy import RIASEC, WORK_VALUES

ACTION = APPLY_EVENT  # the event a recommendation aims at, per item type


# the seeker side table: side column -> Feast column, by how it is carried over (one mapping for the
# frame version, used in training, and the one-record version, used per request in serving)
SEEKER_SIDE_RAW = {
    "region_id": "seeker_profile__region_id",
    "major_id": "seeker_profile__major_id",
    "last_occupation_id": "seeker_profile__last_occupation_id",
}
SEEKER_SIDE_NUMBER = {
    "education_level": "seeker_profile__education_level",
    "career_years": "seeker_profile__career_years",
}
SEEKER_SIDE_LIST = {
    "desired_occupation_ids": "seeker_profile__desired_occupation_ids",
    "unit_ids": "seeker_competency__unit_ids",
    "certificate_ids": "seeker_competency__certificate_ids",
}
WAGE = "seeker_profile__reservation_wage"


def seeker_side_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Generic user table (column ``user``) from seeker features named as Feast returns them."""
    out = {"user": frame["seeker_id"].to_numpy(np.int64)}
    out.update({c: frame[f].to_numpy() for c, f in SEEKER_SIDE_RAW.items()})
    out.update({c: frame[f].astype(float).to_numpy() for c, f in SEEKER_SIDE_NUMBER.items()})
    out["log_reservation_wage"] = np.log(frame[WAGE].astype(float).clip(lower=1)).to_numpy()
    out.update({c: list(frame[f]) for c, f in SEEKER_SIDE_LIST.items()})
    out.update({c: frame[f"seeker_psych__{c}"].astype(float).to_numpy() for c in RIASEC + WORK_VALUES})
    return pd.DataFrame(out)


def seeker_side_record(row: dict) -> dict:
    """:func:`seeker_side_table` of one seeker row (a dict with Feast column names), as a dict (the
    encoder turns both into the same arrays; the log uses numpy's array loop, as the table does)."""
    rec = {"user": int(row["seeker_id"])}
    rec.update({c: row[f] for c, f in (SEEKER_SIDE_RAW | SEEKER_SIDE_NUMBER | SEEKER_SIDE_LIST).items()})
    rec["log_reservation_wage"] = float(np.log(np.array([row[WAGE]], dtype=float).clip(min=1))[0])
    rec.update({c: row[f"seeker_psych__{c}"] for c in RIASEC + WORK_VALUES})
    return rec


def item_side_table(item_type: str, items: pd.DataFrame, ctx: PairContext) -> pd.DataFrame:
    """Generic item table (column ``item``) of static item attributes (no popularity: new items too)."""
    key = ITEM_KEY[item_type]
    if item_type == "posting":
        occ = items["posting_attributes__occupation_id"].to_numpy(np.int64)
        return pd.DataFrame(
            {
                "item": items[key].to_numpy(np.int64),
                "occupation_id": occ,
                "group_id": ctx.group[occ],
                "region_id": items["posting_attributes__region_id"].to_numpy(),
                "employer_id": items["posting_attributes__employer_id"].to_numpy(),
                "log_wage": np.log(items["posting_attributes__wage"].astype(float).clip(lower=1)).to_numpy(),
                "education_required": items["posting_attributes__education_required"]
                .astype(float)
                .to_numpy(),
                "career_required": items["posting_attributes__career_required"].astype(float).to_numpy(),
                "required_unit_ids": [list(r[r < ctx.n_units]) for r in ctx.req_units[occ]],
                "required_certificate_ids": list(items["posting_attributes__required_certificate_ids"]),
            }
        )
    if item_type == "course":
        occ = items["course_attributes__target_occupation_id"].to_numpy(np.int64)
        return pd.DataFrame(
            {
                "item": items[key].to_numpy(np.int64),
                "target_occupation_id": occ,
                "group_id": ctx.group[occ],
                "region_id": items["course_attributes__region_id"].to_numpy(),
                "provider_id": items["course_attributes__provider_id"].to_numpy(),
                "unit_ids": list(items["course_attributes__unit_ids"]),
                "employment_rate": items["course_attributes__employment_rate"].astype(float).to_numpy(),
                "completion_rate": items["course_attributes__completion_rate"].astype(float).to_numpy(),
                "duration_days": items["course_attributes__duration_days"].astype(float).to_numpy(),
            }
        )
    occ = items["certificate_attributes__anchor_occupation_id"].to_numpy(np.int64)
    return pd.DataFrame(
        {
            "item": items[key].to_numpy(np.int64),
            "anchor_occupation_id": occ,
            "group_id": ctx.group[occ],
            "grade_level": items["certificate_attributes__grade_level"].astype(float).to_numpy(),
            "unit_ids": list(items["certificate_attributes__unit_ids"]),
            "pass_rate": items["certificate_attributes__pass_rate"].astype(float).to_numpy(),
        }
    )


def open_mask(item_type: str, items: pd.DataFrame, t: pd.Timestamp) -> np.ndarray:
    """Which rows of an item-feature frame (as of ``t``) can be acted on at ``t``
    (:func:`features.item_arrays.open_at` over the frame's columns)."""
    return open_at(item_type, lambda c: items[c].to_numpy(), len(items), t)
