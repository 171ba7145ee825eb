"""The Dask engine of ``jobcare train`` (``train.engine: dask``): ranker rows built per partition of
requests on a Dask cluster's workers, and the LambdaRank ranker fitted with ``lightgbm.dask``.

What runs where:

- the node running ``jobcare train`` (the driver): the data contracts, stage one (ALS, two-tower,
  popularity; ALS fits millions of interactions on one machine), the choice of each window's requests
  with their labels, point-in-time seeker features and embeddings
  (:func:`training.stage_two.select_requests`), evaluation, MLflow and the registry;
- the workers: :func:`training.stage_two.replay_requests`, the same code the local engine runs, on one
  partition of the requests each (partitioned by a stable hash of the seeker id, so a request and all of a
  seeker's requests stay in one partition and no query group is ever split), reading the world's Parquet
  and the feature repository from their paths (a path every worker can read: a shared file system);
- LightGBM's data-parallel tree learner across the workers holding the partitions
  (``lightgbm.dask.DaskLGBMRanker``), with the local ranker's parameters; its booster is wrapped in a
  :class:`training.ranker.LambdaRankRanker`, so the registered bundle is the same kind of object as the
  local engine's and the service loads it unchanged.

A worker lost while rows are built is survived (Dask recomputes its partitions elsewhere: each request
draws its negatives from its own seeded generator, so they come out the same). A worker lost during a fit
is not (LightGBM's workers form one collective): :class:`DistributedTrainingError`, raised before anything
is registered. Dask is imported inside functions: the local engine never pays for it.
"""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jobcare.errors import ConfigError, JobcareError
from training.ranker import LambdaRankRanker
from training.stage_two import (
    RankerData,
    ReplayedRows,
    RequestBatch,
    group_sizes,
    prepare_requests,
    ranker_data,
    replay_requests,
    sort_rows,
)

log = logging.getLogger(__name__)
WATCH_SECONDS = 0.2  # how often the driver checks that every worker is still there during a fit


class DistributedTrainingError(JobcareError):
    """The Dask engine failed (unreachable scheduler, unusable worker, worker lost during a fit)."""


def check_engine(tc) -> None:
    """Refuse, before any work, what the Dask engine cannot do: LightGBM's unbiased LambdaMART needs each
    row's logged position, which ``lightgbm.dask`` 4.7 cannot pass to its workers."""
    if tc.engine != "dask":
        return
    unbiased = [it for it in tc.item_types if tc.ranker_for(it).unbiased]
    if unbiased:
        raise ConfigError(
            f"train.engine dask cannot fit the unbiased ranker of {unbiased} (lightgbm.dask 4.7 takes no "
            "`position`); set unbiased: false for them (train.ranker / train.ranker_overrides) or use "
            "train.engine local"
        )


@contextmanager
def engine_session(tc, world: Path, repo: Path, n_units: int):
    """Yield None for the local engine, else a :class:`DaskEngine` on ``tc.dask.scheduler`` (or on a
    ``LocalCluster`` started here), closed on exit."""
    if tc.engine != "dask":
        yield None
        return
    check_engine(tc)
    from dask.distributed import Client

    d, cluster = tc.dask, None
    where = d.scheduler or f"a LocalCluster of {d.n_workers} worker processes"
    try:
        if d.scheduler:
            client = Client(d.scheduler, timeout="30s")
        else:
            cluster = local_cluster(d.n_workers, d.threads_per_worker)
            client = Client(cluster)
    except (OSError, TimeoutError) as e:
        if cluster is not None:
            cluster.close()
        raise DistributedTrainingError(f"cannot start or reach {where}: {e}; nothing was registered") from e
    try:
        engine = DaskEngine(client, d, world, repo, n_units)
        engine.probe()
        log.info("Dask engine on %s: %d workers", where, len(engine.workers()))
        yield engine
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def local_cluster(n_workers: int, threads_per_worker: int):
    """A ``LocalCluster`` of worker processes whose scheduler does not steal work: each partition's fit
    data stays on the worker that built it, so LightGBM's ranks (and the fitted trees) are reproducible.
    On a real cluster, start the scheduler with ``DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING=False``."""
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        return LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None
        )


