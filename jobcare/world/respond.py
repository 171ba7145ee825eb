"""The simulated seekers answer slates the service showed (the online counterpart of the world's logs).

The service's impression log records what it showed (``serving.impressions``); in production the
outcomes would come from the employment service's application records. Here the world supplies them:
for each logged response with a known seeker, each shown item is acted on (apply / enrol / register)
with the world's true probability at its position, P(examine | position) x P(apply | utility), the same
model that produced the world's own logs (:meth:`WorldOracle.slate_apply_probability`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobcare.errors import JobcareError
from jobcare.world.simulate import APPLY_EVENT

OUTCOME_COLUMNS = ["request_id", "item_type", "item_id", "position", "event_type"]


class ResponseError(JobcareError):
    """Logged responses the world cannot answer (no world clock, unknown seeker)."""


def known_seeker(key) -> int | None:
    """The seeker id of a log record's ``seeker`` key, or None (inline profile: ``anon:<hash>``)."""
    return int(key) if isinstance(key, str) and key.isdigit() else None


def respond(oracle, records: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One row per action on a shown item. Records of inline profiles and empty slates are skipped."""
    n_seekers = len(oracle.tables["seekers"])
    rng = np.random.default_rng(seed)
    out = []
    for rec in records.sort_values("request_id").itertuples(index=False):
        s = known_seeker(rec.seeker)
        if s is None or not len(rec.items):
            continue
        if s >= n_seekers:
            raise ResponseError(f"record {rec.request_id}: seeker {s} is not in this world")
        if pd.isna(rec.as_of):
            raise ResponseError(
                f"record {rec.request_id}: no `as_of` (the world's clock); written by an older service"
            )
        p = oracle.slate_apply_probability(rec.item_type, s, np.asarray(rec.items, np.int64), rec.as_of)
        event = APPLY_EVENT[rec.item_type]
        for pos in np.flatnonzero(rng.random(p.size) < p):
            out.append((rec.request_id, rec.item_type, int(rec.items[pos]), int(pos) + 1, event))
    return pd.DataFrame(out, columns=OUTCOME_COLUMNS)
