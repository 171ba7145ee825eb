"""serving.fairness through Engine.recommend on the tiny world's champion: the seeker's group from the
online store's audit view, the content-only order at weight 1, the ranker's untouched elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def _order_by_content(eng, seeker_id: int, k: int) -> list[int]:
    """The top ``k`` posting ids by the champion's content-only ablation over the engine's candidates (the
    request path's own matrix; the blend is not used)."""
    from features.pair_arrays import SeekerArrays
    from training.offers import allowed_mask

    state = eng.state
    v = eng._champion(state)
    seeker = eng.online_seeker(seeker_id)
    arrays = state.arrays["posting"]
    mask = allowed_mask(
        arrays, state.offers["posting"], seeker_id, state.as_of, None, base=state.base["posting"]
    )
    scored = eng.score(state, v, "posting", seeker, SeekerArrays.from_row(seeker, eng.ctx, seeker_id), mask)
    bundle = v.bundles["posting"]
    cols = [bundle.features.index(f) for f in bundle.content.feature_names_]
    c = bundle.content.predict(scored.matrix[:, cols])
    return arrays.keys[scored.candidates][np.argsort(-c, kind="stable")][:k].tolist()


def test_fairness_stage_reranks_only_the_configured_group_by_the_audit_attribute(served, tiny_world):
    from jobcare.config import FairnessConfig
    from jobcare.groups import age_band
    from jobcare.world.io import read_table
    from serving.engine import Engine

    eng = Engine(served[0])
    assert not eng.scfg.fairness.enabled
    seekers = read_table(tiny_world, "seekers").set_index("seeker_id")
    band = seekers["age"].map(age_band)
    target = "50+" if (band == "50+").sum() >= 3 else band.value_counts().index[-1]
    inside = [int(s) for s in band.index[band == target][:3]]
    outside = [int(s) for s in band.index[band != target][:3]]
    off = {s: eng.recommend("posting", seeker_id=s, k=10, explore=False) for s in inside + outside}
    assert all("fairness" not in r["logging"] for r in off.values())

    def on(weight: float):
        eng.scfg = eng.scfg.model_copy(
            update={"fairness": FairnessConfig(enabled=True, groups=[target], content_weight=weight)}
        )
        return {s: eng.recommend("posting", seeker_id=s, k=10, explore=False) for s in inside + outside}

    zero, full = on(0.0), on(1.0)
    for s in outside:  # other groups: the ranker's slate and scores, nothing logged
        for r in (zero[s], full[s]):
            assert "fairness" not in r["logging"]
            assert [(i["id"], i["score"]) for i in r["items"]] == [
                (i["id"], i["score"]) for i in off[s]["items"]
            ]
    for s in inside:  # the group read from the online store's seeker_audit_v1 matches the world's age
        assert zero[s]["logging"]["fairness"] == {"group": target, "content_weight": 0.0}
        assert [(i["id"], i["score"]) for i in zero[s]["items"]] == [
            (i["id"], i["score"]) for i in off[s]["items"]
        ]
        assert full[s]["logging"]["fairness"] == {"group": target, "content_weight": 1.0}
        assert [i["id"] for i in full[s]["items"]] == _order_by_content(eng, s, 10)
    assert any([i["id"] for i in full[s]["items"]] != [i["id"] for i in off[s]["items"]] for s in inside)
    # a profile request carries no protected attribute: served as the ranker orders it
    from serving.schemas import Profile
    from tests.integration.test_serving import PROFILE

    r = eng.recommend("posting", profile=Profile(**PROFILE), k=5, explore=False)
    assert "fairness" not in r["logging"]
