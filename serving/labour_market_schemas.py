"""Request and response models of ``POST /labour-market`` (:mod:`serving.labour_market` computes them).

Privacy: every count of people (seekers, applicants, hires, trainees) is a :class:`Cell`; a cell built
from fewer than ``min_people`` people, or one that could be recovered from a published total by
subtraction, has ``value: null`` and ``suppressed: true``. Posting counts and headcounts describe
employers' postings, not people, and are never suppressed. See :mod:`serving.labour_market` for the rule.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.schemas import MAX_ID, Id

MAX_YEARS = 50
MAX_CERTIFICATES = 50


class LabourMarketRequest(BaseModel):
    """Either an ``occupation_id`` (its labour-market information) or ``certificate_ids`` (the occupations
    whose postings ask for them), exactly one; ``region_id`` and ``years`` narrow either answer."""

    model_config = ConfigDict(extra="forbid")

    occupation_id: Optional[int] = Field(None, ge=0, le=MAX_ID, description="the occupation to describe")
    certificate_ids: Optional[list[Id]] = Field(
        None,
        min_length=1,
        max_length=MAX_CERTIFICATES,
        description="held certificates: which occupations ask for them",
    )
    region_id: Optional[int] = Field(
        None, ge=0, le=MAX_ID, description="one region (absent: every region and the nation)"
    )
    years: Optional[int] = Field(
        None, ge=1, le=MAX_YEARS, description="how many latest calendar years to return (absent: all)"
    )

    @model_validator(mode="after")
    def _one_question(self) -> LabourMarketRequest:
        if (self.occupation_id is None) == (self.certificate_ids is None):
            raise ValueError(
                "occupation_id or certificate_ids: exactly one is required (rule: one question per request)"
            )
        return self


class Cell(BaseModel):
    """A count of people; ``value`` is null when ``suppressed``."""

    value: Optional[int] = Field(description="number of distinct people (null when suppressed)")
    suppressed: bool = Field(description="true when the cell is withheld by the small-cell rule")


class Rate(BaseModel):
    """A share of people; null when suppressed (denominator, numerator or its complement too small)."""

    value: Optional[float] = Field(description="numerator / denominator, 0-1 (null when suppressed)")
    suppressed: bool


class SeriesRow(BaseModel):
    """One region (or the nation, ``region_id`` null) in one calendar year."""

    region_id: Optional[int] = Field(description="null: all regions")
    region: str
    year: int
    postings: int = Field(description="postings of the occupation opened in the region that year")
    headcount: int = Field(description="positions those postings offer (sum of headcount)")
    applicants: Cell = Field(description="distinct seekers living in the region who applied that year")
    hires: Cell = Field(description="distinct seekers living in the region hired into it that year")
    new_seekers: Cell = Field(
        description="seekers living in the region, registered that year, who desire the occupation"
    )


class CertificateCount(BaseModel):
    certificate_id: int
    name: str
    postings: int = Field(description="postings of the occupation opened in the latest year requiring it")
    share: float = Field(description="postings / all postings of the occupation opened that year")
    previous_postings: int = Field(description="the same count in the previous year")
    change: int = Field(description="postings - previous_postings")


class TopCertificates(BaseModel):
    year: int = Field(description="the latest year")
    previous_year: int
    postings: int = Field(description="postings of the occupation opened in the latest year")
    items: list[CertificateCount] = Field(max_length=5, description="by postings, most first, ties by id")


class Training(BaseModel):
    """Courses of the occupation's field (courses whose target occupation is in its group), measured
    from enrolment, completion and hire events."""

    group_id: int
    field: str
    n_courses: int = Field(description="courses of the field (in the region) that ended before as_of")
    enrolled: Cell = Field(description="distinct seekers enrolled in a course of the field that has ended")
    completed: Cell = Field(description="of them, those who completed one")
    completion_rate: Rate
    followed_up: Cell = Field(
        description="completers whose first completion is at least employment_window_days before as_of"
    )
    employed: Cell = Field(description="of them, those hired (any posting) within the window after it")
    employment_rate: Rate
    employment_window_days: int
    catalogue_completion_rate: Optional[float] = Field(
        description="mean of the courses table's stated completion_rate over the same courses (not measured)"
    )
    catalogue_employment_rate: Optional[float] = Field(
        description="mean of the courses table's stated employment_rate over the same courses (not measured)"
    )


class CategoryCount(BaseModel):
    key: Optional[int] = Field(description="category id (education level, major id); null for bands/other")
    label: str
    count: Cell
    share: Optional[float] = Field(description="count / total (null when either is suppressed)")


class Distribution(BaseModel):
    """One year's new hires into the occupation (region or nation) by one attribute."""

    year: int
    total: Cell = Field(description="distinct seekers hired into the occupation that year")
    items: list[CategoryCount]


class OccupationAnswer(BaseModel):
    occupation_id: int
    occupation: str
    group_id: int
    field: str
    region_id: Optional[int]
    region: str
    as_of: str = Field(description="only events, postings and registrations before this instant count")
    min_people: int = Field(description="cells of fewer people are suppressed")
    years: list[int] = Field(description="the calendar years returned, oldest first")
    series: list[SeriesRow] = Field(description="by region (nation last) then year")
    top_certificates: TopCertificates
    training: Training
    hires_by_education: list[Distribution] = Field(description="one per year, oldest first")
    hires_by_major: list[Distribution] = Field(
        description="one per year; majors with a published count, then one 'other majors' row"
    )
    hires_by_age: list[Distribution] = Field(description="one per year; age at hire in bands")


class CertificateRef(BaseModel):
    certificate_id: int
    name: str


class OccupationDemand(BaseModel):
    occupation_id: int
    occupation: str
    postings: int = Field(
        description="postings of the occupation asking for at least one of the certificates"
    )
    share: float = Field(description="postings / postings asking for at least one of the certificates")
    share_of_occupation: float = Field(description="postings / all postings of the occupation")


class CertificatesAnswer(BaseModel):
    certificates: list[CertificateRef]
    region_id: Optional[int]
    region: str
    as_of: str
    years: list[int] = Field(description="postings opened in these calendar years count")
    postings: int = Field(description="postings asking for at least one of the certificates")
    items: list[OccupationDemand] = Field(max_length=5, description="by postings, most first, ties by id")


class LabourMarketResponse(BaseModel):
    """The answer: ``occupation`` for an ``occupation_id`` request, ``certificates`` for a
    ``certificate_ids`` request (the other is null)."""

    occupation: Optional[OccupationAnswer] = Field(None, description="the occupation's information")
    certificates: Optional[CertificatesAnswer] = Field(
        None, description="the occupations whose postings ask for the certificates"
    )
