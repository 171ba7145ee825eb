"""Typed configuration: pydantic models loaded from ``configs/*.yaml``; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jobcare.errors import ConfigError

Scale = Literal["tiny", "demo", "national"]


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ScaleConfig(StrictModel):
    """Sizes of one world scale."""

    n_seekers: int = Field(gt=0)
    n_postings: int = Field(gt=0)
    n_occupations: int = Field(gt=0, description="synthetic taxonomy only")
    n_units: int = Field(gt=0, description="synthetic taxonomy only")
    n_certificates: int = Field(gt=0)
    n_courses: int = Field(gt=0)
    n_majors: int = Field(gt=0)
    n_employers: int = Field(gt=0)
    n_providers: int = Field(gt=0)
    days: int = Field(gt=0, le=3650)
    sessions_per_seeker_day: float = Field(gt=0, description="mean session rate of an active seeker")


SCALES: dict[str, ScaleConfig] = {
    "tiny": ScaleConfig(
        n_seekers=500,
        n_postings=400,
        n_occupations=40,
        n_units=160,
        n_certificates=30,
        n_courses=120,
        n_majors=15,
        n_employers=80,
        n_providers=20,
        days=120,
        sessions_per_seeker_day=0.12,
    ),
    "demo": ScaleConfig(
        n_seekers=20_000,
        n_postings=5_000,
        n_occupations=400,
        n_units=1_200,
        n_certificates=300,
        n_courses=3_000,
        n_majors=100,
        n_employers=1_500,
        n_providers=300,
        days=730,
        sessions_per_seeker_day=0.03,
    ),
    "national": ScaleConfig(
        n_seekers=1_000_000,
        n_postings=200_000,
        n_occupations=400,
        n_units=1_200,
        n_certificates=300,
        n_courses=3_000,
        n_majors=100,
        n_employers=40_000,
        n_providers=600,
        days=730,
        sessions_per_seeker_day=0.03,
    ),
}


class UtilityShares(StrictModel):
    """Target shares of the within-seeker variance of u = observable fit + latent taste + noise."""

    observable: float = Field(0.45, gt=0, lt=1)
    latent: float = Field(0.30, gt=0, lt=1)
    noise: float = Field(0.25, gt=0, lt=1)


Share = Annotated[float, Field(gt=0, le=1)]


class SessionMix(StrictModel):
    """Shares of the sessions that browse each item type (they must add up to 1)."""

    posting: float = Field(0.7, gt=0, lt=1)
    course: float = Field(0.2, gt=0, lt=1)
    certificate: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _adds_up(self) -> SessionMix:
        total = self.posting + self.course + self.certificate
        if abs(total - 1) > 1e-9:
            raise ValueError(f"session_mix: shares add up to {total:g}, not 1 (rule: shares of all sessions)")
        return self


class WorldConfig(StrictModel):
    """Everything ``jobcare world generate`` needs. Scale presets come from :data:`SCALES`."""

    scale: Scale = "demo"
    seed: int = 7
    taxonomy: Literal["synthetic", "onet"] = "synthetic"
    onet_dir: Path | None = None
    start_date: str = "2024-01-01"
    slate_size: int = Field(10, ge=2, le=30)
    epsilon: float = Field(0.2, gt=0, le=1, description="share of uniformly random (explore) slates")
    epsilon_by_item_type: dict[Literal["posting", "course", "certificate"], Share] = Field(
        default_factory=dict,
        description="per item type overrides of epsilon (e.g. more exploration of the small catalogues)",
    )
    session_mix: SessionMix = SessionMix()
    latent_dim: int = Field(8, ge=2, le=64)
    shares: UtilityShares = UtilityShares()
    apply_rate_target: float = Field(0.03, gt=0, lt=0.5, description="P(apply | examined), average")
    view_rate_target: float = Field(0.20, gt=0, lt=0.9, description="P(view | examined), average")
    overrides: dict[str, float] = Field(default_factory=dict, description="ScaleConfig field overrides")

    def epsilons(self) -> dict[str, float]:
        """The explore share of each item type's slates: ``epsilon`` unless overridden."""
        return {
            it: float(self.epsilon_by_item_type.get(it, self.epsilon))
            for it in ("posting", "course", "certificate")
        }

    def sizes(self) -> ScaleConfig:
        """The scale preset with ``overrides`` applied (unknown fields are errors)."""
        base = SCALES[self.scale].model_dump()
        unknown = set(self.overrides) - set(base)
        if unknown:
            raise ConfigError(f"overrides: unknown scale field(s) {sorted(unknown)}; known: {sorted(base)}")
        base.update(self.overrides)
        try:
            return ScaleConfig(**base)
        except ValidationError as e:
            raise ConfigError(f"overrides: {e}") from None


