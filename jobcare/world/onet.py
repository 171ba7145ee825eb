"""Build the world's taxonomy from real O*NET 29.2 text files (CC BY 4.0).

- occupations: every O*NET-SOC code with an interest profile (Interests.txt, OI scale 1-7), with
  work values (Work Values.txt, EX scale), job zone (Job Zones.txt) and title (Occupation Data.txt);
- competency units: the 35 skills (Element IDs give a 4-level hierarchy: 2 / 2.A / 2.A.1 / 2.A.1.a),
  the technology-skill commodities and the 400 most common tool commodities (UNSPSC codes give a
  4-level hierarchy: segment / family / class / commodity);
- occupation units: skills with importance >= 3 (importance and level from the IM and LV scales),
  then hot/in-demand technologies, then tools, at most 15 per occupation;
- unit elements (knowledge / skills / tools): each unit itself, then the skills and tools O*NET
  occupations most often require with it (:func:`jobcare.world.elements.co_required_elements`, over
  every occupation's links before the 15-unit cap); no knowledge, the files hold no Knowledge ratings.
Certificates and majors are generated around these occupations. O*NET carries no gender shares or
wages: those are approximate group-level values for the simulation only (see ``_SOC_GROUPS``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from jobcare.config import ScaleConfig
from jobcare.errors import ConfigError
from jobcare.world.elements import co_required_elements
from jobcare.world.taxonomy import (
    RIASEC,
    WORK_VALUES,
    Taxonomy,
    _ints,
    complete_taxonomy,
    groups_table,
)

ATTRIBUTION = (
    "This product includes information from the O*NET 29.2 Database by the U.S. Department of Labor, "
    "Employment and Training Administration (USDOL/ETA). Used under the CC BY 4.0 license. "
    "O*NET(R) is a trademark of USDOL/ETA."
)
# SOC major group: name, approximate female share, monthly wage base (10k KRW, simulation only)
_SOC_GROUPS = {
    "11": ("Management", 0.41, 520),
    "13": ("Business and Financial Operations", 0.55, 420),
    "15": ("Computer and Mathematical", 0.26, 450),
    "17": ("Architecture and Engineering", 0.16, 430),
    "19": ("Life, Physical, and Social Science", 0.48, 400),
    "21": ("Community and Social Service", 0.66, 290),
    "23": ("Legal", 0.53, 480),
    "25": ("Educational Instruction and Library", 0.73, 320),
    "27": ("Arts, Design, Entertainment, Sports, and Media", 0.49, 300),
    "29": ("Healthcare Practitioners and Technical", 0.75, 430),
    "31": ("Healthcare Support", 0.85, 240),
    "33": ("Protective Service", 0.23, 300),
    "35": ("Food Preparation and Serving", 0.54, 220),
    "37": ("Building and Grounds Cleaning and Maintenance", 0.40, 220),
    "39": ("Personal Care and Service", 0.76, 230),
    "41": ("Sales and Related", 0.49, 280),
    "43": ("Office and Administrative Support", 0.71, 260),
    "45": ("Farming, Fishing, and Forestry", 0.25, 230),
    "47": ("Construction and Extraction", 0.04, 320),
    "49": ("Installation, Maintenance, and Repair", 0.04, 310),
    "51": ("Production", 0.29, 280),
    "53": ("Transportation and Material Moving", 0.20, 260),
    "55": ("Military Specific", 0.15, 300),
}
_JZ_EDU = {1: 0, 2: 0, 3: 1, 4: 2, 5: 3}
_WV_NAMES = ["Achievement", "Working Conditions", "Recognition", "Relationships", "Support", "Independence"]
_RIASEC_NAMES = ["Realistic", "Investigative", "Artistic", "Social", "Enterprising", "Conventional"]
N_TOOLS = 400
MAX_UNITS = 15


def _read(onet_dir: Path, name: str) -> pd.DataFrame:
    p = onet_dir / name
    if not p.is_file():
        raise ConfigError(f"O*NET file missing: {p} (expected the O*NET 29.2 text release)")
    return pd.read_csv(p, sep="\t", dtype=str, encoding="utf-8")


def load_onet_occupations(onet_dir: str | Path) -> pd.DataFrame:
    """Occupations with an interest profile: code, title, RIASEC (OI 1-7), work values (EX), job zone."""
    d = Path(onet_dir)
    occ = _read(d, "Occupation Data.txt")[["O*NET-SOC Code", "Title"]]
    it = _read(d, "Interests.txt")
    it = it[it["Scale ID"] == "OI"].pivot(index="O*NET-SOC Code", columns="Element Name", values="Data Value")
    it = it[_RIASEC_NAMES].astype(float)
    it.columns = RIASEC
    wv = _read(d, "Work Values.txt")
    wv = wv[wv["Scale ID"] == "EX"].pivot(index="O*NET-SOC Code", columns="Element Name", values="Data Value")
    wv = wv[_WV_NAMES].astype(float)
    wv.columns = WORK_VALUES
    jz = _read(d, "Job Zones.txt").set_index("O*NET-SOC Code")["Job Zone"].astype(int)
    df = (
        occ.set_index("O*NET-SOC Code").join(it, how="inner").join(wv, how="left").join(jz.rename("job_zone"))
    )
    df["job_zone"] = df["job_zone"].fillna(3).astype(int)
    df.index.name = "code"
    return df.reset_index().rename(columns={"Title": "title"}).sort_values("code", ignore_index=True)


def onet_taxonomy(onet_dir: str | Path, sizes: ScaleConfig, rng: np.random.Generator) -> Taxonomy:
    """The taxonomy of a world built on O*NET 29.2."""
    d = Path(onet_dir)
    occ = load_onet_occupations(d)
    occ["soc_major"] = occ["code"].str[:2]
    majors_present = sorted(occ["soc_major"].unique())
    gidx = {m: i for i, m in enumerate(majors_present)}
    groups = groups_table(
        [_SOC_GROUPS.get(m, (f"SOC {m}", 0.5, 300))[0] for m in majors_present],
        [_SOC_GROUPS.get(m, ("", 0.5, 300))[1] for m in majors_present],
        [_SOC_GROUPS.get(m, ("", 0.5, 300))[2] for m in majors_present],
        [float(occ.loc[occ["soc_major"] == m, "job_zone"].map(_JZ_EDU).mean()) for m in majors_present],
    )
    occ["group_id"] = occ["soc_major"].map(gidx)
    code_to_id = {c: i for i, c in enumerate(occ["code"])}

    skills = _read(d, "Skills (2019-SOC release, ratings to 2022-08).txt")
    skills = skills[skills["O*NET-SOC Code"].isin(code_to_id)]
    sk = skills.pivot_table(
        index=["O*NET-SOC Code", "Element ID", "Element Name"],
        columns="Scale ID",
        values="Data Value",
        aggfunc="first",
    ).reset_index()
    sk["IM"], sk["LV"] = sk["IM"].astype(float), sk["LV"].astype(float)
    tech = _read(d, "Technology Skills.txt")
    tech = tech[tech["O*NET-SOC Code"].isin(code_to_id)]
    tools = _read(d, "Tools Used.txt")
    tools = tools[tools["O*NET-SOC Code"].isin(code_to_id)]
    top_tools = tools.groupby("Commodity Code").size().sort_values(ascending=False).head(N_TOOLS).index
    tools = tools[tools["Commodity Code"].isin(top_tools)]

    unit_rows = [
        (eid, name, "skill")
        for eid, name in sk[["Element ID", "Element Name"]]
        .drop_duplicates()
        .sort_values("Element ID")
        .itertuples(index=False)
    ]
    for frame, kind in ((tech, "technology"), (tools, "tool")):
        for code, title in (
            frame[["Commodity Code", "Commodity Title"]]
            .drop_duplicates("Commodity Code")
            .sort_values("Commodity Code")
            .itertuples(index=False)
        ):
            unit_rows.append((code, title, kind))
    units = pd.DataFrame(unit_rows, columns=["code", "name", "kind"]).drop_duplicates(
        "code", ignore_index=True
    )
    unit_id = {c: i for i, c in enumerate(units["code"])}

    jz = occ.set_index("code")["job_zone"]
    rows = []
    for code, g in sk[sk["IM"] >= 3.0].groupby("O*NET-SOC Code"):
        g = g.sort_values("IM", ascending=False).head(10)
        for r in g.itertuples(index=False):
            rows.append((code, r[1], int(np.clip(round(r.IM), 1, 5)), int(np.clip(round(r.LV) + 1, 1, 8)), 0))
    hot = tech.assign(hot=(tech["Hot Technology"] == "Y") | (tech["In Demand"] == "Y"))
    for code, g in hot.groupby("O*NET-SOC Code"):
        g = g.sort_values("hot", ascending=False).drop_duplicates("Commodity Code")
        for r in g.itertuples(index=False):
            rows.append((code, r[2], 4 if r.hot else 3, int(min(8, jz[code] + 1)), 1))
    for code, g in tools.drop_duplicates(["O*NET-SOC Code", "Commodity Code"]).groupby("O*NET-SOC Code"):
        for r in g.itertuples(index=False):
            rows.append((code, r[2], 2, int(max(1, jz[code])), 2))
    ou = pd.DataFrame(rows, columns=["code", "unit_code", "importance", "level", "kind_rank"])
    ou = ou.sort_values(["code", "kind_rank", "importance"], ascending=[True, True, False], kind="stable")
    all_links = ou[["code", "unit_code"]]
    ou = ou.groupby("code", sort=False).head(MAX_UNITS)
    counts = ou.groupby("code").size()
    keep = counts.index[counts >= 3]
    occ = occ[occ["code"].isin(keep)].reset_index(drop=True)
    code_to_id = {c: i for i, c in enumerate(occ["code"])}
    ou = ou[ou["code"].isin(code_to_id)]
    occupation_units = _ints(
        pd.DataFrame(
            {
                "occupation_id": ou["code"].map(code_to_id).to_numpy(),
                "unit_id": ou["unit_code"].map(unit_id).to_numpy(),
                "importance": ou["importance"].to_numpy(),
                "level": ou["level"].to_numpy(),
            }
        ).drop_duplicates(["occupation_id", "unit_id"], ignore_index=True)
    )

    # unit hierarchy: skills 2 / 2.A / 2.A.1 / 2.A.1.a; UNSPSC segment / family / class / commodity
    is_skill = units["kind"] == "skill"
    units["middle_code"] = np.where(
        is_skill, units["code"].str.rsplit(".", n=2).str[0], units["code"].str[:4]
    )
    units["minor_code"] = np.where(is_skill, units["code"].str.rsplit(".", n=1).str[0], units["code"].str[:6])
    mode_group = (
        occupation_units.assign(g=occ["group_id"].to_numpy()[occupation_units["occupation_id"]])
        .groupby("unit_id")["g"]
        .agg(lambda s: s.value_counts().index[0])
    )
    units.insert(0, "unit_id", np.arange(len(units), dtype=np.int32))
    units["group_id"] = mode_group.reindex(units["unit_id"]).fillna(0).astype(np.int32).to_numpy()
    units = units[["unit_id", "code", "name", "group_id", "middle_code", "minor_code", "kind"]]
    all_links = all_links[all_links["code"].isin(code_to_id)]
    unit_elements = co_required_elements(
        units["kind"],
        units["name"],
        pd.DataFrame({"occupation": all_links["code"], "unit_id": all_links["unit_code"].map(unit_id)}),
    )

    wv_fill = occ.groupby("group_id")[WORK_VALUES].transform("mean").fillna(4.0)
    occ[WORK_VALUES] = occ[WORK_VALUES].fillna(wv_fill).round(2)
    edu = occ["job_zone"].map(_JZ_EDU).to_numpy()
    occupations = pd.DataFrame(
        {
            "occupation_id": np.arange(len(occ), dtype=np.int32),
            "code": occ["code"],
            "title": occ["title"],
            "group_id": occ["group_id"].astype(np.int32),
        }
    )
    for c in RIASEC + WORK_VALUES:
        occupations[c] = occ[c].astype(float).round(2).to_numpy()
    occupations["education_level"] = edu.astype(np.int8)
    occupations["job_zone"] = occ["job_zone"].astype(np.int8).to_numpy()
    wage_base = groups["wage_base"].to_numpy()[occupations["group_id"]]
    occupations["wage"] = (
        wage_base * (1 + 0.15 * (occupations["job_zone"] - 3)) * np.exp(rng.normal(0, 0.1, len(occ)))
    ).round(0)
    fs = groups["female_share"].to_numpy()[occupations["group_id"]]
    occupations["female_share"] = np.clip(fs + rng.normal(0, 0.1, len(occ)), 0.02, 0.97).round(3)
    occupations["mean_age"] = np.clip(40 + rng.normal(0, 5, len(occ)), 26, 55).round(1)
    tax = complete_taxonomy(units, occupations, occupation_units, groups, sizes, rng, ATTRIBUTION)
    tax.unit_elements = unit_elements
    return tax
