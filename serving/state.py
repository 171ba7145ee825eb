"""The service's immutable state: item arrays compiled once per refresh and each A/B arm's compiled models.

A refresh (every ``item_refresh_seconds``, and on a model reload) builds a new :class:`State` and the
engine swaps the reference under a lock, so a request in flight keeps the state it started with.
Compiled per item type: :class:`features.item_arrays.ItemArrays` (item features as of the service
clock), the static allowed mask (open, not filled, recruiting), the offer index (capacity, blocking
events, histories) and, for certificates, the demand of the open postings. Compiled per variant and
item type: the stage one's :class:`training.request_path.StageIndex` (ALS factor rows, two-tower item
embeddings, popularity) and the ranker's :class:`training.request_path.RankerPlan`. Popularity is
recomputed from the events before the clock on every refresh (:func:`recent_popularity`), not frozen at
the models' data cutoff.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.item_arrays import ItemArrays, certificate_demand
from features.pairs import PAIR_FEATURES
from jobcare.config import EventWeights
from serving.reasons import ReasonPlan
from training.candidates.evaluate import StageOne
from training.candidates.popularity import PopularityRecommender
from training.candidates.world import item_side_table, open_mask
from training.interactions import world_interactions
from training.offers import OfferIndex, static_mask
from training.request_path import RankerPlan, StageIndex


@dataclass(frozen=True)
class Variant:
    """The models one A/B arm serves: per item type a registry version, its bundle and their compiled
    forms over the current item arrays."""

    alias: str
    versions: dict
    bundles: dict
    stages: dict  # item type -> StageIndex over the state's ItemArrays
    plans: dict  # item type -> RankerPlan of the bundle's ranker
    history: dict  # item type -> (EventWeights, trained_until) for ALS's seeker histories
    reasons: dict  # item type -> serving.reasons.ReasonPlan of the bundle's ranker


@dataclass(frozen=True)
class State:
    as_of: pd.Timestamp
    items: dict  # item type -> item features frame as of ``as_of`` (Feast column names)
    popularity: dict  # item type -> PopularityRecommender of the events before ``as_of`` (None: none)
    arrays: dict  # item type -> ItemArrays of ``items``
    base: dict  # item type -> static allowed mask at ``as_of`` (open, not full)
    offers: dict  # item type -> OfferIndex (capacity, blocking events, histories)
    demand: tuple | None  # certificate rule: (open postings, open postings requiring) per occupation
    market: object  # serving.labour_market.LabourMarket as of ``as_of`` (precomputed, sliced per request)
    career: object  # serving.career_path.CareerPath as of ``as_of`` (course statuses at the clock)
    variants: dict  # alias -> Variant


# what a model reload keeps of the current state (everything but the variants and the clock)
ITEM_STATE = ("items", "popularity", "arrays", "base", "offers", "demand", "market", "career")


def compile_items(items: dict, offers: dict, as_of: pd.Timestamp, ctx) -> tuple[dict, dict, tuple]:
    """ItemArrays, static masks and the certificate demand of item frames as of ``as_of``."""
    arrays = {it: ItemArrays.compile(it, frame, ctx) for it, frame in items.items()}
    base = {it: static_mask(arrays[it], offers[it], as_of) for it in offers}
    cert = arrays["certificate"]
    n_cert = int(cert.keys.max()) + 1 if len(cert) else 0
    post = arrays["posting"]
    demand = certificate_demand(post, post.open_mask(as_of), ctx.group.size, n_cert)
    return arrays, base, demand


def recent_popularity(events: pd.DataFrame, item_types, as_of: pd.Timestamp, weights: EventWeights) -> dict:
    """Per item type, popularity over the events before ``as_of`` (decayed as in training), recomputed on
    each item refresh: a posting opened after the models' data cutoff is not "0 popular", and the degraded
    answer's "popular right now" is about now. None for an item type without events."""
    out = {}
    for it in item_types:
        inter = world_interactions(events, it, as_of, weights)
        out[it] = PopularityRecommender().fit(inter) if len(inter) else None
    return out


def compile_variant(
    alias: str,
    versions: dict,
    bundles: dict,
    items: dict,
    arrays: dict,
    ctx,
    seeker_columns,
    occ_columns,
    popularity: dict | None = None,
) -> Variant:
    """Each bundle's stage one over the current items (two-tower embeds every item once) and ranker plan;
    ``popularity`` (the refresh's, per item type) replaces the bundle's frozen one where given."""
    stages, plans, reasons = {}, {}, {}
    for it, b in bundles.items():
        tt = copy.copy(b.two_tower)  # own item index per state; the bundle stays untouched
        tt.set_item_index(item_side_table(it, items[it], ctx))
        pop = (popularity or {}).get(it) or b.popularity
        stages[it] = StageIndex.compile(StageOne(it, pop, b.als, tt), arrays[it])
        plans[it] = RankerPlan(
            it, b.features, seeker_columns, arrays[it], occ_columns if it == "posting" else None
        )
        b.ranker.contributions(np.zeros((1, len(b.features)), np.float32))  # builds the per-leaf tables once
        reasons[it] = ReasonPlan.of(b.features, PAIR_FEATURES[it])
    return Variant(alias, versions, bundles, stages, plans, history_params(bundles), reasons)


def history_params(bundles: dict) -> dict:
    """Parsed once per model load, not per request."""
    return {
        it: (
            EventWeights(**b.meta.get("event_weights", {})),
            pd.Timestamp(b.meta.get("trained_until", "1970-01-01T00:00:00Z")),
        )
        for it, b in bundles.items()
    }


def offer_indexes(tables: dict, item_types) -> dict:
    return {it: OfferIndex(tables, it) for it in item_types}


def replicate_open_postings(items: pd.DataFrame, as_of: pd.Timestamp, n: int) -> pd.DataFrame:
    """Load testing: copies of the postings open at ``as_of`` under new ids until ``n`` are open (each copy
    keeps its original's features and closes 30 days after ``as_of``)."""
    open_ = items[open_mask("posting", items, as_of)]
    need = n - len(open_)
    if need <= 0 or open_.empty:
        return items
    copies = open_.iloc[np.arange(need) % len(open_)].copy()
    copies["posting_id"] = items["posting_id"].max() + 1 + np.arange(need)
    copies["posting_attributes__close_days"] = as_of.value / 86_400e9 + 30
    return pd.concat([items, copies], ignore_index=True)