@dataclass(frozen=True)
class PartitionSpec:
    """What a worker needs besides its requests and the stage one: paths it reads and the window."""

    item_type: str
    world: str
    repo: str
    stamp: str  # when the world and the repository last changed: a worker's cached reads expire with it
    n_units: int
    cfg: object  # CandidatesConfig
    start: pd.Timestamp
    negatives: int
    seed: int
    positive_only: bool


class DaskEngine:
    """Ranker rows and fits on a Dask cluster, for :func:`training.stage_two.fit_and_evaluate`.

    Args:
        client: a connected ``dask.distributed.Client``.
        cfg: the ``train.dask`` section (:class:`jobcare.config.DaskConfig`).
        world: the world folder, readable by every worker at this path.
        repo: the feature repository, readable by every worker at this path.
        n_units: the number of competency units (the pair features' context).
    """

    def __init__(self, client, cfg, world: Path, repo: Path, n_units: int):
        self.client = client
        self.cfg = cfg
        self.world = str(Path(world).resolve())
        self.repo = str(Path(repo).resolve())
        self.n_units = n_units

    def workers(self) -> list[str]:
        """The addresses of the cluster's workers, sorted."""
        return sorted(self.client.nthreads())

    def stamp(self) -> str:
        """The modification times of the world's manifest and the repository's metadata."""
        from features.store import REPO_META
        from jobcare.world.io import MANIFEST

        paths = (Path(self.world) / MANIFEST, Path(self.repo) / REPO_META)
        return ",".join(str(p.stat().st_mtime_ns) if p.exists() else "-" for p in paths)

    def probe(self) -> None:
        """Check that every worker imports this package and reads the world and the repository."""
        try:
            answers = self.client.run(_probe, self.world, self.repo)
        except Exception as e:  # noqa: BLE001 - an unpicklable function or a dead worker: say what is needed
            raise DistributedTrainingError(
                f"the Dask workers cannot run the jobcare package ({type(e).__name__}: {e}); every worker "
                "needs it installed (same version) and nothing was registered"
            ) from e
        bad = {w: msg for w, msg in answers.items() if msg}
        if not bad:
            return
        raise DistributedTrainingError(
            f"worker(s) cannot read the training data: {bad}; the world and the feature repository must be "
            "readable by every worker at the same path (a shared file system); nothing was registered"
        )

    def build_rows(
        self,
        item_type: str,
        t: dict,
        store,
        repo: Path,
        ctx,
        cfg,
        start: pd.Timestamp,
        end: pd.Timestamp,
        max_requests: int,
        negatives: int,
        seed: int,
        show_progress: bool = False,
        policy: str | None = None,
        positive_only: bool | None = None,
        stage=None,
    ) -> RankerData:
        """:func:`training.stage_two.build_rows` with the replay run on the workers, one partition of the
        requests (by seeker hash) each; returns the same rows, plus their partitions as futures."""
        stage, batch, positive_only = prepare_requests(
            item_type, t, store, repo, ctx, cfg, start, end, max_requests, seed, policy, positive_only, stage
        )
        spec = PartitionSpec(
            item_type,
            self.world,
            self.repo,
            self.stamp(),
            self.n_units,
            cfg,
            start,
            negatives,
            seed,
            positive_only,
        )
        futures = self._replay(spec, batch, stage)
        what = f"building the {item_type} rows of [{start}, {end})"
        outs = self._gather(futures, what)
        parts = [
            self.client.submit(_rows_of, f, pure=False) for f, o in zip(futures, outs) if o.rows is not None
        ]
        return ranker_data(item_type, outs, batch.requests, stage, parts)

    def _replay(self, spec: PartitionSpec, batch: RequestBatch, stage) -> list:
        """Submit one replay per non-empty partition, partition i preferring worker i (mod workers)."""
        workers = self.workers()
        n = self.cfg.partitions or len(workers)
        bucket = seeker_partitions(batch.requests["seeker_id"].to_numpy(), n)
        stage_f = self.client.scatter(stage, broadcast=True, hash=False)
        futures = []
        for i in range(n):
            idx = np.flatnonzero(bucket == i)
            if idx.size:
                futures.append(
                    self.client.submit(
                        _replay_partition,
                        spec,
                        batch.take(idx),
                        stage_f,
                        workers=[workers[i % len(workers)]],
                        allow_other_workers=True,
                        pure=False,
                    )
                )
        return futures

    def stack_parts(self, a: list, b: list, offset: int) -> list:
        """Partitions of two windows' rows, ``b``'s request ids shifted by ``offset``, stacked pairwise
        (partition i of both holds the same seekers), each still whole requests in order."""
        out = [self.client.submit(_stack, x, y, offset, pure=False) for x, y in zip(a, b)]
        longer = a if len(a) > len(b) else b
        shift = 0 if longer is a else offset
        out += [self.client.submit(_stack, x, None, shift, pure=False) for x in longer[len(out) :]]
        return out

    def fit_ranker(
        self, ranker_params: dict, seed: int, data: RankerData, feats: list[str], shuffle_labels: bool = False
    ) -> LambdaRankRanker:
        """A :class:`LambdaRankRanker` whose booster ``lightgbm.dask.DaskLGBMRanker`` fitted on ``data``'s
        partitions (where they are), with the local ranker's LightGBM parameters. ``shuffle_labels``
        permutes the labels within each partition (a deliberately worse model, as locally).

        Raises:
            DistributedTrainingError: a worker was lost or LightGBM's network failed during the fit.
        """
        import dask.array as da

        ranker = LambdaRankRanker(**ranker_params, random_state=seed)
        if ranker.unbiased:
            raise ConfigError(
                "lightgbm.dask takes no `position`: the unbiased ranker needs train.engine local"
            )
        ranker._check(data.rows[feats], data.rows["label"].to_numpy())  # the local engine's input rules
        sizes = self._gather(
            [self.client.submit(_sizes, p, pure=False) for p in data.parts], "sizing the ranker's partitions"
        )
        where = self.client.who_has(data.parts)  # each partition's fit data is made where its rows are
        pin = [
            dict(workers=list(where[p.key])[:1] or None, allow_other_workers=False, pure=False)
            for p in data.parts
        ]
        sub = self.client.submit
        X = da.concatenate(
            [
                da.from_delayed(sub(_features, p, feats, **kw), (n, len(feats)), np.float32)
                for p, (n, _), kw in zip(data.parts, sizes, pin)
            ]
        )
        y = da.concatenate(
            [
                da.from_delayed(sub(_labels, p, seed + i, shuffle_labels, **kw), (n,), np.int64)
                for i, (p, (n, _), kw) in enumerate(zip(data.parts, sizes, pin))
            ]
        )
        group = da.concatenate(
            [
                da.from_delayed(sub(_groups, p, **kw), (q,), np.int64)
                for p, (_, q), kw in zip(data.parts, sizes, pin)
            ]
        )
        booster = self._watched_fit(ranker, X, y, group, feats)
        import lightgbm as lgb

        ranker.booster_ = lgb.Booster(model_str=booster.model_to_string())  # a plain local booster
        ranker.feature_names_ = list(feats)
        ranker.eval_history_ = {}
        return ranker

    def _watched_fit(self, ranker: LambdaRankRanker, X, y, group, feats: list[str]):
        """Fit ``DaskLGBMRanker`` in a thread while this one checks that no worker leaves; its booster."""
        from lightgbm.dask import DaskLGBMRanker

        model = DaskLGBMRanker(
            client=self.client, **dask_lgb_params(ranker, self.cfg.network_timeout_minutes)
        )
        before, box = set(self.workers()), {}

        def run() -> None:
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
                    box["model"] = model.fit(X, y, group=group, feature_name=feats)
            except BaseException as e:  # noqa: BLE001 - handed to the driver thread below
                box["error"] = e

        th = threading.Thread(target=run, name="jobcare-dask-fit", daemon=True)
        th.start()
        while th.is_alive():
            th.join(WATCH_SECONDS)
            try:
                lost = before - set(self.workers())
            except Exception as e:  # noqa: BLE001 - the scheduler itself is gone
                raise DistributedTrainingError(f"lost the Dask scheduler during the ranker fit: {e}") from e
            if lost and th.is_alive():
                raise DistributedTrainingError(
                    f"Dask worker(s) {sorted(lost)} left during the LightGBM ranker fit; a distributed fit "
                    "cannot continue without them, and nothing was registered"
                )
        if "error" in box:
            e = box["error"]
            raise DistributedTrainingError(
                f"the LightGBM ranker fit on the Dask cluster failed ({type(e).__name__}: {e}); "
                "nothing was registered"
            ) from e
        return box["model"].booster_

    def _gather(self, futures: list, what: str) -> list:
        """The futures' results; a cluster failure becomes a :class:`DistributedTrainingError`."""
        from distributed import KilledWorker
        from distributed.comm import CommClosedError

        try:
            return self.client.gather(futures)
        except JobcareError:
            raise
        except (KilledWorker, CommClosedError, OSError, TimeoutError) as e:
            raise DistributedTrainingError(
                f"{what} failed on the Dask cluster ({type(e).__name__}: {e}); nothing was registered"
            ) from e