M = TypeVar("M", bound=BaseModel)


def load_config(path: str | Path | None, model: type[M], section: str | None = None) -> M:
    """Load ``path`` (YAML) into ``model``; ``section`` picks a top-level key. ``None`` gives defaults.

    Raises:
        ConfigError: the file is missing, is not YAML, or a key is unknown or invalid.
    """
    if path is None:
        return model()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    if section is not None:
        data = data.get(section, {}) or {}
    try:
        return model(**data)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        where = f"{p}[{section}]" if section else str(p)
        raise ConfigError(f"{where}: {msgs}") from None


class SummaryConfig(StrictModel):
    """``jobcare world summary``: size of the learnability check."""

    n_eval_seekers: int = Field(1500, gt=0)
    k: int = Field(10, gt=0)
    seed: int = 0


class FeaturesConfig(StrictModel):
    """Feature store profile and locations. ``JOBCARE_PROFILE`` / ``JOBCARE_REDIS`` /
    ``JOBCARE_FEAST_REGISTRY_URL`` in the environment override the file (no secrets in the repo)."""

    profile: Literal["local", "production"] = "local"
    repo: Path = Path(".jobcare/feature_repo")
    project: str = Field("jobcare", pattern=r"^[a-z][a-z0-9_]*$")
    redis: str = "127.0.0.1:6379"
    redis_timeout_seconds: float = Field(
        0.5, gt=0, description="online store connect / read timeout; over it a request is answered degraded"
    )
    registry_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    materialize_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="processes materialising feature views in parallel (2 on 2 cores at national scale; "
        "each pays Feast's import, so 1 is faster on small worlds); production profile only",
    )

    @model_validator(mode="after")
    def _parallel_needs_redis(self) -> FeaturesConfig:
        if self.materialize_workers > 1 and self.profile != "production":
            raise ValueError(
                f"materialize_workers {self.materialize_workers} needs profile production (Redis): "
                "the local profile's SQLite online store takes one writer at a time"
            )
        return self

    def resolved(self) -> FeaturesConfig:
        """A copy with the environment overrides applied."""
        import os

        upd = {}
        for env, key in (
            ("JOBCARE_PROFILE", "profile"),
            ("JOBCARE_REDIS", "redis"),
            ("JOBCARE_FEAST_REGISTRY_URL", "registry_url"),
        ):
            if os.environ.get(env):
                upd[key] = os.environ[env]
        return self.model_validate(self.model_dump() | upd)


class ALSParams(StrictModel):
    factors: int = Field(64, gt=0)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(10.0, gt=0)
    iterations: int = Field(15, gt=0)


class TwoTowerParams(StrictModel):
    dim: int = Field(32, gt=0)
    hidden: int = Field(128, gt=0)
    epochs: int = Field(8, gt=0)
    batch_size: int = Field(512, gt=1)
    lr: float = Field(3e-3, gt=0)
    temperature: float = Field(0.1, gt=0)
    samples_per_epoch: int = Field(100_000, gt=0)


class EventWeights(StrictModel):
    """Confidence weight per event type, and the half-life (days) of the time decay."""

    by_type: dict[str, float] = {
        "view": 1.0,
        "apply": 4.0,
        "hire": 8.0,
        "enrol": 4.0,
        "complete": 6.0,
        "register": 4.0,
        "acquire": 6.0,
    }
    half_life_days: float = Field(60.0, gt=0)


