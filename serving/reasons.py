"""Plain-word reasons for a recommended item, from the ranker's own per-feature contributions.

The ranker's score of each shown item is split into per-feature contributions
(:meth:`training.ranker.LambdaRankRanker.contributions`: path attribution, rows sum to the score). Features
are grouped into topics (competencies, interest, location, pay, ...; :data:`TOPICS`), a topic's
contribution is the sum of its features', and a topic speaks only when its sum is clearly away from
zero: the strongest positive topics become ``reasons`` and the strongest negative ones ``to_improve``. So
"covers 0 of 9 required units" can only appear as something to improve, never as a reason to recommend.
The seeker's own features (the same for every item of a response) and identifiers are not topics. A
topic's words are rendered from the item's values (the pair features of the request path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LETTERS = "RIASEC"
MIN_SHARE = 0.05  # a topic speaks when |its contribution| >= 5% of the item's total absolute contribution
MAX_REASONS, MAX_TO_IMPROVE = 3, 2

# topic -> the features it sums (pair features, item and occupation features, stage-one ranks)
TOPICS = {
    "competency": ("coverage", "missing_units", "n_required_units"),
    "interest": ("riasec_congruence",),
    "values": ("work_values_congruence",),
    "location": ("region_distance_km", "same_region"),
    "pay": ("log_wage_ratio", "posting_attributes__wage", "occupation_profile__typical_wage"),
    "education": ("education_gap", "posting_attributes__education_required"),
    "career": ("career_gap", "posting_attributes__career_required"),
    "certificates": ("certificates_required", "certificates_missing"),
    "desired": ("desired_occupation_match", "desired_group_match"),
    "timing": ("days_since_open", "days_to_close", "days_to_start"),
    "competition": (
        "posting_popularity__applies_30d",
        "posting_popularity__applies_7d",
        "posting_popularity__applies_per_headcount",
        "posting_popularity__applies_total",
        "posting_popularity__views_7d",
        "posting_attributes__headcount",
    ),
    "new_units": ("new_unit_share",),
    "gap_closure": ("desired_gap_closure",),
    "outcomes": ("course_attributes__employment_rate", "course_attributes__completion_rate"),
    "readiness": ("readiness", "already_held"),
    "certifies_desired": ("desired_requires_units",),
    "exam": ("certificate_attributes__pass_rate", "certificate_attributes__grade_level"),
    "cert_demand": (
        "certificate_attributes__demand_share",
        "certificate_attributes__open_postings_requiring",
    ),
    "similar_seekers": ("cand_rank_als", "cand_rank_two_tower"),
    "popular": ("cand_rank_popularity",),
}


# the item values :func:`_words` renders (a feature not listed here is never read for the words)
WORD_INPUTS = (
    "already_held",
    "career_gap",
    "certificate_attributes__pass_rate",
    "certificates_missing",
    "certificates_required",
    "course_attributes__employment_rate",
    "days_to_close",
    "days_to_start",
    "desired_gap_closure",
    "desired_group_match",
    "desired_occupation_match",
    "desired_requires_units",
    "education_gap",
    "log_wage_ratio",
    "missing_units",
    "n_required_units",
    "new_unit_share",
    "readiness",
    "region_distance_km",
    "same_region",
)


def top_letters(scores: np.ndarray, n: int = 2) -> str:
    """The ``n`` strongest RIASEC letters of a profile, strongest first (ties by letter order)."""
    order = np.argsort(-np.asarray(scores, float), kind="stable")[:n]
    return "".join(LETTERS[i] for i in order)


def topic_index(features: list[str]) -> dict[str, np.ndarray]:
    """Per topic, the column positions of its features in a model's ``features`` (topics the model does
    not use are left out)."""
    pos = {f: j for j, f in enumerate(features)}
    out = {}
    for topic, names in TOPICS.items():
        cols = [pos[n] for n in names if n in pos]
        if cols:
            out[topic] = np.asarray(cols, np.int64)
    return out


@dataclass(frozen=True)
class ReasonPlan:
    """What the reasons of one model need, worked out once per model load: its topics' column positions
    and the pair features the words read that are not among the model's inputs (computed for the shown
    items only)."""

    topics: dict[str, np.ndarray]
    extra_pairs: tuple[str, ...]

    @classmethod
    def of(cls, features: list[str], pair_features) -> ReasonPlan:
        have = set(features)
        extra = tuple(n for n in pair_features if n in WORD_INPUTS and n not in have)
        return cls(topic_index(features), extra)


def _words(topic: str, positive: bool, v: dict, ctx: dict) -> str | None:
    """The sentence of one topic for one item (``v``: the item's values by feature name), or None when the
    topic has nothing to say in that direction."""
    if topic == "competency":
        need = int(v.get("n_required_units", 0))
        have = need - int(v.get("missing_units", 0))
        if positive:
            return f"covers {have} of {need} required competency units" if have > 0 else None
        return f"you hold {have} of the {need} competency units it requires: see the competency gap"
    if topic == "interest":
        mine, work = ctx["letters"], top_letters(ctx["occ_riasec"])
        if positive:
            return f"matches your interest type {mine} (this work is {work})"
        return f"this work ({work}) is far from your interest type {mine}"
    if topic == "values":
        return "fits your work values" if positive else "fits your work values less well"
    if topic == "location":
        km = v.get("region_distance_km", 0.0)
        if v.get("same_region", 0) > 0:
            return f"in your region ({ctx['home']})" if positive else None
        return f"{km:.0f} km from your region" if positive or km > 0 else None
    if topic == "pay":
        if "log_wage_ratio" not in v:
            return None
        above = v["log_wage_ratio"] >= 0
        if positive:
            return "pays at least your desired wage" if above else "pays close to your desired wage"
        return None if above else "pays below your desired wage"
    if topic == "education":
        gap = v.get("education_gap", 0.0)
        if positive:
            return "your education fits what it asks" if gap <= 0 else None
        return "asks for more education than you have" if gap > 0 else None
    if topic == "career":
        gap = v.get("career_gap", 0.0)
        if positive:
            return "your experience fits what it asks" if gap <= 0 else None
        return f"asks for {gap:.0f} more year(s) of experience" if gap > 0 else None
    if topic == "certificates":
        req, miss = int(v.get("certificates_required", 0)), int(v.get("certificates_missing", 0))
        if positive:
            return "you hold the required certificate" if req > 0 and miss == 0 else None
        return f"requires {miss} certificate(s) you do not hold yet" if miss > 0 else None
    if topic == "desired":
        if v.get("desired_occupation_match", 0) > 0:
            return f"in your desired occupation ({ctx['occupation']})" if positive else None
        if v.get("desired_group_match", 0) > 0:
            return "in the occupation group you want to work in" if positive else None
        return None if positive else "outside the occupations you want to work in"
    if topic == "timing":
        if "days_to_close" in v:
            return f"open now, closes in {v['days_to_close']:.0f} days" if positive else None
        if "days_to_start" in v:
            return f"starts in {v['days_to_start']:.0f} days" if positive else None
        return None
    if topic == "competition":
        return "fewer applicants per opening than most" if positive else "many applicants per opening already"
    if topic == "new_units":
        share = v.get("new_unit_share", 0.0)
        if positive:
            return f"{share:.0%} of what it teaches is new to you" if share > 0 else None
        return "teaches little that is new to you"
    if topic == "gap_closure":
        c = v.get("desired_gap_closure", 0.0)
        if positive:
            return f"closes {c:.0%} of your gap to a desired occupation" if c > 0 else None
        return "does not close your gap to a desired occupation" if c <= 0 else None
    if topic == "outcomes":
        emp = v.get("course_attributes__employment_rate")
        if emp is None:
            return None
        return (
            f"{emp:.0%} of past participants found work"
            if positive
            else f"only {emp:.0%} of past participants found work"
        )
    if topic == "readiness":
        if v.get("already_held", 0) > 0:
            return None
        r = v.get("readiness", 0.0)
        return (
            f"you already hold {r:.0%} of the competencies it certifies"
            if positive
            else f"you hold only {r:.0%} of the competencies it certifies"
        )
    if topic == "certifies_desired":
        return (
            "certifies units your desired occupation requires"
            if positive and v.get("desired_requires_units", 0) > 0
            else None
        )
    if topic == "exam":
        p = v.get("certificate_attributes__pass_rate")
        if p is None:
            return None
        return f"pass rate {p:.0%}" if positive else f"a hard exam (pass rate {p:.0%})"
    if topic == "cert_demand":
        return "asked for by open postings" if positive else None
    if topic == "similar_seekers":
        return "seekers with a history like yours acted on it" if positive else None
    if topic == "popular":
        return "popular with other job seekers right now" if positive else None
    return None


def contribution_reasons(
    item_type: str,
    contrib: np.ndarray,
    topics: dict[str, np.ndarray],
    values: dict[str, np.ndarray],
    occupations: np.ndarray,
    psych: np.ndarray,
    home: int,
    catalog,
) -> tuple[list[list[str]], list[list[str]]]:
    """``(reasons, to_improve)`` per item. ``contrib``: (items, features + 1) contributions in the model's
    column order; ``topics``: :func:`topic_index` of that order; ``values``: feature name -> array over the
    items (pair features and model inputs); ``occupations``: each item's occupation."""
    letters = top_letters(psych)
    names = list(topics)
    sums = (
        np.stack([contrib[:, topics[t]].sum(axis=1) for t in names], axis=1)
        if names
        else np.zeros((len(contrib), 0))
    )
    total = np.abs(contrib[:, :-1]).sum(axis=1)
    # the rendered values as Python floats, one conversion for all items
    read = [k for k in WORD_INPUTS if k in values]
    rows = np.column_stack([np.asarray(values[k], np.float64) for k in read]).tolist() if read else None
    reasons, improve = [], []
    for j, occ in enumerate(int(o) for o in occupations):
        v = dict(zip(read, rows[j])) if rows is not None else {}
        ctx = {
            "letters": letters,
            "occ_riasec": catalog.occ_riasec[occ],
            "home": catalog.regions.get(home, home),
            "occupation": catalog.occupations.get(occ, occ),
        }
        floor = MIN_SHARE * total[j]
        order = np.argsort(-sums[j], kind="stable")
        pos = [_words(names[t], True, v, ctx) for t in order if sums[j, t] > floor]
        neg = [_words(names[t], False, v, ctx) for t in order[::-1] if sums[j, t] < -floor]
        reasons.append([w for w in pos if w][:MAX_REASONS])
        improve.append([w for w in neg if w][:MAX_TO_IMPROVE])
    return reasons, improve