def dask_lgb_params(ranker: LambdaRankRanker, timeout_minutes: int) -> dict:
    """``DaskLGBMRanker``'s arguments: the local ranker's LightGBM parameters (objective, trees, leaves,
    learning rate, minimum child samples, feature fraction, truncation, seed, determinism); ``lightgbm.dask``
    sets ``tree_learner`` (data-parallel), the machines and ``num_threads`` (each worker's threads)."""
    p = ranker._lgb_params()
    for k in ("num_threads", "metric", "ndcg_eval_at", "lambdarank_position_bias_regularization"):
        p.pop(k)
    named = {"colsample_bytree": p.pop("feature_fraction"), "random_state": p.pop("seed")}  # sklearn names
    return {**p, **named, "n_estimators": ranker.n_estimators, "time_out": timeout_minutes}


def seeker_partitions(seeker_ids: np.ndarray, n: int) -> np.ndarray:
    """The partition (0..n-1) of each request: a hash of its seeker id that every process computes alike
    (pandas' fixed-key SipHash), so all of a seeker's requests share a partition."""
    h = pd.util.hash_array(np.asarray(seeker_ids, dtype=np.int64))
    return (h % np.uint64(n)).astype(np.int64)


# ---- run on the workers (module-level functions: Dask pickles them by reference) ----