class CandidatesConfig(StrictModel):
    """Stage one: generators, union quotas and the time-split evaluation."""

    eval_days: int = Field(60, gt=0, description="the evaluation window is the last eval_days of the span")
    n_candidates: int = Field(300, gt=0)
    quotas: dict[str, int] = {"two_tower": 100, "rules": 100, "als": 70, "popularity": 30}
    max_queries: int = Field(1500, gt=0, description="evaluation requests sampled per item type")
    item_types: list[Literal["posting", "course", "certificate"]] = ["posting", "course", "certificate"]
    event_weights: EventWeights = EventWeights()
    als: ALSParams = ALSParams()
    two_tower: TwoTowerParams = TwoTowerParams()
    seed: int = 0


class RankerParams(StrictModel):
    n_estimators: int = Field(200, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, gt=1)
    min_child_samples: int = Field(20, gt=0)
    feature_fraction: float = Field(0.9, gt=0, le=1)
    unbiased: bool = Field(
        False,
        description="learn the logging position bias jointly (LightGBM's unbiased LambdaMART, from each "
        "training row's logged position) so the ranker does not imitate the logging order",
    )
    position_bias_regularization: float = Field(0.0, ge=0)


class GateConfig(StrictModel):
    """Promote a new version only if the 95% paired-bootstrap interval of its per-seeker NDCG@10 gain over
    the champion, on the validation window's explore slates (the unbiased protocol), lies above
    ``min_improvement``. With fewer than ``min_explore_seekers`` explore seekers the gate falls back to the
    logged-label NDCG of the validation window and says so in its reason."""

    min_improvement: float = 0.0
    n_boot: int = Field(2000, gt=99)
    min_explore_seekers: int = Field(30, gt=1)


class DaskConfig(StrictModel):
    """``train.engine: dask``: the Dask cluster that builds the ranker rows and fits the ranker
    (:mod:`training.distributed`). Stage one (ALS, two-tower, popularity) stays on the node running
    ``jobcare train``. Every worker needs this package installed and read access to the world's Parquet
    and the feature repository at the same paths (a shared file system)."""

    scheduler: Optional[str] = Field(
        None,
        description="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786; None: a LocalCluster "
        "on this machine (n_workers worker processes)",
    )
    n_workers: int = Field(2, gt=0, description="LocalCluster only: worker processes")
    threads_per_worker: int = Field(
        1, gt=0, description="LocalCluster only: threads per worker (LightGBM's num_threads on each)"
    )
    partitions: Optional[int] = Field(
        None,
        gt=0,
        description="request partitions per window (by a stable seeker hash); None: one per worker",
    )
    network_timeout_minutes: int = Field(
        5, gt=0, description="LightGBM's socket time_out between workers during a distributed fit"
    )


