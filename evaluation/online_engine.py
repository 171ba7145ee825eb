"""Registry models as arms of the online A/B inside the world: every session of a seeker routed to a model
arm gets its slate from the service's own request path, over the continued world as it is that day.

Once per simulated day :class:`EngineDays` takes the continued world's features as of 08:00
(:class:`evaluation.online_features.ContinuedFeatures`) and builds the day's
:class:`serving.state.State` as the service's refresh builds it (:func:`serving.state.compile_items`,
the offer index and recent popularity over the combined events); each model arm compiles its
:class:`serving.state.Variant` over it (:func:`serving.state.compile_variant`: the arm's bundle for its
item type, the champion's for the others). Per session (:class:`EngineArm`): the seeker's
``seeker_online_v1`` row of the day, the allowed mask = the world's available items for that seeker (open,
not filled or full, not acted on, certificates not held) on the engine's item arrays,
:meth:`serving.engine.Engine.score` (stage one, union, ranker matrix), the ranker's ``predict`` (one call
per day and item type) and :func:`serving.engine.explore_slate` keyed by the request id: the slate and
its propensities are what the service would have logged.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.online_arms import available, served_slate
from evaluation.online_features import ContinuedFeatures, SeekerRows
from features.pair_arrays import SeekerArrays
from jobcare.config import CongestionConfig, FairnessConfig
from jobcare.errors import JobcareError
from jobcare.groups import group_of
from serving.congestion import rerank
from serving.fairness import content_scorer
from serving.fairness import rerank as fairness_rerank
from serving.state import State, compile_items, compile_variant, recent_popularity
from training.offers import OfferIndex

log = logging.getLogger(__name__)


class OnlineArmError(JobcareError):
    """A model arm that cannot run (which model, which rule)."""


class EngineDays:
    """The engine's State of the continued world, rebuilt once per simulated day and shared by the model
    arms; ``seconds`` accumulates the rebuild time."""

    def __init__(self, engine, features: ContinuedFeatures):
        self.engine, self.features = engine, features
        self.d: int | None = None
        self.state: State | None = None
        self.seekers: SeekerRows | None = None
        self.seconds = 0.0
        self.n_days = 0

    def begin_day(self, d: int, live: dict | None) -> None:
        if d == self.d:
            return
        t0 = time.perf_counter()
        f, e = self.features, self.engine
        at = f.moment(d)
        t = f.combined(live)
        changing = f.tables_at(at, t)
        items = f.items_at(at, changing)
        tabs = {"events": t["events"], "postings": f.static["postings"], "courses": f.static["courses"]}
        offers = {it: OfferIndex(tabs, it) for it in items}
        arrays, base, demand = compile_items(items, offers, at, e.ctx)
        pop = recent_popularity(t["events"], list(items), at, e.cfg.candidates.event_weights)
        self.state = State(at, items, pop, arrays, base, offers, demand, None, None, {})
        self.seekers = f.seekers_at(at, changing, e.seeker_columns)
        self.d = d
        self.n_days += 1
        self.seconds += time.perf_counter() - t0


class EngineArm:
    """A registry model as the slate policy: the service's request path per session (module doc).

    Args:
        days: the shared :class:`EngineDays`.
        bundles, versions: per item type the bundle served and its label (the arm's model for its item type,
            the champion's for the others).
        alias: the variant's name; ``request_salt``: prefix of every request id (exploration is keyed by it).
        world_in: the continuation's simulation input (slate size, held certificates).
        congestion: the arm's congestion-aware re-ranking (:mod:`serving.congestion`, applied after
            ``predict`` and before exploration); None: the config's ``serving.congestion``.
        fairness: the arm's exposure-aware re-ranking (:mod:`serving.fairness`, after ``predict`` and
            before congestion); None: the config's ``serving.fairness``. ``groups``: each seeker's group in
            its dimension (the world's gender and age, what the service reads from ``seeker_audit_v1``).
    """

    def __init__(
        self,
        days: EngineDays,
        bundles: dict,
        versions: dict,
        alias: str,
        request_salt,
        world_in,
        congestion: CongestionConfig | None = None,
        fairness: FairnessConfig | None = None,
        groups: dict | None = None,
    ):
        self.days, self.bundles, self.versions = days, bundles, versions
        self.congestion = congestion  # None: the config's serving.congestion, as the service serves
        self.fairness, self.groups = fairness, groups or {}
        self.alias, self.salt, self.inp = alias, request_salt, world_in
        self.variant = None
        self._d = None
        self.requests: list[dict] = []  # one per served session: what the service's impression log holds
        self.seconds = 0.0

    def begin_day(self, d: int, live: dict) -> None:
        self.days.begin_day(d, live)
        if self._d != d:
            t0 = time.perf_counter()
            e, st = self.days.engine, self.days.state
            self.variant = compile_variant(
                self.alias,
                self.versions,
                self.bundles,
                st.items,
                st.arrays,
                e.ctx,
                e.scalar_seeker_columns,
                e.occ_columns,
                st.popularity,
            )
            self._d = d
            self.seconds += time.perf_counter() - t0

    def __call__(self, it, sid, seeker, day, open_items, excluded):
        t0 = time.perf_counter()
        e, st, v, rows = self.days.engine, self.days.state, self.variant, self.days.seekers
        arrays = st.arrays[it]
        ecfg = e.scfg.explore
        ccfg = self.congestion if self.congestion is not None else e.scfg.congestion
        fcfg = self.fairness if self.fairness is not None else e.scfg.fairness
        pending: list = []
        for s in seeker:
            cols = available(it, s, open_items, excluded, self.inp.state.certificates)
            if cols.size == 0:
                pending.append(None)
                continue
            pos = arrays.positions(open_items[cols])
            if (pos < 0).any():
                raise OnlineArmError(
                    f"{self.alias}: {it} ids {open_items[cols][pos < 0][:5].tolist()} are open in the world "
                    f"on {st.as_of} but have no features then (rule: every open item has a feature row)"
                )
            mask = np.zeros(len(arrays), bool)
            mask[pos] = True
            row = rows.row(int(s))
            scored = e.score(st, v, it, row, SeekerArrays.from_row(row, e.ctx, int(s)), mask)
            pending.append((cols, scored))
        got = [p for p in pending if p is not None]
        if not got:
            self.seconds += time.perf_counter() - t0
            return [None] * len(seeker)
        scores = v.bundles[it].ranker.predict(np.vstack([p[1].matrix for p in got]))
        out, at = [], 0
        for g, p in enumerate(pending):
            if p is None:
                out.append(None)
                continue
            cols, scored = p
            n = scored.candidates.size
            sc = scores[at : at + n]
            at += n
            ids = arrays.keys[scored.candidates]
            cand_cols = np.searchsorted(open_items, ids)  # open_items ascending; candidates are allowed ones
            if not np.array_equal(open_items[np.minimum(cand_cols, open_items.size - 1)], ids):
                raise OnlineArmError(
                    f"{self.alias}: the engine proposed {it}s the world does not offer seeker "
                    f"{int(seeker[g])} (rule: candidates come from the allowed mask)"
                )
            # after predict, before exploration: the exposure-aware stage, then congestion (as the service)
            scorer = content_scorer(v.bundles[it], scored.matrix)
            sc, fair = fairness_rerank(sc, scorer, self.groups.get(int(seeker[g])), fcfg)
            sc, cong = rerank(sc, scored.candidates, st, it, ccfg)
            ranked = np.argsort(-sc, kind="stable")
            rid = f"{self.salt}:{int(sid[g])}"
            slate = served_slate(
                cand_cols[ranked], self.inp.slate_size, rid, ecfg, n_available=int(cols.size)
            )
            pool = min(max(ecfg.pool, min(self.inp.slate_size, n)), n)
            self.requests.append(
                {
                    "session_id": int(sid[g]),
                    "seeker_id": int(seeker[g]),
                    "item_type": it,
                    "request_id": rid,
                    "model_version": str(self.versions.get(it)),
                    "n_candidates": int(n),
                    "pool": ids[ranked[:pool]].astype(np.int64),
                    **({"congestion_weight": cong["weight"]} if cong is not None else {}),
                    **({"fairness_weight": fair["content_weight"]} if fair is not None else {}),
                }
            )
            out.append(slate)
        self.seconds += time.perf_counter() - t0
        return out


def seeker_groups(seekers: pd.DataFrame, dimension: str) -> dict:
    """seeker id -> the seeker's group in ``dimension`` (from the world's gender and age)."""
    return {
        int(s): group_of(dimension, g, a)
        for s, g, a in zip(seekers["seeker_id"], seekers["gender"].astype(str), seekers["age"])
    }


def build_engine_arms(
    named: list[tuple[str, str]],
    cfg,
    world,
    tables,
    start,
    cut,
    world_in,
    salt,
    congestion: dict | None = None,
    fairness: dict | None = None,
):
    """One :class:`EngineArm` per (arm name, model URI), sharing one engine and one :class:`EngineDays`;
    ``congestion`` / ``fairness``: arm name -> its :class:`jobcare.config.CongestionConfig` /
    :class:`jobcare.config.FairnessConfig` (others: the config's).

    Returns:
        (arms by name, :class:`EngineDays`, per arm what it serves: item type -> model label, data cutoff
        and whether that cutoff is after ``cut``).

    Raises:
        OnlineArmError: the feature repository is not the world's, the registry has no champion for an item
            type, or a URI does not load.
    """
    from mlflow.exceptions import MlflowException

    from features.store import repo_meta
    from jobcare.world.utility import ITEM_TYPES
    from serving.engine import Engine
    from training.bundle import load_bundle
    from training.registry import CHAMPION, MODEL_NAMES

    repo = Path(cfg.features.repo)
    built_from = repo_meta(repo).get("world")
    if built_from is None or Path(built_from).resolve() != Path(world).resolve():
        raise OnlineArmError(
            f"features.repo {repo} was built from {built_from}, not {world} (rule: the model arms read the "
            "world's own feature tables; `jobcare features build --world` it first)"
        )
    engine = Engine(cfg, world=world)
    champ = engine.state.variants[CHAMPION]
    lacking = [it for it in ITEM_TYPES if it not in champ.bundles]
    if lacking:
        raise OnlineArmError(
            f"the registry's champion serves no {lacking} (rule: a model arm serves every item type, its own "
            "with its model and the others with the champion; set serving.item_types to all three)"
        )
    days = EngineDays(engine, ContinuedFeatures(tables, repo, start, cut))
    arms, info = {}, {}
    for name, uri in named:
        try:
            bundle = load_bundle(uri)
        except MlflowException as e:
            raise OnlineArmError(f"--arms: {name}={uri}: {e.message}") from None
        bundles = {**champ.bundles, bundle.item_type: bundle}
        labels = {it: f"models:/{MODEL_NAMES[it]}/{champ.versions[it]} (champion)" for it in ITEM_TYPES}
        labels[bundle.item_type] = uri
        ccfg = (congestion or {}).get(name)
        fcfg = (fairness or {}).get(name) or cfg.serving.fairness
        arms[name] = EngineArm(
            days,
            bundles,
            labels,
            f"online:{name}",
            f"{salt}:{name}",
            world_in,
            congestion=ccfg,
            fairness=fcfg,
            groups=seeker_groups(tables["seekers"], fcfg.dimension) if fcfg.enabled else None,
        )
        ccfg = ccfg or cfg.serving.congestion
        cutoffs = {it: str(b.meta.get("trained_until")) for it, b in bundles.items()}
        info[name] = {
            "uri": uri,
            "item_type": bundle.item_type,
            "serves": labels,
            "trained_until": cutoffs,
            "congestion_weight": ccfg.weight if ccfg.enabled else None,
            "fairness": fcfg.model_dump(exclude={"enabled"}) if fcfg.enabled else None,
            "data_cutoff_after_cut": sorted(
                it for it, c in cutoffs.items() if c != "None" and pd.Timestamp(c) > cut
            ),
        }
        if info[name]["data_cutoff_after_cut"]:
            log.warning(
                "arm %s: the models of %s were trained on events after %s: their stage one has seen these "
                "seekers' own future in the world's original run (an advantage no real A/B test has)",
                name,
                info[name]["data_cutoff_after_cut"],
                cut,
            )
    return arms, days, info