@functools.lru_cache(maxsize=2)
def _world_tables(world: str, stamp: str) -> dict:
    """The world tables the replay reads (events and the capacity tables), read once per worker process."""
    from jobcare.world.io import read_tables

    return read_tables(Path(world), ["events", "postings", "courses"])


@functools.lru_cache(maxsize=2)
def _pair_context(repo: str, n_units: int, stamp: str):
    from training.request_path import context

    return context(Path(repo), n_units)


def _probe(world: str, repo: str) -> str:
    """'' when this worker reads the world and the repository, else what it cannot read."""
    missing = [p for p in (Path(world) / "events.parquet", Path(repo) / "data") if not p.exists()]
    return f"cannot read {[str(p) for p in missing]}" if missing else ""


def _replay_partition(spec: PartitionSpec, batch: RequestBatch, stage) -> ReplayedRows:
    """The rows of one partition of a window's requests: the local engine's replay, on a worker."""
    return replay_requests(
        spec.item_type,
        _world_tables(spec.world, spec.stamp),
        Path(spec.repo),
        _pair_context(spec.repo, spec.n_units, spec.stamp),
        spec.cfg,
        batch,
        stage,
        spec.start,
        spec.negatives,
        spec.seed,
        spec.positive_only,
    )


def _rows_of(out: ReplayedRows) -> pd.DataFrame:
    return out.rows


def _stack(a: pd.DataFrame, b: pd.DataFrame | None, offset: int) -> pd.DataFrame:
    if b is None:
        return a.assign(request_id=a["request_id"] + offset)
    return sort_rows(pd.concat([a, b.assign(request_id=b["request_id"] + offset)], ignore_index=True))


def _sizes(rows: pd.DataFrame) -> tuple[int, int]:
    return len(rows), int(rows["request_id"].nunique())


def _features(rows: pd.DataFrame, feats: list[str]) -> np.ndarray:
    return rows[feats].to_numpy(dtype=np.float32, na_value=np.nan)  # as LambdaRankRanker fits


def _labels(rows: pd.DataFrame, seed: int, shuffle: bool) -> np.ndarray:
    y = rows["label"].to_numpy(np.int64)
    return np.random.default_rng(seed).permutation(y) if shuffle else y


def _groups(rows: pd.DataFrame) -> np.ndarray:
    return group_sizes(rows).astype(np.int64)
