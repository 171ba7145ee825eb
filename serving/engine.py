"""The online service's engine: what the BentoML service runs per request (also the load benchmark's
in-process floor).

Per request: the seeker's features from the Feast online store (one entity read, ``seeker_online_v1``)
or built from an inline profile, then :mod:`training.request_path` - the same code training replays
requests through: the allowed mask (static part compiled per refresh, blocked items and filters per
request), stage one over the in-memory item arrays with an argpartition top k per source, the union
with the bundle's quotas and the float32 ranker matrix of the candidates; the bundle's LambdaRank
ranker scores only those. This module owns model loading, the state refresh, seeker resolution,
A/B routing, exploration and the response.

State that changes is swapped, never mutated: the item arrays and each variant's compiled models live
in one immutable :class:`serving.state.State`; a refresh or a model reload builds a new one and
replaces the reference, so a request in flight keeps using the state it started with.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from features import store as fstore
from features.item_index import item_features
from features.pair_arrays import SeekerArrays, days, pair_matrix
from jobcare.config import ExploreConfig, ProjectConfig
from jobcare.groups import group_of
from jobcare.world.io import read_manifest, read_tables
from jobcare.world.taxonomy import RIASEC
from serving.career_path import CareerPath
from serving.career_path_schemas import CareerPathRequest
from serving.congestion import rerank
from serving.errors import NotReadyError, ServingError, UnknownSeekerError
from serving.fairness import content_scorer
from serving.fairness import rerank as fairness_rerank
from serving.gap import competency_gap
from serving.labour_market_schemas import LabourMarketRequest
from serving.menu import build_market, package_answer, reference, refresh_tables
from serving.model_watch import ModelWatch, WatchHooks
from serving.package import RULES, PackageRules
from serving.profiles import profile_row
from serving.reasons import contribution_reasons
from serving.schemas import Profile
from serving.state import (
    ITEM_STATE,
    State,
    Variant,
    compile_items,
    compile_variant,
    offer_indexes,
    recent_popularity,
    replicate_open_postings,
)
from training.bundle import load_bundle
from training.candidates.world import ITEM_KEY, seeker_side_record
from training.integrity import ArtifactUnavailableError, IntegrityError, ModelLoadError
from training.offers import allowed_mask
from training.registry import CHALLENGER, CHAMPION, MODEL_NAMES, RegistryUnavailableError, alias_version
from training.request_path import candidates_and_matrix, context, first_allowed, occupation_columns

log = logging.getLogger(__name__)
TITLE = {
    "posting": ("postings", "title"),
    "course": ("courses", "title"),
    "certificate": ("certificates", "name"),
}


class Catalog:
    """Static names from the world: titles, occupations, regions, competency units."""

    def __init__(self, world: Path):
        t = read_tables(
            world,
            [
                "postings",
                "courses",
                "certificates",
                "occupations",
                "occupation_groups",
                "regions",
                "competency_units",
                "majors",
            ],
        )
        self.titles = {it: t[tab].set_index(ITEM_KEY[it])[col] for it, (tab, col) in TITLE.items()}
        occ = t["occupations"].sort_values("occupation_id")
        self.occupations = occ.set_index("occupation_id")["title"]
        self.occ_group = occ["group_id"].to_numpy()
        self.groups = t["occupation_groups"].set_index("group_id")["name"]
        self.majors = t["majors"].sort_values("major_id").set_index("major_id")["name"]
        self.occ_riasec = occ[RIASEC].to_numpy(float)
        self.regions = t["regions"].set_index("region_id")["name"]
        self.units = t["competency_units"].set_index("unit_id")["name"]
        self.n_units = len(self.units)


def anonymous_key(profile: Profile, salt: str) -> str:
    """A salted hash standing in for an inline profile in logs (never the profile's contents)."""
    return "anon:" + hashlib.sha256((salt + profile.model_dump_json()).encode()).hexdigest()[:16]


def route_variant(key: str, salt: str, challenger_share: float) -> str:
    """Deterministic A/B assignment: the same (key, salt) always gets the same arm."""
    h = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2**64
    return CHALLENGER if h < challenger_share else CHAMPION


class Engine:
    """Loads models and item state, answers recommend and competency-gap requests."""

    def __init__(
        self,
        cfg: ProjectConfig,
        world: str | Path | None = None,
        load_models: bool = True,
        hooks: WatchHooks | None = None,
        wait_for_champion: bool = False,
    ):
        """``hooks``: the service's metrics of refusals and registry polls. ``wait_for_champion``: with no
        loadable champion (none registered, refused, registry unreachable) start anyway, not ready with the
        reason (:meth:`ready`), and load it when a poll finds one (the service); otherwise
        :class:`NotReadyError` (offline use)."""
        import os

        self.cfg = cfg
        self.scfg = cfg.serving
        self.world = Path(os.environ.get("JOBCARE_WORLD") or world or self.scfg.world)
        manifest = read_manifest(self.world)
        # default: the clock the online store is materialised to (the last second of the simulated span)
        end = fstore.serving_clock(manifest["span"]["end"])
        self.as_of = pd.Timestamp(self.scfg.as_of) if self.scfg.as_of else end
        if self.as_of.tzinfo is None:
            self.as_of = self.as_of.tz_localize("UTC")
        self.repo = Path(cfg.features.repo)
        self.store = fstore.open_store(self.repo)
        self.catalog = Catalog(self.world)
        self.ctx = context(self.repo, self.catalog.n_units)
        self.occ_columns = occupation_columns(self.repo)
        self.seeker_reader = fstore.OnlineReader(self.store, "seeker_online_v1", "seeker_id")
        self._audit_reader = None  # seeker_audit_v1, built on first use by the fairness stage
        self.seeker_columns = self.seeker_reader.columns
        self.scalar_seeker_columns = self.seeker_reader.scalar_columns
        self._lock = threading.Lock()
        self.state: State | None = None
        self.watch = ModelWatch(hooks or WatchHooks(), cfg.tracking.resolved().audit_log)
        self._store_failures, self._store_warned = 0, -1e9  # online-store outage warnings (_store_failed)
        self.wait_for_champion = wait_for_champion
        self.refresh(load_models=load_models)

    # ---------------------------------------------------------------- state
    def _load_variant(self, alias: str, st: dict, current: Variant | None = None) -> Variant | None:
        """The models ``alias`` points at, each checked against its registered digests before loading
        (:func:`training.bundle.load_bundle`). A version already loaded is reused; a refused one (no
        digests, files not matching, fails to load or compile) is reported and the ``current`` one is kept
        for that item type. None when some item type has nothing to serve (the reason in
        ``self.watch.not_ready`` for the champion).

        Raises:
            RegistryUnavailableError, ArtifactUnavailableError: the registry or its files cannot be read
                now (nothing is refused; the next poll retries).
        """
        from mlflow import MlflowClient

        client = MlflowClient()
        versions, bundles, fresh, missing = {}, {}, {}, []
        for it in self.scfg.item_types:
            name = MODEL_NAMES[it]
            kept = current.versions.get(it) if current is not None else None
            mv = alias_version(client, name, alias)
            v = None if mv is None else str(mv.version)
            if v is not None and v == kept:
                versions[it], bundles[it] = v, current.bundles[it]
                continue
            if v is not None and not self.watch.is_refused(alias, it, v):
                try:
                    bundles[it] = load_bundle(f"models:/{name}/{v}", client)
                    versions[it], fresh[it] = v, kept
                    continue
                except IntegrityError as e:
                    self.watch.refuse(alias, it, e, kept)
            if kept is not None:  # no alias any more, or a refused version: keep serving the loaded one
                versions[it], bundles[it] = kept, current.bundles[it]
            else:
                why = self.watch.refused.get((alias, it, v)) or f"no `{alias}` version of {name}"
                missing.append(why)
        if missing:
            if alias == CHAMPION:
                where = self.cfg.tracking.resolved().uri
                self.watch.not_ready = f"no loadable champion: {'; '.join(missing)} (registry {where})"
            return None
        try:
            variant = self._compile(alias, versions, bundles, st)
        except Exception as e:  # a bundle that loads but cannot serve: refuse what was new, keep the rest
            for it, previous in fresh.items():
                err = ModelLoadError(MODEL_NAMES[it], versions[it], f"does not compile for serving: {e!r}")
                self.watch.refuse(alias, it, err, previous)
            if current is None:
                if alias == CHAMPION:
                    self.watch.not_ready = f"no loadable champion: {e!r}"
                return None
            return self._compile(alias, current.versions, current.bundles, st)
        for it, previous in fresh.items():
            self.watch.reloaded(alias, MODEL_NAMES[it], versions[it], previous)
        if alias == CHAMPION:
            self.watch.not_ready = None
        return variant

    def _compile(self, alias: str, versions: dict, bundles: dict, st: dict) -> Variant:
        return compile_variant(
            alias,
            versions,
            bundles,
            st["items"],
            st["arrays"],
            self.ctx,
            self.scalar_seeker_columns,
            self.occ_columns,
            st.get("popularity"),
        )

    def _item_state(self) -> dict:
        t = refresh_tables(self.world)
        items = {it: item_features(self.repo, it, self.as_of) for it in ("posting", "course", "certificate")}
        if self.scfg.load_test_postings:
            items["posting"] = replicate_open_postings(
                items["posting"], self.as_of, self.scfg.load_test_postings
            )
        offers = offer_indexes(t, self.scfg.item_types)
        arrays, base, demand = compile_items(items, offers, self.as_of, self.ctx)
        pop = recent_popularity(
            t["events"], self.scfg.item_types, self.as_of, self.cfg.candidates.event_weights
        )
        return {
            "items": items,
            "popularity": pop,
            "arrays": arrays,
            "base": base,
            "offers": offers,
            "demand": demand,
            "market": build_market(t, self.as_of, self.scfg),
            "career": CareerPath(t, self.as_of),
        }

    def refresh(self, load_models: bool = False, reuse_items: bool = False) -> None:
        """Rebuild the item state (and reload models when asked), then swap it in. ``reuse_items`` keeps
        the current item state (a model reload needs only the models compiled over it)."""
        old = self.state
        if reuse_items and old is not None:
            st = {k: getattr(old, k) for k in ITEM_STATE}
        else:
            st = self._item_state()
        with self._lock:
            old = self.state
            if load_models or old is None:
                variants = self._load_models(st, old)
            else:
                variants = {a: self._compile(a, v.versions, v.bundles, st) for a, v in old.variants.items()}
            self.state = State(self.as_of, **st, variants=variants)

    def _load_models(self, st: dict, old: State | None) -> dict:
        """Every alias's variant over the item state ``st``; what cannot be loaded keeps ``old``'s."""
        from training import tracking

        current = old.variants if old is not None else {}
        aliases = [CHAMPION] + ([CHALLENGER] if self.scfg.ab.challenger_share > 0 else [])
        try:
            if old is None:
                tracking.start(self.cfg.tracking)
            variants = {}
            for alias in aliases:
                v = self._load_variant(alias, st, current.get(alias))
                if v is not None:
                    variants[alias] = v
        except Exception as e:  # at start-up any failure to reach the registry (psycopg, MLflow, store)
            if old is not None or not self.wait_for_champion:
                raise
            log.exception("no models loaded at start-up; the registry poll retries")
            self.watch.poll_failed(e)
            self.watch.not_ready = f"registry unreachable at start-up: {type(e).__name__}: {e}"
            return {}
        if CHAMPION not in variants and not self.wait_for_champion:
            raise NotReadyError(f"{self.watch.not_ready}; run `jobcare train` first")
        return variants

    def add_variant(self, alias: str, bundles: dict, versions: dict) -> None:
        """Serve ``bundles`` (item type -> Bundle) under ``alias`` as well (offline use: the off-policy
        estimates ask each model what it would have shown for a logged request)."""
        with self._lock:
            st = self.state
            v = self._compile(
                alias,
                versions,
                bundles,
                {"items": st.items, "arrays": st.arrays, "popularity": st.popularity},
            )
            self.state = dataclasses.replace(st, variants={**st.variants, alias: v})

    def registry_versions(self) -> dict:
        """The versions the registry's aliases point at now (what a reload would load; None: no alias).

        Raises:
            RegistryUnavailableError: the database did not answer (never taken for "no alias").
        """
        from mlflow import MlflowClient

        client = MlflowClient()
        out = {}
        aliases = [CHAMPION] + ([CHALLENGER] if self.scfg.ab.challenger_share > 0 else [])
        for alias in aliases:
            for it in self.scfg.item_types:
                mv = alias_version(client, MODEL_NAMES[it], alias)
                out[(alias, it)] = None if mv is None else str(mv.version)
        return out

    def loaded_versions(self) -> dict:
        out = {}
        for alias, v in self.state.variants.items():
            for it in self.scfg.item_types:
                out[(alias, it)] = v.versions.get(it)
        return out

    def reload_if_moved(self) -> bool:
        """Reload if any alias now points at another version than the one served (refused versions
        aside); True if it swapped. While the registry is unreachable the loaded models keep serving,
        ``self.watch`` counts the failed polls and :class:`RegistryUnavailableError` says why; the first
        poll that reaches it again loads whatever the aliases point at then.
        """
        try:
            now = self.registry_versions()
        except (RegistryUnavailableError, MlflowException) as e:
            self.watch.poll_failed(e)
            raise RegistryUnavailableError(f"registry poll failed, serving the loaded models: {e}") from e
        self.watch.poll_ok()
        loaded = self.loaded_versions()
        moved = [
            k
            for k, v in now.items()
            if v is not None and v != loaded.get(k) and not self.watch.is_refused(k[0], k[1], v)
        ]
        if not moved and CHAMPION in self.state.variants:
            return False
        before = loaded
        try:
            self.refresh(load_models=True, reuse_items=True)
        except (RegistryUnavailableError, ArtifactUnavailableError, MlflowException) as e:
            self.watch.poll_failed(e)
            raise RegistryUnavailableError(f"reload failed, still serving the loaded models: {e}") from e
        return self.loaded_versions() != before

    # ---------------------------------------------------------------- seekers
    def online_seeker(self, seeker_id: int) -> dict:
        """The seeker's features from the online store; UnknownSeekerError if the store has none."""
        row = self.seeker_reader.read(int(seeker_id))
        if row.get("seeker_profile__region_id") is None:
            raise UnknownSeekerError(
                f"seeker_id {seeker_id}: unknown to the online store; send an inline `profile` instead"
            )
        return row

    def profile_seeker(self, profile: Profile, seeker_id: int = -1) -> dict:
        """The ``seeker_online_v1`` columns built from an inline profile (ids checked against the world)."""
        return profile_row(profile, self.catalog, self.seeker_columns, self.as_of, seeker_id)

    def resolve(self, seeker_id: int | None, profile: Profile | None) -> tuple[dict | None, bool]:
        """(seeker feature row, degraded). A profile wins over the store; store failure -> (None, True)."""
        if profile is not None:
            return self.profile_seeker(profile, -1 if seeker_id is None else seeker_id), False
        if seeker_id is None:
            raise ServingError("seeker_id or profile: one is required (rule: identify the seeker)")
        try:
            return self.online_seeker(seeker_id), False
        except UnknownSeekerError:
            raise
        except (ValueError, TypeError, OverflowError) as e:  # the key cannot be encoded: the request's fault
            raise ServingError(
                f"seeker_id: {seeker_id} cannot be looked up ({type(e).__name__}: {e}) (rule: an int64 key)"
            ) from None
        except Exception as e:  # the online store is unreachable or failing: answer from the item side
            self._store_failed(e)
            return None, True

    def _store_failed(self, e: Exception) -> None:
        """One warning per 10 s of an outage, with the count of degraded answers since the last one (not a
        line per request: hundreds a second under load)."""
        self._store_failures += 1
        now = time.monotonic()
        if now - self._store_warned >= 10.0:
            log.warning(
                "online store unreachable (%s: %s): %d degraded answer(s) since the last warning",
                type(e).__name__,
                str(e)[:200],
                self._store_failures,
            )
            self._store_warned, self._store_failures = now, 0

    # ---------------------------------------------------------------- recommend
    def recommend(
        self,
        item_type: str,
        seeker_id: int | None = None,
        profile: Profile | None = None,
        k: int = 10,
        regions: list[int] | None = None,
        occupations: list[int] | None = None,
        variant: str | None = None,
        log_key: str | None = None,
        explore: bool = True,
    ) -> dict:
        """Top ``k`` items of ``item_type`` for a seeker, with reasons; the response as a dict.

        ``out["logging"]`` (not part of the response) holds what the impression log needs to value other
        policies: the policy that chose the slate, epsilon, each shown item's propensity and the model's
        top-``pool`` ids in its order. ``explore=False`` serves the model's own order (a target policy).
        With ``serving.congestion`` on, postings are ranked by the discounted scores
        (:mod:`serving.congestion`), the items' ``score`` is that, and ``logging["congestion"]`` holds its
        weight (absent when off).
        """
        if not 1 <= k <= 100:
            raise ServingError(f"k: {k} is outside 1-100")
        state = self.state  # one consistent snapshot for the whole request
        t0 = time.perf_counter()
        timings: dict = {}
        seeker, degraded = self.resolve(seeker_id, profile)
        timings["seeker_read"] = (time.perf_counter() - t0) * 1e3
        key = log_key or (str(seeker_id) if seeker_id is not None else "anonymous")
        alias = variant or route_variant(key, self.scfg.ab.salt, self.scfg.ab.challenger_share)
        v = state.variants.get(alias) or self._champion(state)
        if regions and item_type == "certificate":
            raise ServingError("filters.regions: certificates have no region (rule: filter applies)")
        s = int(seeker_id) if seeker_id is not None else -1
        arrays = state.arrays[item_type]
        held = seeker["seeker_competency__certificate_ids"] if seeker is not None else None
        mask = allowed_mask(
            arrays,
            state.offers[item_type],
            s,
            state.as_of,
            held,
            base=state.base[item_type],
            regions=regions,
            occupations=occupations,
        )
        out = {
            "request_id": uuid.uuid4().hex,
            "item_type": item_type,
            "seeker_id": seeker_id,
            "variant": v.alias,
            "model_version": v.versions.get(item_type),
            "degraded": degraded,
            "as_of": str(state.as_of),
            "items": [],
            "reason": None,
            "explored": False,
            "logging": {"policy": "empty", "epsilon": 0.0, "propensities": [], "pool": []},
            "timings_ms": timings,
        }
        if not mask.any():
            out["reason"] = (
                "no open item matches: every item is closed, full, already acted on or filtered out"
            )
            return out
        if seeker is None:  # degraded: popularity among the allowed items, no personal features
            sidx = v.stages[item_type]
            top = first_allowed(sidx.pop_order, mask, k)
            ids = arrays.keys[top]
            out["items"] = [
                self._item(item_type, int(i), float(sc), r + 1, ["popular with other job seekers right now"])
                for r, (i, sc) in enumerate(zip(ids, sidx.pop[top]))
            ]
            out["logging"] = {
                "policy": "degraded",
                "epsilon": 0.0,
                "propensities": [1.0] * len(ids),
                "pool": [int(i) for i in ids],
            }
            return out
        t1 = time.perf_counter()
        sa = SeekerArrays.from_row(seeker, self.ctx, s)
        timings["mask"] = (t1 - t0) * 1e3 - timings["seeker_read"]
        scored = self.score(state, v, item_type, seeker, sa, mask, timings)
        t2 = time.perf_counter()
        scores = v.bundles[item_type].ranker.predict(scored.matrix)
        t3 = time.perf_counter()
        timings["predict"] = (t3 - t2) * 1e3
        # exposure-aware re-ranking for the configured seeker groups, then congestion-aware re-ranking (both
        # off by default): after the ranker, before exploration
        bundle = v.bundles[item_type]
        group = self.seeker_group(seeker_id) if profile is None else None  # a profile has no attributes
        scorer = content_scorer(bundle, scored.matrix)  # evaluated only for a seeker of a re-ranked group
        scores, fair = fairness_rerank(scores, scorer, group, self.scfg.fairness)
        scores, congestion = rerank(scores, scored.candidates, state, item_type, self.scfg.congestion)
        ranked = np.argsort(-scores, kind="stable")
        ecfg = self.scfg.explore if explore else ExploreConfig()
        shown, prop, explored, pool = explore_slate(ranked, k, out["request_id"], ecfg)
        pos = scored.candidates[shown]
        plan = v.reasons[item_type]
        X = scored.matrix[shown]
        values = {f: X[:, c] for c, f in enumerate(bundle.features)}
        if plan.extra_pairs:  # what the words read that the model does not take as input
            values |= pair_matrix(
                item_type, sa, arrays, pos, days(state.as_of), self.ctx, scored.occ_feats, plan.extra_pairs
            )
        texts, improve = contribution_reasons(
            item_type,
            bundle.ranker.contributions(X),
            plan.topics,
            values,
            arrays.occ[pos],
            sa.psych,
            sa.region,
            self.catalog,
        )
        ids = arrays.keys[scored.candidates]
        out["items"] = [
            self._item(item_type, int(ids[j]), float(scores[j]), r + 1, texts[r], improve[r])
            for r, j in enumerate(shown)
        ]
        timings["reasons"] = (time.perf_counter() - t3) * 1e3
        timings["total"] = (time.perf_counter() - t0) * 1e3
        out["explored"] = explored
        out["logging"] = {
            "policy": "explore" if explored else "model",
            "epsilon": ecfg.epsilon,
            "propensities": [round(float(x), 8) for x in prop],
            "pool": ids[ranked[:pool]].tolist(),
            **({"congestion": congestion} if congestion is not None else {}),
            **({"fairness": fair} if fair is not None else {}),
        }
        return out

    def seeker_group(self, seeker_id) -> str | None:
        """The seeker's group in ``serving.fairness.dimension`` from ``seeker_audit_v1`` (read only while the
        stage is on; None when off, unknown, or the store fails: then the ranker's order is served)."""
        fc = self.scfg.fairness
        if not fc.enabled or seeker_id is None:
            return None
        try:
            if self._audit_reader is None:
                self._audit_reader = fstore.OnlineReader(self.store, "seeker_audit_v1", "seeker_id")
            row = self._audit_reader.read(int(seeker_id))
        except Exception as e:  # the store is failing: serve the ranker's order, warned like other reads
            self._store_failed(e)
            return None
        return group_of(fc.dimension, row.get("seeker_profile__gender"), row.get("seeker_profile__age"))

    def score(
        self,
        state: State,
        v: Variant,
        item_type: str,
        seeker: dict,
        sa: SeekerArrays,
        mask,
        timings: dict | None = None,
    ):
        """Stage one + the ranker's input matrix for one seeker over the allowed items (``mask``)."""
        t0 = time.perf_counter()
        bundle = v.bundles[item_type]
        sidx = v.stages[item_type]
        user_vec = sidx.stage.two_tower.embed_user_record(
            seeker_side_record({**seeker, "seeker_id": sa.seeker_id})
        )
        weights, trained_until = v.history[item_type]
        hist, offers = None, state.offers[item_type]
        if sa.seeker_id >= 0 and offers.acted_since(sa.seeker_id, trained_until, state.as_of, weights):
            hist = offers.history(sa.seeker_id, state.as_of, weights)  # ALS re-fits this seeker's factor
        if timings is not None:
            timings["seeker_embedding"] = (time.perf_counter() - t0) * 1e3
        return candidates_and_matrix(
            sidx,
            v.plans[item_type],
            state.arrays[item_type],
            self.ctx,
            sa,
            mask,
            days(state.as_of),
            user_vec,
            hist,
            trained_until,
            bundle.quotas,
            bundle.n_candidates,
            state.demand if item_type == "certificate" else None,
            timings,
        )

    def _item(
        self, item_type: str, item_id: int, score: float, rank: int, reasons: list[str], to_improve=()
    ) -> dict:
        title = self.catalog.titles[item_type].get(item_id, f"{item_type} {item_id}")
        return {
            "id": int(item_id),
            "title": str(title),
            "score": float(score),
            "rank": rank,
            "reasons": reasons,
            "to_improve": list(to_improve),
        }

    # ---------------------------------------------------------------- competency gap
    def competency_gap(
        self, occupation_id: int, seeker_id: int | None = None, profile: Profile | None = None
    ) -> dict:
        n_occ = len(self.catalog.occupations)
        if not 0 <= occupation_id < n_occ:
            raise ServingError(f"occupation_id: {occupation_id} is not an occupation (0-{n_occ - 1})")
        seeker, degraded = self.resolve(seeker_id, profile)
        if seeker is None:
            raise NotReadyError("the online store is unreachable and no inline profile was sent")
        return {
            **competency_gap(self.state, self.catalog, self.ctx, occupation_id, seeker),
            "degraded": degraded,
        }

    # ---------------------------------------------------------------- the rest of JobCare's menu
    def package(
        self,
        occupation_id: int,
        seeker_id: int | None = None,
        profile: Profile | None = None,
        k: int = 3,
        rules: PackageRules = RULES,
    ) -> dict:
        """Ranked bundles of courses and certificates to ``occupation_id``, then its open postings."""
        return package_answer(self, occupation_id, seeker_id, profile, k, rules)

    def labour_market(self, request: LabourMarketRequest):
        """Labour-market information from the state's precomputed arrays (no scan of events)."""
        return self.state.market.answer(request)

    def career_path(self, request: CareerPathRequest):
        """The career development path of a competency unit or an occupation (precomputed lookups)."""
        return self.state.career.answer(request)

    def reference(self) -> dict:
        """Ids and names for clients (the report page's selects and labels)."""
        return reference(self.catalog, self.state.as_of)

    # ---------------------------------------------------------------- health
    def _champion(self, state: State) -> Variant:
        if CHAMPION not in state.variants:
            raise NotReadyError(self.ready()[1])
        return state.variants[CHAMPION]

    def ready(self) -> tuple[bool, str]:
        """Models loaded and the online store reachable; else False and why (e.g. the champion refused)."""
        if self.state is None or CHAMPION not in self.state.variants:
            return False, self.watch.not_ready or "models not loaded"
        try:
            self.seeker_reader.read(0)
        except Exception as e:
            return False, f"online store unreachable: {type(e).__name__}"
        return True, "ready"


def explore_slate(
    ranked: np.ndarray, k: int, request_id: str, cfg: ExploreConfig
) -> tuple[np.ndarray, np.ndarray, bool, int]:
    """The logging policy: (shown indices, their propensities, explored, pool size).

    With probability ``epsilon`` (decided by a hash of the request id, so a logged request can be
    re-derived) the slate is ``k`` of the model's top ``pool`` drawn uniformly in random order, else the
    model's top ``k``. P(item i at position p) = (1 - epsilon) * [ranked[p] = i] + epsilon / pool for i in
    the pool (a uniform k-permutation of M items puts a given item at a given position with chance 1/M).
    """
    k = min(k, ranked.size)
    pool = min(max(cfg.pool, k), ranked.size)
    digest = hashlib.sha256(f"{cfg.salt}:{request_id}".encode()).digest()
    explored = cfg.epsilon > 0 and int.from_bytes(digest[:8], "big") / 2**64 < cfg.epsilon
    if explored:
        rng = np.random.default_rng(int.from_bytes(digest[8:16], "big"))
        shown = rng.choice(ranked[:pool], size=k, replace=False)
    else:
        shown = ranked[:k]
    prop = (1 - cfg.epsilon) * (shown == ranked[:k]) + cfg.epsilon / pool
    return shown, prop, explored, pool
