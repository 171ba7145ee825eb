"""Feast data sources: Parquet feature tables built from a world by :mod:`features.tables`.

Paths are relative to the feature repository folder (Feast resolves them against ``repo_path``), so
one set of declarations serves every world and profile.
"""

from feast import FileSource


def _source(name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=f"data/{name}.parquet",
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description=f"features/tables.py -> data/{name}.parquet",
    )


seeker_profile_source = _source("seeker_profile")
seeker_psych_source = _source("seeker_psych")
seeker_competency_source = _source("seeker_competency")
seeker_activity_source = _source("seeker_activity")
posting_attributes_source = _source("posting_attributes")
posting_popularity_source = _source("posting_popularity")
course_attributes_source = _source("course_attributes")
certificate_attributes_source = _source("certificate_attributes")
occupation_profile_source = _source("occupation_profile")

SOURCES = [
    seeker_profile_source,
    seeker_psych_source,
    seeker_competency_source,
    seeker_activity_source,
    posting_attributes_source,
    posting_popularity_source,
    course_attributes_source,
    certificate_attributes_source,
    occupation_profile_source,
]
