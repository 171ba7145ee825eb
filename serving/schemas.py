"""Request and response models of the online service (pydantic: the OpenAPI schema comes from these).

An inline profile is JobCare's "My data input" for a seeker the service does not know: basic
information, psych-test scores, competencies and certificates. It is personal data: it is used to
answer the request and never logged.
"""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

SeekerId = Annotated[
    int, Field(ge=0, le=2**63 - 1, description="a registered seeker's id (the online store's entity key)")
]


# world ids (occupations, regions, units, certificates, majors) are int32 in the tables: a larger id is a
# 400 at the boundary, never an overflow inside the engine
MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=0, le=MAX_ID)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Riasec(_Strict):
    """Job-interest test (Holland RIASEC) scores, 0-100."""

    R: float = Field(50.0, ge=0, le=100, description="Realistic")
    I: float = Field(50.0, ge=0, le=100, description="Investigative")  # noqa: E741
    A: float = Field(50.0, ge=0, le=100, description="Artistic")
    S: float = Field(50.0, ge=0, le=100, description="Social")
    E: float = Field(50.0, ge=0, le=100, description="Enterprising")
    C: float = Field(50.0, ge=0, le=100, description="Conventional")


class WorkValues(_Strict):
    """Work-values test scores, 0-100."""

    achievement: float = Field(50.0, ge=0, le=100)
    working_conditions: float = Field(50.0, ge=0, le=100)
    recognition: float = Field(50.0, ge=0, le=100)
    relationships: float = Field(50.0, ge=0, le=100)
    support: float = Field(50.0, ge=0, le=100)
    independence: float = Field(50.0, ge=0, le=100)


class Competency(_Strict):
    unit_id: int = Field(ge=0, le=MAX_ID, description="competency unit id")
    level: int = Field(ge=1, le=8, description="held level, 1-8")


class Profile(_Strict):
    """An inline seeker profile ("My data input")."""

    region_id: int = Field(ge=0, le=MAX_ID, description="home region (0-16)")
    education_level: int = Field(ge=0, le=4, description="0 high school ... 4 doctorate")
    career_years: int = Field(0, ge=0, le=60)
    major_id: int = Field(-1, ge=-1, le=MAX_ID, description="field of study, -1 if none")
    last_occupation_id: int = Field(-1, ge=-1, le=MAX_ID, description="-1 if none")
    desired_occupation_ids: list[Id] = Field(min_length=1, max_length=3)
    reservation_wage: float = Field(ge=1, le=10_000, description="lowest acceptable monthly wage, 10k KRW")
    riasec: Riasec = Riasec()
    work_values: WorkValues = WorkValues()
    competencies: list[Competency] = Field(default_factory=list, max_length=500)
    certificate_ids: list[Id] = Field(default_factory=list, max_length=200)


class Filters(_Strict):
    regions: list[Id] = Field(
        default_factory=list, max_length=100, description="only items in these regions (empty: all)"
    )
    occupations: list[Id] = Field(
        default_factory=list, max_length=1000, description="only items of these occupations"
    )


class SeekerRequest(_Strict):
    """Who the answer is for: a registered seeker (``seeker_id``) or an inline ``profile``, exactly one."""

    seeker_id: Optional[SeekerId] = None
    profile: Optional[Profile] = Field(
        None, description="JobCare's My data input, for a seeker the service does not know"
    )

    @model_validator(mode="after")
    def _one_seeker(self):
        if (self.seeker_id is None) == (self.profile is None):
            raise ValueError("seeker_id or profile: exactly one is required (rule: identify the seeker)")
        return self


class RecommendRequest(SeekerRequest):
    """``POST /recommend/jobs|courses|certificates``."""

    k: int = Field(10, ge=1, le=100, description="number of items, 1-100")
    filters: Optional[Filters] = None


class CompetencyGapRequest(SeekerRequest):
    """``POST /competency-gap``."""

    occupation_id: int = Field(ge=0, le=MAX_ID, description="the occupation to compare with")


class RecommendedItem(BaseModel):
    id: int
    title: str
    score: float
    rank: int
    reasons: list[str] = Field(
        description="what most raised the ranker's score of this item, in plain words (its own contributions)"
    )
    to_improve: list[str] = Field(
        default_factory=list, description="what most lowered it: what the seeker could change or check"
    )


class RecommendResponse(BaseModel):
    request_id: str
    item_type: str
    seeker_id: Optional[int]
    variant: str
    model_version: Optional[str]
    degraded: bool = Field(description="true when the online store was unreachable (item-side answer)")
    as_of: str = Field(description="the service's clock in the simulated world")
    items: list[RecommendedItem]
    reason: Optional[str] = Field(None, description="why the list is empty, when it is")
    explored: bool = Field(
        False,
        description="true when this slate is a logged exploration draw (serving.explore), not the "
        "model's order",
    )


class UnitLevel(BaseModel):
    unit_id: int
    name: str
    required_level: int
    importance: float
    held_level: int


class GapOffer(BaseModel):
    id: int
    title: str
    closes_units: list[int]


class CompetencyGapResponse(BaseModel):
    occupation_id: int
    occupation: str
    coverage: float = Field(description="importance-weighted share of required units held at level")
    required: list[UnitLevel]
    missing: list[UnitLevel]
    courses: list[GapOffer]
    certificates: list[GapOffer]
    degraded: bool