class TrainConfig(StrictModel):
    """``jobcare train``: the stage-two time split, ranker rows, ranker and gate."""

    item_types: list[Literal["posting", "course", "certificate"]] = ["posting", "course", "certificate"]
    test_days: int = Field(
        60, gt=0, description="test window [T1, end): reported once per run, never chosen on"
    )
    eval_days: int = Field(
        60, gt=0, description="validation window [T2, T1), T1 = end - test_days: every choice"
    )
    train_days: int = Field(120, gt=0, description="ranker rows from [T2 - train_days, T2)")
    min_history_days: int = Field(
        28, gt=0, description="days of events before the train window (what its stage one is fitted on)"
    )
    until: Optional[str] = Field(
        None,
        description="data cutoff (an ISO date or moment, UTC): the windows end here instead of at the "
        "world's end, so the registered model has seen nothing after it (an online A/B from this moment "
        "on is then out of sample); default: the end of the logs",
    )
    max_requests: int = Field(3000, gt=0, description="replayed requests per window and item type")
    replay_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="local engine: forked processes replaying a window's requests into ranker rows (the "
        "same rows; the replay is single-threaded, so 2 on 2 cores at national scale)",
    )
    negatives_per_request: int = Field(30, ge=0)
    max_explore_requests: int = Field(
        1000, gt=0, description="explore-slate requests with an outcome replayed for the unbiased protocol"
    )
    ranker: RankerParams = RankerParams()
    ranker_overrides: dict[Literal["posting", "course", "certificate"], dict] = Field(
        {},
        description="per item type, ranker parameters replacing `ranker`'s, e.g. {posting: {unbiased: true}}",
    )
    gate: GateConfig = GateConfig()
    shuffle_labels: bool = Field(False, description="train on shuffled labels: a deliberately worse model")
    seed: int = 0
    engine: Literal["local", "dask"] = Field(
        "local",
        description="local: rows and ranker in this process; dask: rows built per partition of requests on "
        "a Dask cluster's workers and the ranker fitted with lightgbm.dask (see `dask`)",
    )
    dask: DaskConfig = DaskConfig()

    @model_validator(mode="after")
    def _overrides_are_ranker_params(self) -> TrainConfig:
        for it in self.ranker_overrides:
            try:
                self.ranker_for(it)
            except ValidationError as e:
                bad = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
                raise ValueError(f"ranker_overrides.{it}: {bad}") from None
        return self

    def ranker_for(self, item_type: str) -> RankerParams:
        """``ranker`` with the item type's overrides applied (validated: an unknown key is an error)."""
        return RankerParams(**{**self.ranker.model_dump(), **self.ranker_overrides.get(item_type, {})})


WEIGHTS = r"^(raw|binary|log1p|ge:[0-9.eE+-]+)$"


class ItemKNNParams(StrictModel):
    """Item-item neighbours (``implicit.nearest_neighbours``): the similarity and its parameters."""

    measure: Literal["bm25", "cosine"] = Field("bm25", description="BM25-weighted or cosine similarity")
    neighbours: int = Field(100, gt=0, description="most similar items kept per item")
    k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation (bm25 only)")
    b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation (bm25 only)")


class GenericConfig(StrictModel):
    """``jobcare generic``: both stages on any implicit-feedback dataset. The source settings below are
    the starting point (trial 0) of the tuning inside ``fit``; ``fit`` writes the chosen ones to the
    model's ``generic.json``. Weight transforms: ``raw``, ``binary``, ``log1p``, ``ge:<t>`` (only pairs
    with weight >= t, as 1). Every value can be overridden from a ``generic:`` config section."""

    als: ALSParams = ALSParams(factors=32, regularization=0.05, alpha=10.0, iterations=15)
    als_weights: str = Field("raw", pattern=WEIGHTS, description="weight transform of the ALS")
    knn: ItemKNNParams = ItemKNNParams()
    knn_weights: str = Field("raw", pattern=WEIGHTS, description="weight transform of the item-kNN")
    popularity_weights: str = Field(
        "binary", pattern=WEIGHTS, description="popularity: binary = users per item, raw = summed weight"
    )
    ranker: RankerParams = Field(
        RankerParams(n_estimators=100, num_leaves=7, min_child_samples=100),
        description="small trees: on development versions of the test sets they beat 31 leaves, 20 samples "
        "and 150 trees by 0.015-0.025 cross-fitted validation NDCG@10",
    )
    n_candidates: int = Field(100, gt=0, description="size of the union of candidates the ranker re-ranks")
    quotas: Optional[dict[Literal["als", "knn", "popularity"], int]] = Field(
        None,
        description="union quotas per source (adding up to n_candidates); None: chosen on validation",
    )
    quota_step: float = Field(0.1, gt=0, le=0.5, description="grid step of the quota search (share of n)")
    holdout: Literal["random", "latest"] = Field(
        "random",
        description="validation pairs per user: a random validation_share, or the latest (needs timestamp)",
    )
    validation_share: float = Field(0.2, gt=0, lt=1, description="share of each user's pairs held out")
    max_holdout_per_user: int = Field(50, gt=0, description="at most this many held-out pairs per user")
    budget_seconds: float = Field(
        300.0, ge=0, description="wall-clock budget of the stage-one search (0: the settings above only)"
    )
    knn_budget_share: float = Field(0.25, ge=0, le=1, description="share of the budget for the item-kNN")
    max_trials: int = Field(1000, gt=0, description="at most this many trials per source")
    max_users: int = Field(
        5000, gt=1, description="validation users sampled for tuning, the ranker's rows and its check"
    )
    ranker_folds: int = Field(2, ge=2, description="user folds of the ranker's cross-fitted check")
    ranker_min_gain: float = Field(
        0.0, description="use the ranker only if the 95% CI of its NDCG@10 gain over the best source is above"
    )
    n_boot: int = Field(2000, gt=99, description="bootstrap resamples of that check")
    protected: list[str] = Field(["gender", "age"], description="side columns never used (nor derivatives)")
    num_threads: int = Field(
        1,
        ge=0,
        description="threads of implicit and LightGBM (0: all cores); 1 because their OpenMP threads "
        "busy-wait, which made a LambdaRank fit 24x slower when other work shared the 2 cores",
    )
    seed: int = 0

    @model_validator(mode="after")
    def _quotas_add_up(self) -> GenericConfig:
        if self.quotas is not None and sum(self.quotas.values()) != self.n_candidates:
            raise ValueError(
                f"quotas add up to {sum(self.quotas.values())}, not n_candidates = {self.n_candidates}"
            )
        return self


