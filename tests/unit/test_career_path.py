"""The career development path (``POST /career-path``): known answers on hand-built tables, both
taxonomies on generated tiny worlds, and the ``unit_elements`` contract."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pydantic import ValidationError

import serving.career_path as cp_module
from jobcare.contracts import validate_tables
from serving.career_path import TABLES, CareerPath, CareerPathUnknownIdError
from serving.career_path_schemas import MAX_NESTED, CareerPathRequest
from serving.errors import ServingError
from tests.conftest import ONET_DIR

AS_OF = "2024-03-01"


def _ts(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC")


def _courses() -> pd.DataFrame:
    # (recruit_start, start, end): status at AS_OF
    runs = [
        ("2024-02-01", "2024-03-20", "2024-06-01"),  # 0 recruiting
        ("2024-02-15", "2024-03-10", "2024-05-01"),  # 1 recruiting, starts sooner than 0
        ("2024-03-10", "2024-04-20", "2024-08-01"),  # 2 upcoming
        ("2023-12-01", "2024-01-15", "2024-05-01"),  # 3 running
        ("2023-10-01", "2023-11-15", "2024-01-31"),  # 4 ended
        ("2023-11-01", "2023-12-15", "2024-02-15"),  # 5 ended, started later than 4
        ("2024-01-15", "2024-03-01", "2024-07-01"),  # 6 running (starts at as_of: enrolment closed)
    ]
    return pd.DataFrame(
        {
            "course_id": range(len(runs)),
            "title": [f"course {i}" for i in range(len(runs))],
            "region_id": [0, 1, 0, 1, 0, 1, 0],
            "recruit_start_at": [_ts(r[0]) for r in runs],
            "start_at": [_ts(r[1]) for r in runs],
            "end_at": [_ts(r[2]) for r in runs],
        }
    )


def _elements() -> pd.DataFrame:
    rows = [
        (0, "knowledge", 1, "algorithms", 0.9, None),
        (0, "knowledge", 2, "data structures", 0.7, None),
        (0, "skill", 1, "coding", 1.0, None),
        (0, "tool", 1, "version control", 0.8, None),
        (0, "tool", 2, "build server", 0.8, None),
        (1, "knowledge", 1, "testing standards", 0.9, None),
        (1, "skill", 1, "test design", 0.9, None),
        (1, "skill", 2, "coding", 0.6, None),
        (1, "tool", 1, "version control", 0.5, None),
        (2, "knowledge", 1, "anatomy", 1.0, None),
        (2, "skill", 1, "patient assessment", 0.8, 2),
        (2, "tool", 1, "stethoscope", 0.9, None),
    ]
    df = pd.DataFrame(rows, columns=["unit_id", "kind", "rank", "name", "weight", "element_unit_id"])
    df["element_unit_id"] = df["element_unit_id"].astype("Int32")
    return df


@pytest.fixture()
def tables() -> dict[str, pd.DataFrame]:
    return {
        "regions": pd.DataFrame({"region_id": [0, 1], "name": ["Seoul", "Busan"]}),
        "occupation_groups": pd.DataFrame(
            {"group_id": [0, 1], "name": ["Engineering & IT", "Health & Medical"]}
        ),
        "competency_units": pd.DataFrame(
            {
                "unit_id": [0, 1, 2, 3],
                "code": ["02010101", "02010102", "03010101", "03010102"],
                "name": ["programming", "testing", "patient care", "unlinked"],
                "group_id": [0, 0, 1, 1],
                "middle_code": ["0201", "0201", "0301", "0301"],
                "minor_code": ["020101", "020101", "030101", "030101"],
                "kind": "ncs",
            }
        ),
        "occupations": pd.DataFrame(
            {
                "occupation_id": [0, 1, 2],
                "code": ["0201", "0202", "0301"],
                "title": ["Software developer", "QA engineer", "Nurse"],
                "group_id": [0, 0, 1],
            }
        ),
        "occupation_units": pd.DataFrame(
            [(0, 0, 5, 5), (0, 1, 3, 4), (1, 1, 5, 5), (1, 0, 5, 3), (2, 2, 5, 4), (2, 0, 1, 2)],
            columns=["occupation_id", "unit_id", "importance", "level"],
        ),
        "certificates": pd.DataFrame(
            {
                "certificate_id": [0, 1, 2],
                "name": ["Engineer IP", "Craftsman IP", "Industrial Engineer IP"],
                "grade": ["engineer", "craftsman", "industrial_engineer"],
                "pass_rate": [0.4, 0.6, 0.5],
            }
        ),
        "certificate_units": pd.DataFrame(
            [(0, 0, 5), (1, 0, 3), (2, 0, 3), (2, 1, 4)], columns=["certificate_id", "unit_id", "level"]
        ),
        "majors": pd.DataFrame(
            {"major_id": [0, 1, 2], "name": ["Computer science", "Software eng.", "Nursing"]}
        ),
        "major_units": pd.DataFrame(
            [(0, 0, 0.9), (1, 0, 0.95), (1, 1, 0.5), (2, 2, 1.0)], columns=["major_id", "unit_id", "affinity"]
        ),
        "courses": _courses(),
        "course_units": pd.DataFrame({"course_id": range(7), "unit_id": 0, "level": [3, 3, 4, 4, 3, 3, 5]}),
        "unit_elements": _elements(),
    }


def _ids(rows: list, key: str) -> list:
    return [getattr(r, key) for r in rows]


def test_unit_path_known_answer(tables):
    p = CareerPath(tables, AS_OF).answer(CareerPathRequest(unit_id=0))
    assert p.occupation is None and p.notes == [] and p.as_of == "2024-03-01T00:00:00+00:00"
    u = p.unit
    assert (u.unit.name, u.unit.group, u.unit.middle_code, u.unit.minor_code) == (
        "programming",
        "Engineering & IT",
        "0201",
        "020101",
    )
    assert [(m.name, m.affinity) for m in u.majors] == [("Software eng.", 0.95), ("Computer science", 0.9)]
    # level lowest first, then pass rate highest first
    assert _ids(u.certificates, "certificate_id") == [1, 2, 0] and u.certificates_total == 3
    assert [(c.grade, c.level) for c in u.certificates] == [
        ("craftsman", 3),
        ("industrial_engineer", 3),
        ("engineer", 5),
    ]
    # recruiting (soonest start first), upcoming, then running and ended (latest start first)
    assert _ids(u.courses, "course_id") == [1, 0, 2, 6, 3, 5, 4]
    assert _ids(u.courses, "status") == [
        "recruiting",
        "recruiting",
        "upcoming",
        "running",
        "running",
        "ended",
        "ended",
    ]
    assert (u.courses_total, u.courses_recruiting) == (7, 2)
    assert (u.courses[0].region, u.courses[0].start_date, u.courses[0].level) == ("Busan", "2024-03-10", 3)
    assert [(o.title, o.importance, o.level) for o in u.occupations] == [
        ("Software developer", 5, 5),
        ("QA engineer", 5, 3),
        ("Nurse", 1, 2),
    ]
    assert u.occupations[2].group == "Health & Medical" and u.occupations_total == 3
    e = u.elements
    assert [x.name for x in e.knowledge] == ["algorithms", "data structures"]
    assert [(x.name, x.weight) for x in e.tools] == [("version control", 0.8), ("build server", 0.8)]
    assert (e.knowledge_total, e.skills_total, e.tools_total) == (2, 1, 2)


def test_unit_path_element_rank_and_unit_reference(tables):
    cp = CareerPath(tables, AS_OF)
    e = cp.answer(CareerPathRequest(unit_id=1)).unit.elements
    assert [x.name for x in e.skills] == ["test design", "coding"]  # the world's rank, not re-sorted
    s = cp.answer(CareerPathRequest(unit_id=2)).unit.elements.skills
    assert [(x.name, x.unit_id) for x in s] == [("patient assessment", 2)]


def test_unit_without_links_answers_empty_lists(tables):
    u = CareerPath(tables, AS_OF).answer(CareerPathRequest(unit_id=3)).unit
    assert u.majors == u.certificates == u.courses == u.occupations == []
    assert (u.majors_total, u.courses_total, u.courses_recruiting, u.elements.skills_total) == (0, 0, 0, 0)


def test_lists_are_truncated_with_totals(tables, monkeypatch):
    monkeypatch.setattr(cp_module, "MAX_ITEMS", 2)
    monkeypatch.setattr(cp_module, "MAX_ELEMENTS", 1)
    p = CareerPath(tables, AS_OF).answer(CareerPathRequest(unit_id=0))
    assert _ids(p.unit.courses, "course_id") == [1, 0] and p.unit.courses_total == 7
    assert _ids(p.unit.certificates, "certificate_id") == [1, 2] and p.unit.certificates_total == 3
    assert [x.name for x in p.unit.elements.tools] == ["version control"] and p.unit.elements.tools_total == 2
    assert p.limits == {"items": 2, "nested": MAX_NESTED, "elements": 1}


def test_occupation_path_known_answer(tables):
    o = CareerPath(tables, AS_OF).answer(CareerPathRequest(occupation_id=0)).occupation
    assert (o.occupation.title, o.occupation.code, o.occupation.group) == (
        "Software developer",
        "0201",
        "Engineering & IT",
    )
    assert [(r.path.unit.unit_id, r.importance, r.level) for r in o.units] == [(0, 5, 5), (1, 3, 4)]
    assert o.units_total == 2
    first = o.units[0].path  # nested lists capped at MAX_NESTED, totals intact
    assert _ids(first.courses, "course_id") == [1, 0, 2, 6, 3][:MAX_NESTED] and first.courses_total == 7
    e = o.elements
    assert [(x.name, x.weight) for x in e.knowledge] == [
        ("algorithms", 0.9),
        ("data structures", 0.7),
        ("testing standards", 0.54),
    ]
    assert [(x.name, x.weight) for x in e.skills] == [("coding", 1.0), ("test design", 0.54)]
    assert [x.name for x in e.tools] == ["version control", "build server"]


def test_occupation_elements_ties_by_units_then_name(tables):
    e = CareerPath(tables, AS_OF).answer(CareerPathRequest(occupation_id=1)).occupation.elements
    # algorithms and testing standards tie at 0.9 (one unit each): by name
    assert [(x.name, x.weight) for x in e.knowledge][:2] == [("algorithms", 0.9), ("testing standards", 0.9)]
    # version control (two units) and build server (one unit) tie at 0.8: more units first
    assert [(x.name, x.weight) for x in e.tools] == [("version control", 0.8), ("build server", 0.8)]


def test_as_of_moves_course_statuses(tables):
    later = CareerPath(tables, "2024-03-12").answer(CareerPathRequest(unit_id=0)).unit
    assert _ids(later.courses, "course_id")[:2] == [0, 2] and later.courses_recruiting == 2
    assert later.courses[2].course_id == 1 and later.courses[2].status == "running"


@pytest.mark.parametrize(
    "body",
    [{}, {"unit_id": 1, "occupation_id": 2}, {"unit_id": None, "occupation_id": None}],
)
def test_exactly_one_of_unit_and_occupation(body):
    with pytest.raises(ValidationError) as e:
        CareerPathRequest(**body)
    assert "unit_id or occupation_id: exactly one" in str(e.value)


def test_unknown_fields_and_negative_ids_are_refused():
    with pytest.raises(ValidationError, match="extra"):
        CareerPathRequest(unit_id=1, seeker_id=3)
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        CareerPathRequest(unit_id=-1)


def test_unknown_ids_are_404_naming_field_and_range(tables):
    cp = CareerPath(tables, AS_OF)
    with pytest.raises(CareerPathUnknownIdError) as e:
        cp.answer(CareerPathRequest(unit_id=4))
    assert isinstance(e.value, ServingError) and e.value.status == 404
    assert str(e.value) == "unit_id: unknown id 4 (valid ids 0-3)"
    with pytest.raises(CareerPathUnknownIdError, match=r"occupation_id: unknown id 99 \(valid ids 0-2\)"):
        cp.answer(CareerPathRequest(occupation_id=99))


def test_world_without_unit_elements_answers_with_a_note(tables):
    del tables["unit_elements"]
    p = CareerPath(tables, AS_OF).answer(CareerPathRequest(occupation_id=0))
    assert p.occupation.elements.skills == [] and p.occupation.units[0].path.majors
    assert "no unit_elements table" in p.notes[0]


def _busiest(world) -> tuple[int, int]:
    """The unit linked to most majors, certificates and occupations, and an occupation requiring it."""
    t = {
        n: pd.read_parquet(world / f"{n}.parquet")
        for n in ("major_units", "certificate_units", "occupation_units")
    }
    score = sum(df.groupby("unit_id").size().clip(upper=1) for df in t.values()).fillna(0)
    n = t["occupation_units"].groupby("unit_id").size().reindex(score.index).fillna(0)
    unit = int(pd.DataFrame({"s": score, "n": n}).sort_values(["s", "n"], ascending=False).index[0])
    ou = t["occupation_units"]
    return unit, int(ou.loc[ou["unit_id"] == unit, "occupation_id"].iloc[0])


def _check_world(world, knowledge: bool) -> None:
    span = json.loads((world / "manifest.json").read_text())["span"]
    cp = CareerPath.from_world(world, pd.Timestamp(span["start"]) + pd.Timedelta(days=60))
    unit, occ = _busiest(world)
    u = cp.answer(CareerPathRequest(unit_id=unit)).unit
    assert u.majors and u.certificates and u.occupations
    trained = int(pd.read_parquet(world / "course_units.parquet")["unit_id"].iloc[0])
    assert cp.answer(CareerPathRequest(unit_id=trained)).unit.courses
    assert u.elements.skills and u.elements.tools and bool(u.elements.knowledge) is knowledge
    o = cp.answer(CareerPathRequest(occupation_id=occ)).occupation
    assert o.units and unit in [r.path.unit.unit_id for r in o.units]
    assert o.elements.skills and o.elements.tools and bool(o.elements.knowledge) is knowledge
    assert all(len(r.path.courses) <= MAX_NESTED for r in o.units)


def test_generated_synthetic_world_answers(tiny_world):
    _check_world(tiny_world, knowledge=True)
    e = pd.read_parquet(tiny_world / "unit_elements.parquet")
    units = pd.read_parquet(tiny_world / "competency_units.parquet")
    per_unit = e.groupby(["unit_id", "kind"]).size().unstack()
    assert len(per_unit) == len(units) and per_unit.notna().all().all()  # every unit has all three kinds
    assert e["element_unit_id"].isna().all()


@pytest.fixture(scope="module")
def onet_world(tmp_path_factory):
    if not ONET_DIR.is_dir():
        pytest.skip(f"O*NET data not found at {ONET_DIR}")
    from jobcare.config import WorldConfig
    from jobcare.world.generate import generate_world

    out = tmp_path_factory.mktemp("onet_world")
    generate_world(
        WorldConfig(scale="tiny", seed=3, taxonomy="onet", onet_dir=ONET_DIR), out, show_progress=False
    )
    return out


def test_generated_onet_world_answers_without_knowledge(onet_world):
    _check_world(onet_world, knowledge=False)
    cp = CareerPath.from_world(onet_world, "2024-01-01")
    assert any(
        "no knowledge elements" in n and "O*NET" in n for n in cp.answer(CareerPathRequest(unit_id=0)).notes
    )
    e = pd.read_parquet(onet_world / "unit_elements.parquet")
    units = pd.read_parquet(onet_world / "competency_units.parquet")
    first = e[e["rank"] == 1].merge(units, on="unit_id")
    own = first[
        first["kind_x"] == first["kind_y"].map({"skill": "skill", "technology": "tool", "tool": "tool"})
    ]
    assert (own["element_unit_id"] == own["unit_id"]).all() and len(own) == len(units)  # each unit is its own
    assert set(e["kind"]) == {"skill", "tool"}


def test_unit_elements_contract(tiny_tables, tiny_world):
    span = json.loads((tiny_world / "manifest.json").read_text())["span"]
    start, end = pd.Timestamp(span["start"]), pd.Timestamp(span["end"])
    t = dict(tiny_tables)
    assert "unit_elements" in t and not validate_tables(t, start, end)
    bad = t["unit_elements"].copy()
    bad.loc[0, "unit_id"] = 99_999
    bad.loc[1, "kind"] = "attitude"
    rules = {(v.rule, v.table, v.column) for v in validate_tables({**t, "unit_elements": bad}, start, end)}
    assert ("not_allowed", "unit_elements", "kind") in rules
    bad.loc[1, "kind"] = t["unit_elements"].loc[1, "kind"]
    vs = validate_tables({**t, "unit_elements": bad}, start, end)
    assert [(v.rule, v.table, v.column) for v in vs] == [("foreign_key", "unit_elements", "unit_id")]
    del t["unit_elements"]
    assert [(v.rule, v.table) for v in validate_tables(t, start, end)] == [("missing_table", "unit_elements")]


def test_tables_constant_lists_what_the_class_reads(tables):
    assert set(tables) == set(TABLES)
