"""Feature services: one per ranker version. Protected attributes (gender, age) are never included,
except in the audit service used by the fairness report."""

from feast import FeatureService

from features.feature_views import (
    certificate_attributes,
    course_attributes,
    occupation_profile,
    posting_attributes,
    posting_popularity,
    protected_fields,
    seeker_activity,
    seeker_competency,
    seeker_profile,
    seeker_psych,
)

_SEEKER_ALLOWED = [f.name for f in seeker_profile.schema if f.name not in protected_fields(seeker_profile)]
_SEEKER = [seeker_profile[_SEEKER_ALLOWED], seeker_psych, seeker_competency, seeker_activity]

job_ranker_v1 = FeatureService(
    name="job_ranker_v1",
    features=[*_SEEKER, posting_attributes, posting_popularity, occupation_profile],
    description="Inputs of the job-posting ranker v1 (entity rows: seeker_id, posting_id, occupation_id).",
)
course_ranker_v1 = FeatureService(
    name="course_ranker_v1",
    features=[*_SEEKER, course_attributes],
    description="Inputs of the training-course ranker v1 (entity rows: seeker_id, course_id).",
)
certificate_ranker_v1 = FeatureService(
    name="certificate_ranker_v1",
    features=[*_SEEKER, certificate_attributes],
    description="Inputs of the certificate ranker v1 (entity rows: seeker_id, certificate_id).",
)
seeker_online_v1 = FeatureService(
    name="seeker_online_v1",
    features=_SEEKER,
    description="The seeker side read from the online store per request (item features live in memory).",
)
seeker_audit_v1 = FeatureService(
    name="seeker_audit_v1",
    features=[seeker_profile[protected_fields(seeker_profile) + ["region_id", "education_level"]]],
    description="Protected attributes for the fairness audit only; never a model input.",
)

FEATURE_SERVICES = [job_ranker_v1, course_ranker_v1, certificate_ranker_v1, seeker_online_v1, seeker_audit_v1]
