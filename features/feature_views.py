"""Feast feature views over the world's feature tables. Every field is described. Moments are stored
as days since the epoch in Float64 (Float32 resolves only ~3 minutes at today's dates, enough to call
a posting opening a minute after a request "open").

TTLs are 0 (no expiry) on purpose: profiles and item attributes stay true until a newer row says
otherwise, and rolling windows are daily snapshots that fall to zero by themselves, so a TTL would
only turn a true zero into a null. Every entity has a row from its first moment (registration,
opening), so an as-of join never meets "no row yet" for a live entity.
"""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Array, Float32, Float64, Int64, String

from features import data_sources as src
from features.entities import certificate, occupation, posting, seeker, training_course
from jobcare.world.taxonomy import RIASEC, WORK_VALUES

FOREVER = timedelta(0)
# certificate_attributes has a snapshot for every certificate at every midnight of the span. Feast's
# DuckDB point-in-time join is an inner join on (key, feature time <= row time) followed by a window
# de-duplication, so without a TTL each training row joins every earlier daily snapshot (~700 rows
# with list columns each): 1,000 certificate requests took 7.1 GB. A 2-day TTL bounds the join to the
# latest one or two snapshots and gives the same values (the latest snapshot is at most a day old).
DAILY_SNAPSHOT_TTL = timedelta(days=2)
PROTECTED = {"protected": "true", "purpose": "fairness audit only; never a ranker input"}
RIASEC_FIELDS = RIASEC
WORK_VALUE_FIELDS = WORK_VALUES


def _f(name, dtype, description, tags=None):
    return Field(name=name, dtype=dtype, description=description, tags=tags or {})


seeker_profile = FeatureView(
    name="seeker_profile",
    entities=[seeker],
    ttl=FOREVER,
    online=True,
    source=src.seeker_profile_source,
    description="Basic information of the resume, as registered.",
    schema=[
        _f("region_id", Int64, "home region (0-16, the 17 Korean regions)"),
        _f("education_level", Int64, "0 high school, 1 college, 2 bachelor, 3 master, 4 doctorate"),
        _f("major_id", Int64, "field of study"),
        _f("career_years", Int64, "years of work experience"),
        _f("last_occupation_id", Int64, "last occupation held, -1 if none"),
        _f("desired_occupation_ids", Array(Int64), "1-3 desired occupations, in order of preference"),
        _f("reservation_wage", Float32, "lowest acceptable monthly wage (10k KRW)"),
        _f("registered_days", Float64, "registration time, days since the epoch (seeker tenure is derived)"),
        _f("gender", String, "F or M; protected attribute", PROTECTED),
        _f("age", Int64, "age in years at registration; protected attribute", PROTECTED),
    ],
)

seeker_psych = FeatureView(
    name="seeker_psych",
    entities=[seeker],
    ttl=FOREVER,
    online=True,
    source=src.seeker_psych_source,
    description="Psych tests: job-interest (RIASEC) scores and work values, 0-100.",
    schema=[_f(c, Float32, f"job-interest test score, {c[-1].upper()} scale (0-100)") for c in RIASEC_FIELDS]
    + [
        _f(c, Float32, f"work-values test score: {c[3:].replace('_', ' ')} (0-100)")
        for c in WORK_VALUE_FIELDS
    ],
)

seeker_competency = FeatureView(
    name="seeker_competency",
    entities=[seeker],
    ttl=FOREVER,
    online=True,
    source=src.seeker_competency_source,
    description="Held competency units and certificates; a new row each time they change (course, exam).",
    schema=[
        _f("unit_ids", Array(Int64), "held competency units (sorted)"),
        _f("unit_levels", Array(Int64), "level (1-8) of each held unit, aligned with unit_ids"),
        _f("n_units", Int64, "number of held units"),
        _f("mean_unit_level", Float32, "mean level of held units (0 if none)"),
        _f("units_by_group", Array(Int64), "held units per occupation major group (hierarchy level 1)"),
        _f("certificate_ids", Array(Int64), "held certificates"),
        _f("n_certificates", Int64, "number of held certificates"),
        _f("n_courses_completed", Int64, "training courses completed so far"),
    ],
)

_ACTIVITY = []
for _w in (7, 30, 90):
    for _e, _what in (
        ("views", "items viewed"),
        ("applies", "postings applied to"),
        ("hires", "hires"),
        ("enrolments", "course enrolments"),
    ):
        _ACTIVITY.append(_f(f"{_e}_{_w}d", Int64, f"{_what} in the {_w} days before the snapshot day"))
seeker_activity = FeatureView(
    name="seeker_activity",
    entities=[seeker],
    ttl=FOREVER,
    online=True,
    source=src.seeker_activity_source,
    description="Rolling activity counts, daily snapshots at 00:00 UTC using only events before that moment.",
    schema=_ACTIVITY,
)

