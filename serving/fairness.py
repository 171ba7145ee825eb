"""Exposure-aware re-ranking across seeker groups (issue 18), configured by ``serving.fairness`` and off by
default.

The fairness audit (``jobcare ab-report``, ``jobcare world simulate``) measures, per gender and age band,
the position-discounted exposure of relevant items and the apply hit rate, as a min/max ratio across
groups. A re-ranking of one seeker's list cannot raise every group at once: the ranker's order already
maximises each seeker's *predicted* relevance, so the only lever that does not lower another group is a
better relevance estimate for the groups the ranker serves worst. This stage uses the one the bundle
carries: its content-only ablation (``Bundle.content``, the same LambdaRank recipe without collaborative
features, which learn most from the groups with the most interactions). For a seeker of one of the
configured ``groups`` of the ``dimension``, each candidate's score becomes

    mean(s) + std(s) * ((1 - w) * z(s) + w * z(c))

with ``s`` the ranker's scores and ``c`` the content model's over the same candidates, ``z`` standardised
within the request and ``w`` = ``content_weight`` (the result stays in ranker-score units, so the
congestion stage after it keeps its weight's meaning). Seekers of other groups, weight 0, or a bundle
without the ablation keep the ranker's scores unchanged.

It needs the seeker's protected attribute at serving time (``seeker_audit_v1`` from the online store), which
the models never take as input: turning it on is a policy decision, and the A/B report's trade-off curve
(:func:`evaluation.ab_report.fairness_tradeoff`) is the evidence for the weight and the groups.
"""

from __future__ import annotations

import numpy as np

from jobcare.config import FairnessConfig


def blend(scores, content_scores, weight: float) -> np.ndarray:
    """The ranker's ``scores`` blended with the content model's, in ranker-score units (see the module);
    weight 0 returns the scores unchanged, weight 1 orders by the content model alone."""
    s = np.asarray(scores, np.float64)
    if weight == 0 or s.size == 0:
        return s

    def z(x):
        x = np.asarray(x, np.float64)
        sd = x.std()
        return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)

    scale = s.std() if s.std() > 0 else 1.0
    return s.mean() + scale * ((1.0 - weight) * z(s) + weight * z(content_scores))


def rerank(scores, content, group: str | None, cfg: FairnessConfig | None) -> tuple[np.ndarray, dict | None]:
    """(scores to rank by, what to log). ``content``: a callable giving the content model's scores of the
    same candidates (None when the bundle has no ablation); ``group``: the seeker's group in
    ``cfg.dimension``. Off, or a seeker outside ``cfg.groups``: the scores unchanged and None."""
    if cfg is None or not cfg.enabled or group is None or group not in cfg.groups:
        return scores, None
    if content is None:  # a bundle registered without its ablation: nothing to blend with, said in the log
        return scores, {"group": group, "content_weight": 0.0, "note": "bundle has no content-only ablation"}
    w = cfg.content_weight
    return blend(scores, content(), w), {"group": group, "content_weight": w}


def content_scorer(bundle, matrix: np.ndarray):
    """A callable scoring ``matrix`` (rows in ``bundle.features`` order) with the bundle's content-only
    ablation, or None when the bundle has none. Nothing is computed until :func:`rerank` calls it (only
    for a seeker of a re-ranked group)."""
    if bundle.content is None:
        return None

    def score() -> np.ndarray:
        cols = [bundle.features.index(f) for f in bundle.content.feature_names_]
        return bundle.content.predict(matrix[:, cols])

    return score
