"""serving.fairness: the exposure-aware blend with the content-only ablation, its switch and its config."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from jobcare.config import FairnessConfig
from jobcare.groups import age_band, group_of
from serving.fairness import blend, rerank


def test_blend_keeps_the_ranker_at_weight_0_orders_by_content_at_1_and_stays_in_ranker_units():
    rng = np.random.default_rng(0)
    s, c = rng.normal(3.0, 2.0, 50), rng.normal(-1.0, 0.1, 50)
    assert np.array_equal(blend(s, c, 0.0), s)
    full = blend(s, c, 1.0)
    assert np.array_equal(np.argsort(-full), np.argsort(-c))  # the content model's order
    assert full.mean() == pytest.approx(s.mean()) and full.std() == pytest.approx(s.std())  # ranker units
    half = blend(s, c, 0.5)
    zs, zc = (s - s.mean()) / s.std(), (c - c.mean()) / c.std()
    assert np.allclose(half, s.mean() + s.std() * (0.5 * zs + 0.5 * zc))  # by hand
    assert np.array_equal(blend(s, np.full(50, 7.0), 1.0), np.full(50, s.mean()))  # constant content: ties


def test_rerank_only_for_seekers_of_the_configured_groups():
    s, c = np.array([3.0, 2.0, 1.0]), np.array([0.0, 1.0, 2.0])
    cfg = FairnessConfig(enabled=True, dimension="age band", groups=["50+"], content_weight=1.0)
    out, log = rerank(s, lambda: c, "50+", cfg)
    assert list(np.argsort(-out)) == [2, 1, 0] and log == {"group": "50+", "content_weight": 1.0}
    for group, conf in (("<30", cfg), (None, cfg), ("50+", FairnessConfig()), ("50+", None)):
        kept, log = rerank(s, lambda: c, group, conf)
        assert kept is s and log is None
    kept, log = rerank(s, None, "50+", cfg)  # a bundle without its ablation: unchanged, said in the log
    assert kept is s and log["content_weight"] == 0.0 and "no content-only ablation" in log["note"]


def test_the_config_names_groups_that_do_not_belong_to_the_dimension():
    with pytest.raises(ValidationError, match=r"groups \['60\+'\] are not groups of 'age band'"):
        FairnessConfig(groups=["60+"])
    with pytest.raises(ValidationError, match=r"not groups of 'gender'"):
        FairnessConfig(dimension="gender", groups=["50+"])
    with pytest.raises(ValidationError, match="needs at least one group"):
        FairnessConfig(enabled=True)
    with pytest.raises(ValidationError):
        FairnessConfig(content_weight=1.5)


def test_groups_of_a_seeker():
    assert [age_band(a) for a in (18, 29.9, 30, 39, 40, 49, 50, 71)] == [
        "<30", "<30", "30-39", "30-39", "40-49", "40-49", "50+", "50+",
    ]  # fmt: skip
    assert group_of("age band", "F", 52) == "50+" and group_of("gender", "F", 52) == "F"
    assert group_of("age band", "M", None) is None and group_of("age band", "M", float("nan")) is None
    assert group_of("gender", None, 40) is None


def test_the_content_model_is_scored_only_for_a_seeker_of_a_reranked_group():
    """The service passes a lazy content scorer for every request: off, no group or another group must
    not pay for the content model's prediction; a re-ranked seeker scores it once."""
    from jobcare.config import FairnessConfig

    calls = []

    def content():
        calls.append(1)
        return np.array([3.0, 2.0, 1.0])

    s = np.array([1.0, 2.0, 3.0])
    on = FairnessConfig(enabled=True, dimension="age band", groups=["30-39"], content_weight=1.0)
    for cfg, group in ((FairnessConfig(), "30-39"), (on, None), (on, "50+")):
        out, log = rerank(s, content, group, cfg)
        assert out is s and log is None
    assert calls == []
    out, log = rerank(s, content, "30-39", on)
    assert calls == [1] and np.argsort(-out).tolist() == [0, 1, 2] and log["content_weight"] == 1.0
