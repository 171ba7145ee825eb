"""Request and response models of ``POST /career-path`` (:mod:`serving.career_path` computes them).

The career development path of a competency unit: the majors that teach it, the certificates that
certify it, the training courses that train it, the occupations that require it and the knowledge,
skills and tools linked to it (the world's ``unit_elements`` table). Asked for an occupation, the same
path for each of its required units, shorter, plus the occupation's knowledge, skills and tools.

Lists are capped (a unit's lists at :data:`MAX_ITEMS`, the per-unit lists inside an occupation's answer
at :data:`MAX_NESTED`, elements at :data:`MAX_ELEMENTS` per kind); every capped list comes with its
total count. O*NET-based worlds have no knowledge elements (the O*NET files used hold no Knowledge
ratings): their ``knowledge`` lists are empty and ``notes`` says so.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.schemas import MAX_ID

MAX_ITEMS = 20  # majors, certificates, courses and occupations listed for a unit
MAX_NESTED = 5  # the same lists for each required unit inside an occupation's answer
MAX_ELEMENTS = 10  # knowledge items, skills and tools listed per kind

CourseStatus = Literal["recruiting", "upcoming", "running", "ended"]


class CareerPathRequest(BaseModel):
    """A competency unit (``unit_id``) or an occupation (``occupation_id``), exactly one."""

    model_config = ConfigDict(extra="forbid")

    unit_id: Optional[int] = Field(
        None, ge=0, le=MAX_ID, description="the competency unit whose path to describe"
    )
    occupation_id: Optional[int] = Field(
        None, ge=0, le=MAX_ID, description="the occupation whose required units' paths to describe"
    )

    @model_validator(mode="after")
    def _one_question(self) -> CareerPathRequest:
        if (self.unit_id is None) == (self.occupation_id is None):
            raise ValueError("unit_id or occupation_id: exactly one is required (rule: one path per request)")
        return self


class UnitInfo(BaseModel):
    """A competency unit and its place in the hierarchy."""

    unit_id: int = Field(description="the unit's id")
    code: str = Field(description="its code (NCS: 8 digits; O*NET: element id or UNSPSC commodity code)")
    name: str = Field(description="its name")
    kind: str = Field(description="ncs (synthetic taxonomy), skill, technology or tool (O*NET)")
    group_id: int = Field(description="the occupation major group the unit belongs to most")
    group: str = Field(description="that group's name")
    middle_code: str = Field(description="code of its middle classification")
    minor_code: str = Field(description="code of its minor classification")


class MajorLink(BaseModel):
    """A major that teaches the unit."""

    major_id: int = Field(description="the major's id")
    name: str = Field(description="the major's name")
    affinity: float = Field(description="how strongly the major teaches the unit, 0-1")


class CertificateLink(BaseModel):
    """A certificate that certifies the unit."""

    certificate_id: int = Field(description="the certificate's id")
    name: str = Field(description="the certificate's name")
    grade: str = Field(description="craftsman, industrial_engineer, engineer or master")
    level: int = Field(description="the unit level (1-8) the certificate attests")
    pass_rate: float = Field(description="share of candidates who pass its exam, 0-1")


class CourseLink(BaseModel):
    """A training course (run) that trains the unit."""

    course_id: int = Field(description="the course run's id")
    title: str = Field(description="the course's title")
    region_id: int = Field(description="where it is held")
    region: str = Field(description="the region's name")
    status: CourseStatus = Field(
        description="at as_of: recruiting (enrolment open), upcoming (recruiting later), running or ended"
    )
    recruit_start_date: str = Field(description="first day of enrolment, ISO date (UTC)")
    start_date: str = Field(description="first day of the course, ISO date (UTC)")
    end_date: str = Field(description="last day of the course, ISO date (UTC)")
    level: int = Field(description="the unit level (1-8) the course trains to")


class OccupationLink(BaseModel):
    """An occupation that requires the unit."""

    occupation_id: int = Field(description="the occupation's id")
    title: str = Field(description="the occupation's title")
    group_id: int = Field(description="its major group")
    group: str = Field(description="the group's name")
    importance: int = Field(description="how important the unit is to the occupation, 1-5")
    level: int = Field(description="the unit level (1-8) the occupation requires")


class Element(BaseModel):
    """A knowledge item, skill or tool linked to a unit (or to an occupation's units)."""

    name: str = Field(description="the element's name")
    weight: float = Field(
        description="strength of the link, 0-1 (for an occupation: max over its units of "
        "importance / 5 x the unit's link weight)"
    )
    unit_id: Optional[int] = Field(
        None, description="the competency unit this element itself is (O*NET skills and tools), else null"
    )


class Elements(BaseModel):
    """Knowledge, skills and tools, each list strongest first."""

    knowledge: list[Element] = Field(description="knowledge items (empty in O*NET-based worlds)")
    skills: list[Element] = Field(description="skills")
    tools: list[Element] = Field(description="tools, equipment and technology")
    knowledge_total: int = Field(description="knowledge items linked in all (before the cap)")
    skills_total: int = Field(description="skills linked in all (before the cap)")
    tools_total: int = Field(description="tools linked in all (before the cap)")


class UnitPath(BaseModel):
    """The career development path of one unit; each list is capped, its total is given beside it."""

    unit: UnitInfo = Field(description="the unit")
    majors: list[MajorLink] = Field(description="majors teaching it, by affinity (highest first), ties by id")
    majors_total: int = Field(description="majors teaching it in all")
    certificates: list[CertificateLink] = Field(
        description="certificates certifying it, by level (lowest first), then pass rate (highest), then id"
    )
    certificates_total: int = Field(description="certificates certifying it in all")
    courses: list[CourseLink] = Field(
        description="courses training it: recruiting at as_of first, then upcoming (both by start date, "
        "soonest first), then running and ended (by start date, latest first); ties by id"
    )
    courses_total: int = Field(description="courses training it in all")
    courses_recruiting: int = Field(description="of those, courses recruiting at as_of")
    occupations: list[OccupationLink] = Field(
        description="occupations requiring it, by importance (highest first), then level (highest), then id"
    )
    occupations_total: int = Field(description="occupations requiring it in all")
    elements: Elements = Field(description="knowledge, skills and tools linked to the unit")


class OccupationInfo(BaseModel):
    """An occupation."""

    occupation_id: int = Field(description="the occupation's id")
    code: str = Field(description="its code (KECO-style or O*NET-SOC)")
    title: str = Field(description="its title")
    group_id: int = Field(description="its major group")
    group: str = Field(description="the group's name")


class RequiredUnit(BaseModel):
    """One unit an occupation requires, with the unit's own (shorter) path."""

    importance: int = Field(description="how important the unit is to the occupation, 1-5")
    level: int = Field(description="the unit level (1-8) the occupation requires")
    path: UnitPath = Field(description=f"the unit's path, lists capped at {MAX_NESTED}")


class OccupationPath(BaseModel):
    """The paths of an occupation's required units and its knowledge, skills and tools."""

    occupation: OccupationInfo = Field(description="the occupation")
    units: list[RequiredUnit] = Field(
        description="its required units, by importance (highest first), then level (highest), then id"
    )
    units_total: int = Field(description="units it requires")
    elements: Elements = Field(
        description="knowledge, skills and tools of its units merged by name: weight = max over the units "
        "of importance / 5 x link weight; ties by how many units link it, then name"
    )


class CareerPathResponse(BaseModel):
    """The answer: ``unit`` for a unit_id request, ``occupation`` for an occupation_id request."""

    as_of: str = Field(description="the instant at which course statuses are read (ISO, UTC)")
    taxonomy_kinds: list[str] = Field(description="unit kinds of the world (ncs, or skill/technology/tool)")
    unit: Optional[UnitPath] = Field(None, description="the unit's path (unit_id requests)")
    occupation: Optional[OccupationPath] = Field(
        None, description="the occupation's paths (occupation_id requests)"
    )
    limits: dict[str, int] = Field(description="the list caps applied: items, nested, elements")
    notes: list[str] = Field(description="what the world cannot answer (e.g. no knowledge elements)")
