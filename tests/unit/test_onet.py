"""The O*NET loader reads the real O*NET 29.2 files."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.conftest import ONET_DIR

pytestmark = pytest.mark.skipif(not ONET_DIR.is_dir(), reason=f"O*NET data not found at {ONET_DIR}")


def _interest_rows():
    with open(ONET_DIR / "Interests.txt", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f, delimiter="\t") if r["Scale ID"] == "OI"]


def test_loader_yields_every_occupation_with_an_interest_profile():
    from jobcare.world.onet import load_onet_occupations

    occ = load_onet_occupations(ONET_DIR)
    codes = {r["O*NET-SOC Code"] for r in _interest_rows()}
    assert len(occ) == len(codes) == 923
    row = occ.set_index("code").loc["15-1252.00"] if "15-1252.00" in set(occ["code"]) else None
    expected = {
        r["Element Name"]: float(r["Data Value"])
        for r in _interest_rows()
        if r["O*NET-SOC Code"] == "11-1011.00"
    }
    ce = occ.set_index("code").loc["11-1011.00"]
    got = ce[["riasec_r", "riasec_i", "riasec_a", "riasec_s", "riasec_e", "riasec_c"]].to_numpy(dtype=float)
    want = [
        expected[k]
        for k in ("Realistic", "Investigative", "Artistic", "Social", "Enterprising", "Conventional")
    ]
    np.testing.assert_allclose(got, want)
    assert row is None or row["title"]


def test_onet_taxonomy_units_and_world(tmp_path):
    from jobcare.config import WorldConfig
    from jobcare.contracts import validate_world
    from jobcare.world.generate import generate_world

    man = generate_world(
        WorldConfig(scale="tiny", seed=3, taxonomy="onet", onet_dir=ONET_DIR), tmp_path, show_progress=False
    )
    assert man["attribution"].startswith("This product includes information from the O*NET 29.2 Database")
    assert (tmp_path / "ATTRIBUTION.txt").is_file()
    assert man["tables"]["occupations"]["rows"] >= 900
    validate_world(tmp_path)
    import pandas as pd

    units = pd.read_parquet(tmp_path / "competency_units.parquet")
    assert set(units["kind"]) == {"skill", "technology", "tool"}
    assert (units["kind"] == "skill").sum() == 35
    ou = pd.read_parquet(tmp_path / "occupation_units.parquet").groupby("occupation_id").size()
    assert ou.max() <= 15 and ou.min() >= 3
