"""Declared schemas of the world's tables: the one data contract every stage relies on."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobcare.world.elements import ELEMENT_KINDS
from jobcare.world.taxonomy import EDUCATION, GRADES, RIASEC, WORK_VALUES

ITEM_TYPE_VALUES = ("posting", "course", "certificate")
EVENT_TYPES = ("view", "apply", "hire", "enrol", "complete", "register", "acquire")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # int | float | str | ts | list
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple | None = None


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    dense_id: str | None = None  # ids are 0..n-1 in row order (arrays are indexed by id)
    foreign_keys: tuple[tuple[str, str, str], ...] = field(default=())  # (column, table, column)


def _i(name, lo=None, hi=None, nullable=False):
    return Column(name, "int", nullable, lo, hi)


def _f(name, lo=None, hi=None):
    return Column(name, "float", False, lo, hi)


def _s(name, allowed=None):
    return Column(name, "str", False, allowed=allowed)


def _t(name):
    return Column(name, "ts")


_RIASEC_OCC = tuple(_f(c, 1, 7) for c in RIASEC) + tuple(_f(c, 1, 7) for c in WORK_VALUES)
_RIASEC_SEEKER = tuple(_f(c, 0, 100) for c in RIASEC) + tuple(_f(c, 0, 100) for c in WORK_VALUES)

SCHEMAS: dict[str, TableSchema] = {
    s.name: s
    for s in [
        TableSchema(
            "regions",
            (_i("region_id", 0), _s("name"), _f("lat", 33, 39), _f("lon", 124, 132), _f("population_m", 0)),
            ("region_id",),
            "region_id",
        ),
        TableSchema(
            "occupation_groups",
            (
                _i("group_id", 0),
                _s("name"),
                _f("female_share", 0, 1),
                _f("wage_base", 0),
                _f("education_mean", 0, 4),
            ),
            ("group_id",),
            "group_id",
        ),
        TableSchema(
            "competency_units",
            (
                _i("unit_id", 0),
                _s("code"),
                _s("name"),
                _i("group_id", 0),
                _s("middle_code"),
                _s("minor_code"),
                _s("kind", ("ncs", "skill", "technology", "tool")),
            ),
            ("unit_id",),
            "unit_id",
            (("group_id", "occupation_groups", "group_id"),),
        ),
        TableSchema(
            "occupations",
            (
                _i("occupation_id", 0),
                _s("code"),
                _s("title"),
                _i("group_id", 0),
                *_RIASEC_OCC,
                _i("education_level", 0, len(EDUCATION) - 1),
                _i("job_zone", 1, 5),
                _f("wage", 0),
                _f("female_share", 0, 1),
                _f("mean_age", 15, 70),
            ),
            ("occupation_id",),
            "occupation_id",
            (("group_id", "occupation_groups", "group_id"),),
        ),
        TableSchema(
            "occupation_units",
            (_i("occupation_id", 0), _i("unit_id", 0), _i("importance", 1, 5), _i("level", 1, 8)),
            ("occupation_id", "unit_id"),
            None,
            (("occupation_id", "occupations", "occupation_id"), ("unit_id", "competency_units", "unit_id")),
        ),
        TableSchema(
            "certificates",
            (
                _i("certificate_id", 0),
                _s("name"),
                _s("grade", tuple(GRADES)),
                _i("anchor_occupation_id", 0),
                _i("group_id", 0),
                _f("pass_rate", 0.01, 0.99),
                _i("level", 1, 8),
                _i("min_education", 0, 4),
            ),
            ("certificate_id",),
            "certificate_id",
            (("anchor_occupation_id", "occupations", "occupation_id"),),
        ),
        TableSchema(
            "certificate_units",
            (_i("certificate_id", 0), _i("unit_id", 0), _i("level", 1, 8)),
            ("certificate_id", "unit_id"),
            None,
            (
                ("certificate_id", "certificates", "certificate_id"),
                ("unit_id", "competency_units", "unit_id"),
            ),
        ),
        TableSchema("majors", (_i("major_id", 0), _s("name"), _i("group_id", 0)), ("major_id",), "major_id"),
        TableSchema(
            "major_units",
            (_i("major_id", 0), _i("unit_id", 0), _f("affinity", 0, 1)),
            ("major_id", "unit_id"),
            None,
            (("major_id", "majors", "major_id"), ("unit_id", "competency_units", "unit_id")),
        ),
        # knowledge / skills / tools linked to each unit, ranked 1.. within (unit, kind); element_unit_id:
        # the unit the element itself is (O*NET skills and commodities), null when it is no unit (NCS)
        TableSchema(
            "unit_elements",
            (
                _i("unit_id", 0),
                _s("kind", ELEMENT_KINDS),
                _i("rank", 1),
                _s("name"),
                _f("weight", 0, 1),
                _i("element_unit_id", 0, nullable=True),
            ),
            ("unit_id", "kind", "rank"),
            None,
            (("unit_id", "competency_units", "unit_id"), ("element_unit_id", "competency_units", "unit_id")),
        ),
        TableSchema(
            "employers",
            (_i("employer_id", 0), _s("name"), _i("group_id", 0), _i("region_id", 0), _i("size", 1)),
            ("employer_id",),
            "employer_id",
            (("region_id", "regions", "region_id"),),
        ),
        TableSchema(
            "providers",
            (_i("provider_id", 0), _s("name"), _i("region_id", 0)),
            ("provider_id",),
            "provider_id",
            (("region_id", "regions", "region_id"),),
        ),
        TableSchema(
            "courses",
            (
                _i("course_id", 0),
                _s("title"),
                _i("provider_id", 0),
                _i("region_id", 0),
                _i("target_occupation_id", 0),
                _i("group_id", 0),
                _i("capacity", 1, 500),
                _i("duration_days", 1, 730),
                _t("recruit_start_at"),
                _t("start_at"),
                _t("end_at"),
                _f("completion_rate", 0, 1),
                _f("employment_rate", 0, 1),
            ),
            ("course_id",),
            "course_id",
            (
                ("provider_id", "providers", "provider_id"),
                ("region_id", "regions", "region_id"),
                ("target_occupation_id", "occupations", "occupation_id"),
            ),
        ),
        TableSchema(
            "course_units",
            (_i("course_id", 0), _i("unit_id", 0), _i("level", 1, 8)),
            ("course_id", "unit_id"),
            None,
            (("course_id", "courses", "course_id"), ("unit_id", "competency_units", "unit_id")),
        ),
        TableSchema(
            "postings",
            (
                _i("posting_id", 0),
                _i("employer_id", 0),
                _i("occupation_id", 0),
                _i("region_id", 0),
                _s("title"),
                _f("wage", 1),
                _i("headcount", 1, 1000),
                _i("education_required", 0, 4),
                _i("career_required", 0, 40),
                _t("open_at"),
                _t("close_at"),
            ),
            ("posting_id",),
            "posting_id",
            (
                ("employer_id", "employers", "employer_id"),
                ("occupation_id", "occupations", "occupation_id"),
                ("region_id", "regions", "region_id"),
            ),
        ),
        TableSchema(
            "posting_certificates",
            (_i("posting_id", 0), _i("certificate_id", 0)),
            ("posting_id", "certificate_id"),
            None,
            (("posting_id", "postings", "posting_id"), ("certificate_id", "certificates", "certificate_id")),
        ),
        TableSchema(
            "seekers",
            (
                _i("seeker_id", 0),
                _t("registered_at"),
                _s("gender", ("F", "M")),
                _i("age", 15, 80),
                _i("region_id", 0),
                _i("education_level", 0, 4),
                _i("major_id", 0),
                _i("career_years", 0, 60),
                _i("last_occupation_id", 0, nullable=True),
                Column("desired_occupation_ids", "list"),
                _f("reservation_wage", 1),
                *_RIASEC_SEEKER,
            ),
            ("seeker_id",),
            "seeker_id",
            (
                ("region_id", "regions", "region_id"),
                ("major_id", "majors", "major_id"),
                ("last_occupation_id", "occupations", "occupation_id"),
            ),
        ),
        TableSchema(
            "seeker_competency_events",
            (
                _i("seeker_id", 0),
                _i("unit_id", 0),
                _i("level", 1, 8),
                _t("ts"),
                _s("source", ("initial", "course", "certificate")),
                _i("source_id", -1),
            ),
            (),
            None,
            (("seeker_id", "seekers", "seeker_id"), ("unit_id", "competency_units", "unit_id")),
        ),
        TableSchema(
            "seeker_certificates",
            (
                _i("seeker_id", 0),
                _i("certificate_id", 0),
                _t("acquired_at"),
                _s("source", ("initial", "exam")),
            ),
            ("seeker_id", "certificate_id"),
            None,
            (("seeker_id", "seekers", "seeker_id"), ("certificate_id", "certificates", "certificate_id")),
        ),
        TableSchema(
            "sessions",
            (
                _i("session_id", 0),
                _i("seeker_id", 0),
                _s("item_type", ITEM_TYPE_VALUES),
                _t("ts"),
                _s("policy", ("greedy", "explore")),
                _i("n_available", 1),
            ),
            ("session_id",),
            None,
            (("seeker_id", "seekers", "seeker_id"),),
        ),
        TableSchema(
            "impressions",
            (
                _i("session_id", 0),
                _i("position", 0, 99),
                _i("seeker_id", 0),
                _s("item_type", ITEM_TYPE_VALUES),
                _i("item_id", 0),
                _t("ts"),
                _f("propensity", 1e-12, 1),
                _f("slate_propensity", 1e-12, 1),
            ),
            ("session_id", "position"),
            None,
            (("session_id", "sessions", "session_id"), ("seeker_id", "seekers", "seeker_id")),
        ),
        TableSchema(
            "events",
            (
                _i("event_id", 0),
                _i("seeker_id", 0),
                _s("item_type", ITEM_TYPE_VALUES),
                _i("item_id", 0),
                _s("event_type", EVENT_TYPES),
                _t("ts"),
                _i("session_id", 0),
            ),
            ("event_id",),
            None,
            (("seeker_id", "seekers", "seeker_id"), ("session_id", "sessions", "session_id")),
        ),
        TableSchema(
            "seeker_exits",
            (_i("seeker_id", 0), _t("exited_at"), _s("reason", ("hired", "churn"))),
            ("seeker_id",),
            None,
            (("seeker_id", "seekers", "seeker_id"),),
        ),
    ]
}

ITEM_TABLES = {
    "posting": ("postings", "posting_id"),
    "course": ("courses", "course_id"),
    "certificate": ("certificates", "certificate_id"),
}