posting_attributes = FeatureView(
    name="posting_attributes",
    entities=[posting],
    ttl=FOREVER,
    online=True,
    source=src.posting_attributes_source,
    description="What the employer wrote in the posting.",
    schema=[
        _f("employer_id", Int64, "employer"),
        _f("occupation_id", Int64, "occupation of the job"),
        _f("region_id", Int64, "work region"),
        _f("wage", Float32, "offered monthly wage (10k KRW)"),
        _f("headcount", Int64, "positions to fill"),
        _f("education_required", Int64, "minimum education level (0-4)"),
        _f("career_required", Int64, "minimum years of experience"),
        _f("required_certificate_ids", Array(Int64), "certificates the employer requires"),
        _f("open_days", Float64, "opening time, days since the epoch"),
        _f("close_days", Float64, "planned closing time, days since the epoch"),
    ],
)

posting_popularity = FeatureView(
    name="posting_popularity",
    entities=[posting],
    ttl=FOREVER,
    online=True,
    source=src.posting_popularity_source,
    description="Daily snapshots while the posting is open, counting events before 00:00 UTC of that day.",
    schema=[
        _f("views_7d", Int64, "views in the last 7 days"),
        _f("applies_7d", Int64, "applications in the last 7 days"),
        _f("applies_30d", Int64, "applications in the last 30 days"),
        _f("applies_total", Int64, "applications since opening"),
        _f("applies_per_headcount", Float32, "applications per position (congestion)"),
    ],
)

course_attributes = FeatureView(
    name="course_attributes",
    entities=[training_course],
    ttl=FOREVER,
    online=True,
    source=src.course_attributes_source,
    description="Training course run: provider, place, dates, units taught and historical outcomes.",
    schema=[
        _f("provider_id", Int64, "training provider"),
        _f("region_id", Int64, "region where it is taught"),
        _f("target_occupation_id", Int64, "occupation the course prepares for"),
        _f("capacity", Int64, "seats"),
        _f("duration_days", Int64, "length in days"),
        _f("recruit_start_days", Float64, "recruiting opens, days since the epoch"),
        _f("start_days", Float64, "start time (recruiting closes), days since the epoch"),
        _f("completion_rate", Float32, "historical completion rate of the provider's runs"),
        _f("employment_rate", Float32, "historical employment rate 6 months after completion"),
        _f("unit_ids", Array(Int64), "competency units taught"),
        _f("unit_levels", Array(Int64), "level reached in each unit taught"),
    ],
)

certificate_attributes = FeatureView(
    name="certificate_attributes",
    entities=[certificate],
    ttl=DAILY_SNAPSHOT_TTL,
    online=True,
    source=src.certificate_attributes_source,
    description="Certificate grade, difficulty, units, and its demand in open postings (daily snapshots).",
    schema=[
        _f("grade_level", Int64, "1 craftsman, 2 industrial engineer, 3 engineer, 4 master"),
        _f("anchor_occupation_id", Int64, "occupation the certificate qualifies for"),
        _f("pass_rate", Float32, "historical exam pass rate"),
        _f("min_education", Int64, "minimum education level to sit the exam"),
        _f("unit_ids", Array(Int64), "competency units the certificate certifies"),
        _f("unit_levels", Array(Int64), "level certified in each unit"),
        _f("open_postings_requiring", Int64, "open postings requiring it at the snapshot"),
        _f("demand_share", Float32, "share of open postings requiring it at the snapshot"),
    ],
)

occupation_profile = FeatureView(
    name="occupation_profile",
    entities=[occupation],
    ttl=FOREVER,
    online=True,
    source=src.occupation_profile_source,
    description="Occupation requirements and profile from the taxonomy (NCS/KECO-style or O*NET).",
    schema=[
        _f("group_id", Int64, "occupation major group"),
        _f("education_level", Int64, "typical education level (0-4)"),
        _f("job_zone", Int64, "preparation level (1-5)"),
        _f("typical_wage", Float32, "typical monthly wage (10k KRW)"),
        _f("required_unit_ids", Array(Int64), "required competency units"),
        _f("required_unit_importance", Array(Int64), "importance (1-5) of each required unit"),
        _f("required_unit_levels", Array(Int64), "required level (1-8) of each unit"),
    ]
    + [_f(f"occ_{c}", Float32, f"interest profile, {c[-1].upper()} scale (1-7)") for c in RIASEC_FIELDS]
    + [
        _f(f"occ_{c}", Float32, f"work-values profile: {c[3:].replace('_', ' ')} (1-7)")
        for c in WORK_VALUE_FIELDS
    ],
)

FEATURE_VIEWS = [
    seeker_profile,
    seeker_psych,
    seeker_competency,
    seeker_activity,
    posting_attributes,
    posting_popularity,
    course_attributes,
    certificate_attributes,
    occupation_profile,
]


def protected_fields(view: FeatureView) -> list[str]:
    """Names of the fields tagged protected in ``view``."""
    return [f.name for f in view.schema if f.tags.get("protected") == "true"]
