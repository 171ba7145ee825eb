"""What JobCare shows a seeker besides the three lists: the package, labour-market information, the
career path and the names the report page needs (``POST /package``, ``/labour-market``, ``/career-path``,
``/reference``).

The engine holds the state; these functions answer one request from it. The heavy work is done once per
refresh (:class:`serving.labour_market.LabourMarket` is built with the item state), so a request only
slices precomputed arrays.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from jobcare.world.io import read_tables
from jobcare.world.taxonomy import EDUCATION
from serving.career_path import TABLES as CAREER_TABLES
from serving.career_path import tables_present
from serving.errors import NotReadyError
from serving.labour_market import LabourMarket
from serving.package import RULES, PackageRules, demand_weight, package
from training.offers import allowed_mask

PACKAGE_ITEM_TYPES = ("course", "certificate")
# what a refresh reads besides the career path's tables: the offer index, popularity and the labour market
REFRESH_TABLES = (
    "events",
    "postings",
    "courses",
    "seekers",
    "occupations",
    "occupation_groups",
    "regions",
    "majors",
    "certificates",
    "posting_certificates",
)


def refresh_tables(world: Path) -> dict[str, pd.DataFrame]:
    """Every table a refresh needs, each read once (``unit_elements`` only where the world has it: a
    world generated before it existed answers the career path without elements, and says so)."""
    return read_tables(world, tables_present(world, dict.fromkeys(REFRESH_TABLES + CAREER_TABLES)))


def build_market(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, scfg) -> LabourMarket:
    """The labour-market arrays as of the service clock, with the configured small-cell rule."""
    return LabourMarket(
        tables,
        as_of,
        min_people=scfg.min_cell_people,
        employment_window_days=scfg.employment_window_days,
    )


def package_answer(
    engine,
    occupation_id: int,
    seeker_id: int | None,
    profile,
    k: int,
    rules: PackageRules = RULES,
) -> dict:
    """The package for a registered seeker (features from the online store) or an inline profile.

    For a registered seeker the courses they already enrolled in and the certificates they registered
    for or hold are left out (the same allowed mask as the recommendation lists); the bundles are
    weighted by the occupation's demand in the seeker's region.
    """
    seeker, degraded = engine.resolve(seeker_id, profile)
    if seeker is None:
        raise NotReadyError("the online store is unreachable and no inline profile was sent")
    state = engine.state
    s = -1 if seeker_id is None else int(seeker_id)
    held = seeker["seeker_competency__certificate_ids"] or []
    allowed = {
        it: allowed_mask(state.arrays[it], state.offers[it], s, state.as_of, held, base=state.base[it])
        for it in PACKAGE_ITEM_TYPES
        if it in state.offers
    }
    n_occ = engine.ctx.req_units.shape[0]
    weight = None
    if 0 <= occupation_id < n_occ:  # an unknown occupation is refused by package() with its named error
        weight = demand_weight(state, occupation_id, int(seeker["seeker_profile__region_id"]))["weight"]
    out = package(
        state,
        engine.catalog,
        engine.ctx,
        seeker,
        occupation_id,
        k,
        demand=weight,
        allowed=allowed,
        rules=rules,
    )
    return {**out, "degraded": degraded}


def reference(catalog, as_of: pd.Timestamp) -> dict:
    """Ids and names of the world's occupations (with their group), regions, certificates, competency
    units, majors and education levels: what a client needs to show names, never bare ids."""

    def pairs(series: pd.Series) -> list[dict]:
        return [{"id": int(i), "name": str(n)} for i, n in series.items()]

    return {
        "as_of": str(as_of),
        "occupations": [
            {"id": int(i), "name": str(n), "group": str(catalog.groups.get(int(g), ""))}
            for i, n, g in zip(catalog.occupations.index, catalog.occupations, catalog.occ_group)
        ],
        "regions": pairs(catalog.regions),
        "certificates": pairs(catalog.titles["certificate"].sort_index()),
        "units": pairs(catalog.units),
        "majors": pairs(catalog.majors),
        "education_levels": [{"id": i, "name": n} for i, n in enumerate(EDUCATION)],
    }
