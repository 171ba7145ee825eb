"""Request and response models of ``POST /package`` (:mod:`serving.package`'s rules and objective)."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

from serving.package import MAX_K
from serving.schemas import MAX_ID, SeekerRequest


class PackageRequest(SeekerRequest):
    """A registered seeker (``seeker_id``) or an inline ``profile``, exactly one, and a target occupation."""

    occupation_id: int = Field(ge=0, le=MAX_ID, description="the target occupation")
    k: int = Field(3, ge=1, le=MAX_K, description=f"number of bundles, 1-{MAX_K}")


class PackageUnit(BaseModel):
    unit_id: int
    name: str


class PackageCourse(BaseModel):
    id: int
    title: str
    closes_units: list[int] = Field(description="missing units this course alone brings to their level")
    start_in_days: float = Field(description="days from now until the run starts")
    duration_days: float
    completion_rate: float = Field(description="probability that its units count")


class PackageCertificate(BaseModel):
    id: int
    title: str
    closes_units: list[int] = Field(description="missing units this certificate alone brings to their level")
    grade_level: float = Field(description="1 craftsman, 2 industrial engineer, 3 engineer, 4 master")
    pass_rate: float = Field(description="probability that its units count")
    exam_days: float = Field(description="days of one attempt: preparation and exam, by grade")
    expected_days: float = Field(description="exam_days / pass_rate: the expected time to a pass")


class PackageBundle(BaseModel):
    rank: int
    courses: list[PackageCourse] = Field(max_length=2)
    certificates: list[PackageCertificate] = Field(max_length=2)
    closes_units: list[PackageUnit] = Field(description="missing units the bundle brings to their level")
    coverage: float = Field(description="coverage reached when every item succeeds")
    expected_coverage: float = Field(description="coverage expected with the completion and pass rates")
    expected_gain: float = Field(description="expected_coverage minus the seeker's coverage now")
    duration_days: float = Field(
        description="expected days until done: max(latest course end, sum of the certificates' expected days)"
    )
    cost_days: float = Field(
        description="expected days of effort: courses' durations + certificates' expected days"
    )
    score: float = Field(description="demand_weight * expected_gain / max(duration_days, 1)")


class PackagePosting(BaseModel):
    id: int
    title: str
    region_id: int
    region: str


class PackageResponse(BaseModel):
    occupation_id: int
    occupation: str
    coverage: float = Field(description="the seeker's importance-weighted coverage of the occupation now")
    missing_units: int
    demand_weight: float = Field(description="the occupation's demand in the seeker's region (1: not given)")
    objective: str = Field(description="the ranking objective in words")
    bundles: list[PackageBundle]
    postings: list[PackagePosting] = Field(
        description="open postings of the occupation, the seeker's region first"
    )
    reason: Optional[str] = Field(None, description="why there are no bundles, when there are none")
    degraded: bool = False