class TrackingConfig(StrictModel):
    """MLflow: tracking URI (sqlite by default; PostgreSQL in production, e.g.
    ``postgresql+psycopg://postgres@127.0.0.1:5432/jobcare_mlflow``, created if missing), the
    artifact folder and the audit log. ``JOBCARE_MLFLOW_URI`` overrides the URI."""

    uri: str = "sqlite:///.jobcare/mlflow.db"
    artifacts: Path = Path(".jobcare/mlartifacts")
    experiment: str = "jobcare"
    audit_log: Path = Field(
        Path(".jobcare/audit.jsonl"),
        description="JSON lines: every promotion, rollback, gate decision and service model reload or "
        "refusal (who, when, why, what); JOBCARE_AUDIT_LOG overrides",
    )

    def resolved(self) -> TrackingConfig:
        import os

        upd = {}
        for env, key in (("JOBCARE_MLFLOW_URI", "uri"), ("JOBCARE_AUDIT_LOG", "audit_log")):
            if os.environ.get(env):
                upd[key] = os.environ[env]
        return self.model_validate(self.model_dump() | upd) if upd else self


class ABConfig(StrictModel):
    """A/B routing: a deterministic hash of (seeker, salt) sends ``challenger_share`` of seekers to the
    ``challenger`` alias, the rest to ``champion``. 0 serves the champion only."""

    challenger_share: float = Field(0.0, ge=0, le=1)
    salt: str = "jobcare-ab-1"


class ExploreConfig(StrictModel):
    """Logged exploration, so that the impression log can value other models off-policy: with
    probability ``epsilon`` (a hash of the request id and ``salt``) a response shows ``k`` items drawn
    uniformly from the model's top ``pool`` in random order instead of its top ``k``. Every shown item is
    logged with its propensity, P(this item at this position) = (1 - epsilon) * [the model put it there]
    + epsilon / pool. 0 (the default) serves the model's order only."""

    epsilon: float = Field(0.0, ge=0, le=1)
    pool: int = Field(30, gt=0, le=300, description="explore among the model's top `pool` items")
    salt: str = "jobcare-explore-1"


class CongestionConfig(StrictModel):
    """Congestion-aware re-ranking of postings (issue 18, serving/congestion.py), off by default: after the
    ranker, each candidate posting's score is discounted by its expected congestion at the service clock,
    score - weight * log1p(applicants so far / openings not yet filled), before exploration. Trades a
    seeker's own fit for fewer crowded postings (objective: total hires). Weight 0 keeps the order."""

    enabled: bool = False
    weight: float = Field(0.5, ge=0, le=100, description="ranker-score units per unit of log1p(load)")


