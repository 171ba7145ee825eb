"""Feast entities: the join keys of every feature view."""

from feast import Entity, ValueType

seeker = Entity(
    name="seeker",
    join_keys=["seeker_id"],
    value_type=ValueType.INT64,
    description="A registered job seeker (WorkNet resume holder).",
)
posting = Entity(
    name="posting", join_keys=["posting_id"], value_type=ValueType.INT64, description="A job posting."
)
training_course = Entity(
    name="training_course",
    join_keys=["course_id"],
    value_type=ValueType.INT64,
    description="A training course run (HRD-Net style).",
)
certificate = Entity(
    name="certificate",
    join_keys=["certificate_id"],
    value_type=ValueType.INT64,
    description="A national technical qualification (Q-Net style).",
)
occupation = Entity(
    name="occupation",
    join_keys=["occupation_id"],
    value_type=ValueType.INT64,
    description="An occupation of the taxonomy (KECO-style or O*NET-SOC).",
)

ENTITIES = [seeker, posting, training_course, certificate, occupation]
