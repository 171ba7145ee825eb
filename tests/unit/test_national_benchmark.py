"""benchmarks/national.py's growth target: per stage, with the parts of a stage reported beside it."""

from __future__ import annotations

from tests.benchmark_scripts import load


def test_a_stage_over_60x_fails_the_target_and_a_part_over_it_is_listed_beside_it():
    n = load("national")
    stages = [
        "feature_tables",
        "feature_tables/seeker_activity",
        "posting/stage_one",
        "posting/stage_one/als",
    ]
    stages += ["posting/ranker_rows"]  # "posting" is not a timed stage: this is a stage, not a part
    parts_over = {"feature_tables/seeker_activity": 64.7, "posting/stage_one/als": 63.5}
    ok, over = n.growth_checks({"feature_tables": 42.0, "posting/stage_one": 5.0, **parts_over}, stages)
    assert ok and over == parts_over
    ok, over = n.growth_checks({"feature_tables": 42.0, "posting/ranker_rows": 60.5}, stages)
    assert not ok and over == {}
    ok, _ = n.growth_checks({"feature_tables": 60.0, "posting/stage_one/als": 59.0}, stages)
    assert ok  # the bound itself is within the target
    assert not n.is_part("posting/ranker_rows", stages) and n.is_part("posting/stage_one/als", stages)