class FairnessConfig(StrictModel):
    """Exposure-aware re-ranking across seeker groups (issue 18, serving/fairness.py), off by default: for
    seekers of ``groups`` in ``dimension``, the ranker's scores are blended with its content-only
    ablation's (``content_weight`` of the standardised content score). Reads the seeker's gender and age
    (``seeker_audit_v1``) at serving time, which no model takes as input: a policy decision."""

    enabled: bool = False
    dimension: Literal["age band", "gender"] = "age band"
    groups: list[str] = []
    content_weight: float = Field(0.5, ge=0, le=1, description="0: the ranker alone; 1: the content model")

    @model_validator(mode="after")
    def _groups_of_the_dimension(self):
        from jobcare.groups import GROUPS

        bad = [g for g in self.groups if g not in GROUPS[self.dimension]]
        if bad:
            raise ValueError(
                f"serving.fairness.groups {bad} are not groups of {self.dimension!r} (allowed: "
                f"{list(GROUPS[self.dimension])})"
            )
        if self.enabled and not self.groups:
            raise ValueError("serving.fairness.enabled needs at least one group in serving.fairness.groups")
        return self


class ImpressionLogConfig(StrictModel):
    """Where the service appends what it showed: JSONL files rotated by size or age. While the disk fails
    (full, unwritable, folder gone) records wait in memory, at most ``spool_max_records`` per worker; beyond
    it the oldest are dropped and counted (serving/impressions.py)."""

    dir: Path = Path(".jobcare/impressions")
    max_bytes: int = Field(20_000_000, gt=0)
    max_seconds: float = Field(3600.0, gt=0)
    spool_max_records: int = Field(
        20_000,
        gt=0,
        description="records held in memory per worker while writing fails (about 3.5 KB each: 20,000 is "
        "about 70 MB); beyond it the oldest is dropped and counted",
    )
    retry_seconds: float = Field(
        1.0, gt=0, description="while writing fails, retry the oldest record this often"
    )


# ``scrypt$<n>$<r>$<p>$<salt hex>$<derived key hex>`` (serving/auth.py hashes and checks; this only parses)
KEY_HASH_RE = r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([0-9a-f]{32,128})\$([0-9a-f]{64})$"
KEY_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ApiKeyHash(StrictModel):
    """One API key as a salted scrypt hash (``jobcare auth hash-key`` prints the entry). ``id`` names the
    caller in logs, limits and metrics; the key itself is never stored."""

    id: str = Field(pattern=KEY_ID_RE, description="the caller's name: letters, digits, . _ -")
    hash: str = Field(pattern=KEY_HASH_RE, description="scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>")

    @model_validator(mode="after")
    def _cost_in_bounds(self) -> ApiKeyHash:
        import re

        n, r, p = (int(x) for x in re.match(KEY_HASH_RE, self.hash).groups()[:3])
        if n < 2 or n & (n - 1) or not (1 <= r <= 32 and 1 <= p <= 16) or 128 * n * r * p > 2**28:
            raise ValueError(
                f"key {self.id}: scrypt n={n} r={r} p={p}: n must be a power of 2, 1 <= r <= 32, "
                "1 <= p <= 16 and memory 128*n*r*p <= 256 MiB"
            )
        return self


class RateLimitConfig(StrictModel):
    """A token bucket per API key: ``per_second`` sustained requests (0: no limit), ``burst`` at once.
    Both are for the whole service; each worker process enforces its share (serving/auth.py)."""

    per_second: float = Field(0.0, ge=0, description="requests per second per key, all workers; 0: off")
    burst: int = Field(20, ge=1, description="requests a key may send at once before the rate applies")


