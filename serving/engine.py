"""The online recommend path: what the BentoML service runs per request (also the load benchmark's
in-process floor).

Per request: the seeker's features from the Feast online store (one entity read, ``seeker_online_v1``)
or built from an inline profile; everything item-side from memory (item features as of the service
clock, two-tower item embeddings, the open-item and capacity index, the seekers' blocking events);
stage one exactly as in training (:func:`training.candidates.evaluate.candidates_for` and the union
with the bundle's quotas); the ranker's features from the same pair function as training
(:func:`features.pairs.pair_features`) and the bundle's LambdaRank ranker.

State that changes is swapped, never mutated: the item index and each variant's models live in one
immutable :class:`State`; a refresh or a model reload builds a new one and replaces the reference,
so a request in flight keeps using the state it started with.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features import store as fstore
from features.item_index import item_features
from features.pairs import pad_lists, pair_features
from jobcare.competency import coverage
from jobcare.config import EventWeights, ExploreConfig, ProjectConfig
from jobcare.errors import JobcareError
from jobcare.world.io import read_manifest, read_tables
from jobcare.world.taxonomy import RIASEC, WORK_VALUES
from serving.schemas import Profile
from training.bundle import Bundle, load_bundle
from training.candidates.evaluate import OfferIndex, StageOne, allowed_items, candidates_for, context
from training.candidates.union import union
from training.candidates.world import ITEM_KEY, item_side_table, open_mask, seeker_side_table
from training.registry import CHALLENGER, CHAMPION, MODEL_NAMES

log = logging.getLogger(__name__)
TITLE = {
    "posting": ("postings", "title"),
    "course": ("courses", "title"),
    "certificate": ("certificates", "name"),
}
OCC_COLUMN = {
    "posting": "posting_attributes__occupation_id",
    "course": "course_attributes__target_occupation_id",
    "certificate": "certificate_attributes__anchor_occupation_id",
}
REGION_COLUMN = {"posting": "posting_attributes__region_id", "course": "course_attributes__region_id"}
LETTERS = "RIASEC"


class ServingError(JobcareError):
    """A request the service refuses; ``status`` is the HTTP status, the message names field and rule."""

    status = 400


class UnknownSeekerError(ServingError):
    status = 404


class NotReadyError(ServingError):
    status = 503


@dataclass(frozen=True)
class Variant:
    """The models one A/B arm serves: per item type a registry version and its bundle."""

    alias: str
    versions: dict
    bundles: dict
    stages: dict  # per item type, a StageOne whose two-tower scores the current open items
    history: dict  # per item type: (EventWeights, trained_until) for ALS's seeker histories


def _history_params(bundles: dict) -> dict:
    """Parsed once per model load, not per request."""
    return {
        it: (
            EventWeights(**b.meta.get("event_weights", {})),
            pd.Timestamp(b.meta.get("trained_until", "1970-01-01T00:00:00Z")),
        )
        for it, b in bundles.items()
    }


@dataclass(frozen=True)
class State:
    as_of: pd.Timestamp
    items: dict  # item type -> every item's features as of ``as_of`` (Feast column names)
    offers: dict  # item type -> OfferIndex (capacity, blocking events, histories)
    open_postings: pd.DataFrame
    variants: dict  # alias -> Variant


class Catalog:
    """Static names from the world: titles, occupations, regions, competency units."""

    def __init__(self, world: Path):
        t = read_tables(
            world,
            ["postings", "courses", "certificates", "occupations", "regions", "competency_units"],
        )
        self.titles = {it: t[tab].set_index(ITEM_KEY[it])[col] for it, (tab, col) in TITLE.items()}
        occ = t["occupations"].sort_values("occupation_id")
        self.occupations = occ.set_index("occupation_id")["title"]
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

    def __init__(self, cfg: ProjectConfig, world: str | Path | None = None, load_models: bool = True):
        import os

        self.cfg = cfg
        self.scfg = cfg.serving
        self.world = Path(os.environ.get("JOBCARE_WORLD") or world or self.scfg.world)
        manifest = read_manifest(self.world)
        # default: the last second of the simulated span (the world closes every posting at its end)
        end = pd.Timestamp(manifest["span"]["end"]) - pd.Timedelta(seconds=1)
        self.as_of = pd.Timestamp(self.scfg.as_of) if self.scfg.as_of else end
        if self.as_of.tzinfo is None:
            self.as_of = self.as_of.tz_localize("UTC")
        self.repo = Path(cfg.features.repo)
        self.store = fstore.open_store(self.repo)
        self.catalog = Catalog(self.world)
        self.ctx = context(self.repo, self.catalog.n_units)
        occ = pd.read_parquet(self.repo / "data" / "occupation_profile.parquet")
        occ = occ.sort_values(["occupation_id", "event_timestamp"]).drop_duplicates(
            "occupation_id", keep="last"
        )
        occ = occ.drop(columns=["event_timestamp", "created_timestamp"]).set_index("occupation_id")
        occ.columns = [f"occupation_profile__{c}" for c in occ.columns]
        self.occupation_profile = occ
        self.seeker_columns = self._service_columns("seeker_online_v1")
        self._lock = threading.Lock()
        self.state: State | None = None
        self.refresh(load_models=load_models)

    # ---------------------------------------------------------------- state
    def _service_columns(self, service: str) -> list[str]:
        return fstore.service_columns(self.store.get_feature_service(service))

    def _load_variant(self, alias: str, items: dict) -> Variant | None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient()
        versions, bundles = {}, {}
        for it in self.scfg.item_types:
            try:
                mv = client.get_model_version_by_alias(MODEL_NAMES[it], alias)
            except MlflowException:
                if alias == CHAMPION:
                    raise NotReadyError(
                        f"no `{CHAMPION}` version of {MODEL_NAMES[it]} in the registry at "
                        f"{self.cfg.tracking.resolved().uri}; run `jobcare train` first"
                    ) from None
                return None
            versions[it] = str(mv.version)
            bundles[it] = load_bundle(f"models:/{MODEL_NAMES[it]}/{mv.version}")
        return Variant(alias, versions, bundles, self._stages(bundles, items), _history_params(bundles))

    def _stages(self, bundles: dict, items: dict) -> dict:
        stages = {}
        for it, b in bundles.items():
            tt = copy.copy(b.two_tower)  # own item index per state; the bundle stays untouched
            tt.set_item_index(item_side_table(it, items[it], self.ctx))
            stages[it] = StageOne(it, b.popularity, b.als, tt)
        return stages

    def _item_state(self):
        t = read_tables(self.world, ["events", "postings", "courses"])
        items = {it: item_features(self.repo, it, self.as_of) for it in ("posting", "course", "certificate")}
        offers = {it: OfferIndex(t, it) for it in self.scfg.item_types}
        if self.scfg.load_test_postings:
            items["posting"] = replicate_open_postings(
                items["posting"], self.as_of, self.scfg.load_test_postings
            )
        p = items["posting"]
        open_postings = p[open_mask("posting", p, self.as_of)]
        return items, offers, open_postings

    def refresh(self, load_models: bool = False) -> None:
        """Rebuild the item state (and reload models when asked), then swap it in."""
        items, offers, open_postings = self._item_state()
        with self._lock:
            old = self.state
            if load_models or old is None:
                from training import tracking

                tracking.start(self.cfg.tracking)
                variants = {CHAMPION: self._load_variant(CHAMPION, items)}
                if self.scfg.ab.challenger_share > 0:
                    ch = self._load_variant(CHALLENGER, items)
                    if ch is not None:
                        variants[CHALLENGER] = ch
            else:
                variants = {
                    a: Variant(v.alias, v.versions, v.bundles, self._stages(v.bundles, items), v.history)
                    for a, v in old.variants.items()
                }
            self.state = State(self.as_of, items, offers, open_postings, variants)

    def add_variant(self, alias: str, bundles: dict, versions: dict) -> None:
        """Serve ``bundles`` (item type -> Bundle) under ``alias`` as well (offline use: the off-policy
        estimates ask each model what it would have shown for a logged request)."""
        with self._lock:
            st = self.state
            v = Variant(alias, versions, bundles, self._stages(bundles, st.items), _history_params(bundles))
            self.state = dataclasses.replace(st, variants={**st.variants, alias: v})

    def registry_versions(self) -> dict:
        """The versions the registry's aliases point at now (what a reload would load)."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient()
        out = {}
        aliases = [CHAMPION] + ([CHALLENGER] if self.scfg.ab.challenger_share > 0 else [])
        for alias in aliases:
            for it in self.scfg.item_types:
                try:
                    out[(alias, it)] = str(client.get_model_version_by_alias(MODEL_NAMES[it], alias).version)
                except MlflowException:
                    out[(alias, it)] = None
        return out

    def loaded_versions(self) -> dict:
        out = {}
        for alias, v in self.state.variants.items():
            for it in self.scfg.item_types:
                out[(alias, it)] = v.versions.get(it)
        return out

    def reload_if_moved(self) -> bool:
        """Reload every variant if any alias now points at another version; True if it swapped."""
        now = self.registry_versions()
        loaded = self.loaded_versions()
        if all(now.get(k) == loaded.get(k) for k in now if now[k] is not None):
            return False
        self.refresh(load_models=True)
        log.info("models reloaded: %s", self.loaded_versions())
        return True

    # ---------------------------------------------------------------- seekers
    def online_seeker(self, seeker_id: int) -> pd.Series:
        """The seeker's features from the online store; UnknownSeekerError if the store has none."""
        row = fstore.online_features(self.store, [{"seeker_id": int(seeker_id)}], "seeker_online_v1").iloc[0]
        if pd.isna(row.get("seeker_profile__region_id")):
            raise UnknownSeekerError(
                f"seeker_id {seeker_id}: unknown to the online store; send an inline `profile` instead"
            )
        return row

    def profile_seeker(self, profile: Profile, seeker_id: int = -1) -> pd.Series:
        """The ``seeker_online_v1`` columns built from an inline profile (ids checked against the world)."""
        n_occ, n_reg = len(self.catalog.occupations), len(self.catalog.regions)
        bad = []
        if profile.region_id >= n_reg:
            bad.append(f"profile.region_id: {profile.region_id} is not a region (0-{n_reg - 1})")
        for name, ids in (
            ("desired_occupation_ids", profile.desired_occupation_ids),
            ("last_occupation_id", [profile.last_occupation_id] if profile.last_occupation_id >= 0 else []),
        ):
            wrong = [i for i in ids if not 0 <= i < n_occ]
            if wrong:
                bad.append(f"profile.{name}: {wrong} not occupation ids (0-{n_occ - 1})")
        units = [c.unit_id for c in profile.competencies]
        wrong = [u for u in units if u >= self.catalog.n_units]
        if wrong:
            bad.append(f"profile.competencies.unit_id: {wrong[:5]} not units (0-{self.catalog.n_units - 1})")
        if len(set(units)) != len(units):
            bad.append("profile.competencies: a unit is listed twice (rule: one level per unit)")
        n_cert = len(self.catalog.titles["certificate"])
        wrong = [c for c in profile.certificate_ids if not 0 <= c < n_cert]
        if wrong:
            bad.append(f"profile.certificate_ids: {wrong[:5]} not certificates (0-{n_cert - 1})")
        if bad:
            raise ServingError("; ".join(bad))
        comp = sorted((c.unit_id, c.level) for c in profile.competencies)
        levels = [lv for _, lv in comp]
        row = {c: 0 for c in self.seeker_columns}  # activity counts of a new seeker are 0
        row.update(
            {
                "seeker_id": seeker_id,
                "seeker_profile__region_id": profile.region_id,
                "seeker_profile__education_level": profile.education_level,
                "seeker_profile__major_id": profile.major_id,
                "seeker_profile__career_years": profile.career_years,
                "seeker_profile__last_occupation_id": profile.last_occupation_id,
                "seeker_profile__desired_occupation_ids": list(profile.desired_occupation_ids),
                "seeker_profile__reservation_wage": profile.reservation_wage,
                "seeker_profile__registered_days": self.as_of.value / 86_400e9,
                "seeker_competency__unit_ids": [u for u, _ in comp],
                "seeker_competency__unit_levels": levels,
                "seeker_competency__n_units": len(comp),
                "seeker_competency__mean_unit_level": float(np.mean(levels)) if levels else 0.0,
                "seeker_competency__units_by_group": [],
                "seeker_competency__certificate_ids": sorted(set(profile.certificate_ids)),
                "seeker_competency__n_certificates": len(set(profile.certificate_ids)),
                "seeker_competency__n_courses_completed": 0,
            }
        )
        for col, letter in zip(RIASEC, LETTERS):
            row[f"seeker_psych__{col}"] = getattr(profile.riasec, letter)
        for col in WORK_VALUES:
            row[f"seeker_psych__{col}"] = getattr(profile.work_values, col.removeprefix("wv_"))
        return pd.Series(row)

    def resolve(self, seeker_id: int | None, profile: Profile | None) -> tuple[pd.Series | None, bool]:
        """(seeker feature row, degraded). A profile wins over the store; store failure -> (None, True)."""
        if profile is not None:
            return self.profile_seeker(profile, -1 if seeker_id is None else seeker_id), False
        if seeker_id is None:
            raise ServingError("seeker_id or profile: one is required (rule: identify the seeker)")
        try:
            return self.online_seeker(seeker_id), False
        except UnknownSeekerError:
            raise
        except Exception as e:  # the online store is down: answer from the item side
            log.warning("online store unreachable (%s): degraded answer", type(e).__name__)
            return None, True

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
        """
        if not 1 <= k <= 100:
            raise ServingError(f"k: {k} is outside 1-100")
        state = self.state  # one consistent snapshot for the whole request
        seeker, degraded = self.resolve(seeker_id, profile)
        key = log_key or (str(seeker_id) if seeker_id is not None else "anonymous")
        alias = variant or route_variant(key, self.scfg.ab.salt, self.scfg.ab.challenger_share)
        v = state.variants.get(alias) or state.variants[CHAMPION]
        stage: StageOne = v.stages[item_type]
        s = int(seeker_id) if seeker_id is not None else -1
        held = seeker["seeker_competency__certificate_ids"] if seeker is not None else None
        items = allowed_items(state.offers[item_type], s, state.as_of, state.items[item_type], held)
        items = self._filter(item_type, items, regions, occupations)
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
        }
        if items.empty:
            out["reason"] = (
                "no open item matches: every item is closed, full, already acted on or filtered out"
            )
            return out
        key_col = ITEM_KEY[item_type]
        if seeker is None:  # degraded: popularity among the allowed items, no personal features
            ids, scores = stage.popularity.recommend(s, k, items=items[key_col].to_numpy(np.int64))
            out["items"] = [
                self._item(item_type, i, sc, r + 1, ["popular with other job seekers right now"])
                for r, (i, sc) in enumerate(zip(ids, scores))
            ]
            out["logging"] = {
                "policy": "degraded",
                "epsilon": 0.0,
                "propensities": [1.0] * len(ids),
                "pool": [int(i) for i in ids],
            }
            return out
        frame, scores = self.score(state, v, item_type, seeker, items, s)
        ranked = np.argsort(-scores, kind="stable")
        ecfg = self.scfg.explore if explore else ExploreConfig()
        shown, prop, explored, pool = explore_slate(ranked, k, out["request_id"], ecfg)
        reasons = self.reasons(item_type, frame.iloc[shown], seeker)
        out["items"] = [
            self._item(item_type, int(frame[key_col].iat[j]), float(scores[j]), r + 1, reasons[r])
            for r, j in enumerate(shown)
        ]
        out["explored"] = explored
        ids = frame[key_col].to_numpy(np.int64)
        out["logging"] = {
            "policy": "explore" if explored else "model",
            "epsilon": ecfg.epsilon,
            "propensities": [round(float(x), 8) for x in prop],
            "pool": ids[ranked[:pool]].tolist(),
        }
        return out

    def score(self, state: State, v: Variant, item_type: str, seeker: pd.Series, items: pd.DataFrame, s: int):
        """Stage one + ranker for one seeker over the allowed ``items``: (candidate frame, scores)."""
        bundle: Bundle = v.bundles[item_type]
        stage: StageOne = v.stages[item_type]
        key_col = ITEM_KEY[item_type]
        qfeat = pd.DataFrame([seeker.to_dict()])
        qfeat["seeker_id"] = s
        user_vec = stage.two_tower.embed_users(seeker_side_table(qfeat))[0]
        weights, trained_until = v.history[item_type]
        hist = state.offers[item_type].history(s, state.as_of, weights) if s >= 0 else _empty_history()
        op = state.open_postings if item_type == "certificate" else None
        lists = candidates_for(
            stage,
            self.ctx,
            item_type,
            seeker,
            state.as_of,
            items,
            user_vec,
            hist,
            trained_until,
            bundle.n_candidates,
            op,
        )
        lists = {name: lst for name, lst in lists.items() if name in bundle.quotas}
        cand, _ = union(lists, bundle.quotas, bundle.n_candidates)
        frame = items.set_index(key_col).loc[cand.astype(np.int64)].reset_index()
        frame = self.ranker_frame(item_type, frame, seeker, state.as_of, lists, bundle.n_candidates)
        return frame, bundle.ranker.predict(frame)

    def ranker_frame(self, item_type, frame, seeker, as_of, lists, n_candidates) -> pd.DataFrame:
        """The ranker's input columns for candidate ``frame`` rows (same names and values as training)."""
        key_col = ITEM_KEY[item_type]
        n = len(frame)
        seek = {c: [seeker[c]] * n for c in self.seeker_columns}
        cols = pd.DataFrame(seek, index=frame.index)
        frame = pd.concat([frame, cols], axis=1)
        if item_type == "posting":
            occ = frame["posting_attributes__occupation_id"].to_numpy(np.int64)
            prof = self.occupation_profile.reindex(occ).reset_index(drop=True)
            prof.index = frame.index
            frame = pd.concat([frame, prof], axis=1)
        frame["event_timestamp"] = as_of
        pairs = pair_features(frame, item_type, self.ctx)
        frame = pd.concat([frame, pairs], axis=1)
        ids = frame[key_col].to_numpy()
        for src, lst in lists.items():
            rank = pd.Series(np.arange(1, len(lst) + 1), index=pd.Index(np.asarray(lst, dtype=np.int64)))
            frame[f"cand_rank_{src}"] = rank.reindex(ids).fillna(n_candidates + 1).to_numpy(np.int64)
        return frame

    def _filter(self, item_type, items, regions, occupations) -> pd.DataFrame:
        if regions:
            if item_type not in REGION_COLUMN:
                raise ServingError("filters.regions: certificates have no region (rule: filter applies)")
            items = items[items[REGION_COLUMN[item_type]].isin(regions)]
        if occupations:
            items = items[items[OCC_COLUMN[item_type]].isin(occupations)]
        return items.reset_index(drop=True)

    def _item(self, item_type: str, item_id: int, score: float, rank: int, reasons: list[str]) -> dict:
        title = self.catalog.titles[item_type].get(item_id, f"{item_type} {item_id}")
        return {
            "id": int(item_id),
            "title": str(title),
            "score": float(score),
            "rank": rank,
            "reasons": reasons,
        }

    # ---------------------------------------------------------------- explanations
    def reasons(self, item_type: str, frame: pd.DataFrame, seeker: pd.Series) -> list[list[str]]:
        """Plain-word reasons per row, from the ranker's own inputs (pair features of the row)."""
        letters = _top_letters(np.array([seeker[f"seeker_psych__{c}"] for c in RIASEC], float))
        home = int(seeker["seeker_profile__region_id"])
        out = []
        for _, r in frame.iterrows():
            rs = []
            occ = int(r[OCC_COLUMN[item_type]])
            if item_type == "posting":
                need = int(r["n_required_units"])
                have = need - int(r["missing_units"])
                rs.append(f"covers {have} of {need} required competency units")
                if r["certificates_required"] > 0 and r["certificates_missing"] == 0:
                    rs.append("you hold the required certificate")
                elif r["certificates_required"] > 0:
                    rs.append(f"requires {int(r['certificates_missing'])} certificate(s) you do not hold yet")
                if r["log_wage_ratio"] >= 0:
                    rs.append("pays at least your desired wage")
            elif item_type == "course":
                if r["desired_gap_closure"] > 0:
                    rs.append(f"closes {r['desired_gap_closure']:.0%} of your gap to a desired occupation")
                if r["new_unit_share"] > 0:
                    rs.append(f"{r['new_unit_share']:.0%} of what it teaches is new to you")
            else:
                rs.append(f"you already hold {r['readiness']:.0%} of the competencies it certifies")
                if r["desired_requires_units"] > 0:
                    rs.append("certifies units your desired occupation requires")
            if r["desired_occupation_match"] > 0:
                rs.append(f"in your desired occupation ({self.catalog.occupations.get(occ, occ)})")
            if r["riasec_congruence"] >= 0.5:
                occ_letters = _top_letters(self.catalog.occ_riasec[occ])
                rs.append(f"matches your interest type {letters} (this work is {occ_letters})")
            if "same_region" in r and r["same_region"] > 0:
                rs.append(f"in your region ({self.catalog.regions.get(home, home)})")
            elif "region_distance_km" in r:
                rs.append(f"{r['region_distance_km']:.0f} km from your region")
            out.append(rs)
        return out

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
        held = dict(zip(seeker["seeker_competency__unit_ids"], seeker["seeker_competency__unit_levels"]))
        ctx = self.ctx
        units, imp, lvl = ctx.req_units[occupation_id], ctx.req_imp[occupation_id], ctx.req_lvl[occupation_id]
        req = [(int(u), float(i), int(lv)) for u, i, lv in zip(units, imp, lvl) if i > 0 and u < ctx.n_units]
        rows = [
            {
                "unit_id": u,
                "name": str(self.catalog.units.get(u, u)),
                "required_level": lv,
                "importance": i,
                "held_level": int(held.get(u, 0)),
            }
            for u, i, lv in sorted(req, key=lambda x: -x[1])
        ]
        missing = [r for r in rows if r["held_level"] < r["required_level"]]
        cov = (
            float(
                coverage(
                    np.array([[r["held_level"] for r in rows]]),
                    np.array([[r["required_level"] for r in rows]]),
                    np.array([[r["importance"] for r in rows]]),
                )[0]
            )
            if rows
            else 1.0
        )
        need = {r["unit_id"]: r["required_level"] for r in missing}
        state = self.state
        courses = state.items["course"]
        courses = courses[open_mask("course", courses, state.as_of)]
        courses = (
            courses[~courses["course_id"].isin(state.offers["course"].closed(state.as_of))]
            if "course" in state.offers
            else courses
        )
        return {
            "occupation_id": occupation_id,
            "occupation": str(self.catalog.occupations.get(occupation_id)),
            "coverage": cov,
            "required": rows,
            "missing": missing,
            "courses": self._closers("course", courses, need, "course_attributes"),
            "certificates": self._closers(
                "certificate",
                state.items["certificate"][
                    ~state.items["certificate"]["certificate_id"].isin(
                        seeker["seeker_competency__certificate_ids"]
                    )
                ],
                need,
                "certificate_attributes",
            ),
            "degraded": degraded,
        }

    def _closers(
        self, item_type: str, items: pd.DataFrame, need: dict, view: str, top: int = 5
    ) -> list[dict]:
        """Items whose units reach the missing levels, most missing units closed first."""
        if not need or items.empty:
            return []
        ids = pad_lists(items[f"{view}__unit_ids"], -1)
        lv = pad_lists(items[f"{view}__unit_levels"], 0, ids.shape[1])
        req = np.vectorize(lambda u: need.get(int(u), 99))(ids)
        closes = (ids >= 0) & (lv >= req)
        n = closes.sum(axis=1)
        order = np.lexsort((items[ITEM_KEY[item_type]].to_numpy(), -n))
        out = []
        for j in order[:top]:
            if n[j] == 0:
                break
            iid = int(items[ITEM_KEY[item_type]].iat[j])
            out.append(
                {
                    "id": iid,
                    "title": str(self.catalog.titles[item_type].get(iid, iid)),
                    "closes_units": sorted(int(u) for u in ids[j][closes[j]]),
                }
            )
        return out

    # ---------------------------------------------------------------- health
    def ready(self) -> tuple[bool, str]:
        """Models loaded and the online store reachable."""
        if self.state is None or CHAMPION not in self.state.variants:
            return False, "models not loaded"
        try:
            fstore.online_features(self.store, [{"seeker_id": 0}], "seeker_online_v1")
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


def _top_letters(scores: np.ndarray, n: int = 2) -> str:
    order = np.argsort(-np.asarray(scores, float), kind="stable")[:n]
    return "".join(LETTERS[i] for i in order)


def _empty_history() -> pd.DataFrame:
    return pd.DataFrame(
        {"user": [], "item": [], "timestamp": pd.Series([], dtype="datetime64[ns, UTC]"), "weight": []}
    )