class AuthConfig(StrictModel):
    """Optional API keys (header ``X-API-Key`` or ``Authorization: Bearer``); health, metrics, docs and the
    report page's files stay open. On when ``enabled`` or when ``JOBCARE_API_KEYS`` (plain keys,
    comma-separated, ids ``env-1``, ``env-2``, ...) is set; the keys accepted are ``key_hashes`` plus those.
    Plain keys in a config file are refused: configs get copied, logged and committed."""

    enabled: bool = False
    keys: list[str] = Field(
        [], description="refused when non-empty: use key_hashes (jobcare auth hash-key) or JOBCARE_API_KEYS"
    )
    key_hashes: list[ApiKeyHash] = []
    rate_limit: RateLimitConfig = RateLimitConfig()
    new_key_checks_per_second: float = Field(
        4.0,
        gt=0,
        description="per worker: scrypt checks of keys not yet seen valid (a flood of wrong keys costs at "
        "most this, each check one scrypt per key_hashes entry); over it: 429",
    )

    @model_validator(mode="after")
    def _no_plain_keys_and_unique_ids(self) -> AuthConfig:
        if self.keys:
            raise ValueError(
                f"keys: {len(self.keys)} plain API key(s) in the configuration: refused (rule: keys are "
                "stored as salted hashes); put `jobcare auth hash-key --id NAME` entries in key_hashes, or "
                "pass plain keys in the JOBCARE_API_KEYS environment variable"
            )
        ids = [h.id for h in self.key_hashes]
        dup = sorted({i for i in ids if ids.count(i) > 1 or i.startswith("env-")})
        if dup:
            raise ValueError(f"key_hashes: ids {dup} repeated or reserved (rule: unique, not env-*)")
        return self

    @staticmethod
    def env_keys() -> list[str]:
        """The plain keys of ``JOBCARE_API_KEYS`` (comma-separated), in order."""
        import os

        return [k.strip() for k in os.environ.get("JOBCARE_API_KEYS", "").split(",") if k.strip()]


class ServingConfig(StrictModel):
    """The online service. ``JOBCARE_WORLD`` overrides ``world``."""

    world: Path = Path(".jobcare/world-demo-7")
    item_types: list[Literal["posting", "course", "certificate"]] = ["posting", "course", "certificate"]
    as_of: Optional[str] = Field(
        None,
        description="the clock inside the simulated world (default: 1 s before the end of its span)",
    )
    ab: ABConfig = ABConfig()
    explore: ExploreConfig = ExploreConfig()
    congestion: CongestionConfig = CongestionConfig()
    fairness: FairnessConfig = FairnessConfig()
    impression_log: ImpressionLogConfig = ImpressionLogConfig()
    auth: AuthConfig = AuthConfig()
    reload_poll_seconds: float = Field(10.0, ge=0, description="registry alias poll period; 0 disables")
    item_refresh_seconds: float = Field(300.0, ge=0, description="in-memory item index refresh; 0 disables")
    anonymous_salt: str = Field("jobcare-anon", description="salt of the hash logged for inline profiles")
    load_test_postings: int = Field(
        0, ge=0, description="load testing only: replicate the open postings up to this many (0: off)"
    )
    max_body_bytes: int = Field(
        65_536, ge=1_024, description="a request body over this many bytes gets 413 before any endpoint runs"
    )
    min_cell_people: int = Field(
        5, ge=1, description="labour-market information: a count of fewer people is suppressed"
    )
    employment_window_days: int = Field(
        180,
        ge=1,
        description="labour-market information: a course completer counts as employed when hired "
        "within this many days",
    )


class ProjectConfig(StrictModel):
    """One YAML file, one section per stage; every command reads the section it needs."""

    world: WorldConfig = WorldConfig()
    summary: SummaryConfig = SummaryConfig()
    features: FeaturesConfig = FeaturesConfig()
    candidates: CandidatesConfig = CandidatesConfig()
    train: TrainConfig = TrainConfig()
    generic: GenericConfig = GenericConfig()
    serving: ServingConfig = ServingConfig()
    tracking: TrackingConfig = TrackingConfig()
