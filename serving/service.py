"""The online service (BentoML 1.4): personalised jobs, courses and certificates, the competency gap,
A/B routing, the impression log and hot reload.

Configuration: ``JOBCARE_CONFIG`` (a YAML file with ``serving``, ``features``, ``tracking`` sections;
default: the built-in defaults) and the usual overrides (``JOBCARE_WORLD``, ``JOBCARE_MLFLOW_URI``,
``JOBCARE_API_KEYS``). Start it with ``make serve`` or ``bentoml serve serving.service:JobCare``.

Endpoints: ``POST /recommend/jobs|courses|certificates``, ``POST /competency-gap``, ``POST /package``,
``POST /labour-market``, ``POST /career-path``, ``POST /reference`` (names for clients), the JobCare
report page at ``/ui/``, ``POST /admin/reload`` (reloads the worker that answers; every worker also
follows the registry every ``reload_poll_seconds``); BentoML's ``GET /healthz``, ``/livez``, ``/readyz``
(models loaded and the online store reachable, via ``__is_ready__``) and Prometheus ``/metrics`` (plus
``jobcare_responses_total``, ``jobcare_impressions_written_total`` and the impression log's faults:
``..._deferred_total``, ``..._dropped_total{reason}``, ``jobcare_impression_write_errors_total{error}``,
``jobcare_impression_writer_restarts_total``, ``jobcare_impressions_pending``; summed over the workers).
Errors: 400 with the field and rule, 401 without a valid API key (when enabled), 429 over a key's rate
limit (serving/auth.py), 404 for an unknown seeker without a profile, never a stack trace.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from datetime import UTC, datetime

import bentoml
import prometheus_client
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound, ServiceUnavailable

from jobcare.config import ProjectConfig, load_config
from jobcare.errors import JobcareError
from serving import ui_app
from serving.auth import ApiKeyMiddleware
from serving.career_path_schemas import CareerPathRequest, CareerPathResponse
from serving.engine import Engine, ServingError, anonymous_key
from serving.error_format import ErrorFormatMiddleware, JsonBodyMiddleware
from serving.impressions import ImpressionLog, LogHooks
from serving.labour_market_schemas import LabourMarketRequest, LabourMarketResponse
from serving.middleware import BodyLimitMiddleware
from serving.model_watch import WatchHooks
from serving.package_schemas import PackageRequest, PackageResponse
from serving.schemas import (
    CompetencyGapRequest,
    CompetencyGapResponse,
    RecommendRequest,
    RecommendResponse,
)

log = logging.getLogger("jobcare.serving")


def project_config() -> ProjectConfig:
    return load_config(os.environ.get("JOBCARE_CONFIG") or None, ProjectConfig)


def _http_errors(fn, *args, **kwargs):
    """Call the engine; its named errors become BentoML's 404 / 400 / 503 with the same message."""
    try:
        return fn(*args, **kwargs)
    except ServingError as e:
        if e.status == 404:
            raise NotFound(str(e)) from None
        if e.status >= 500:
            raise ServiceUnavailable(str(e)) from None
        raise InvalidArgument(str(e)) from None


# Prometheus counters (multiprocess mode): /metrics sums them over every worker. prometheus_client is used
# directly, as BentoML 1.4 asks (its bentoml.metrics is deprecated). Its mode is fixed when it is first
# imported: `bentoml serve` puts PROMETHEUS_MULTIPROC_DIR in the workers' environment before they import
# this module (tests/integration/test_security.py reads a counter summed over two workers from /metrics).
RESPONSES = prometheus_client.Counter(
    name="jobcare_responses",
    documentation="Responses by item type, variant and degraded flag.",
    labelnames=["item_type", "variant", "degraded"],
)
IMPRESSIONS_WRITTEN = prometheus_client.Counter(
    name="jobcare_impressions_written", documentation="Impression records written to disk."
)
# The impression log's faults (serving/impressions.py): nothing it fails to write goes uncounted.
IMPRESSIONS_DEFERRED = prometheus_client.Counter(
    name="jobcare_impressions_deferred",
    documentation="Impression records that had to wait in memory because writing to disk failed.",
)
IMPRESSIONS_DROPPED = prometheus_client.Counter(
    name="jobcare_impressions_dropped",
    documentation="Impression records never written, by reason (spool_full: the oldest waiting record "
    "over serving.impression_log.spool_max_records; unserialisable; writer_crash; shutdown; closed).",
    labelnames=["reason"],
)
IMPRESSION_WRITE_ERRORS = prometheus_client.Counter(
    name="jobcare_impression_write_errors",
    documentation="Failed impression-log writes by errno name (ENOSPC, EROFS, EEXIST, ...; file_removed).",
    labelnames=["error"],
)
IMPRESSION_WRITER_RESTARTS = prometheus_client.Counter(
    name="jobcare_impression_writer_restarts",
    documentation="Impression-log writer threads restarted after a crash.",
)
IMPRESSIONS_PENDING = prometheus_client.Gauge(
    name="jobcare_impressions_pending",
    documentation="Impression records in memory not yet on disk (summed over live workers).",
    multiprocess_mode="livesum",
)
RATE_LIMITED = prometheus_client.Counter(
    name="jobcare_rate_limited",
    documentation="429 answers by API key id (serving.auth.rate_limit; unverified: new-key check budget).",
    labelnames=["key_id"],
)
# Model trust and the registry (serving/model_watch.py): refused versions and registry polls.
MODEL_REFUSED = prometheus_client.Counter(
    name="jobcare_model_refused",
    documentation="Registered model versions refused, by reason (digest_mismatch, no_digests, load_failed).",
    labelnames=["reason"],
)
REGISTRY_REACHABLE = prometheus_client.Gauge(
    name="jobcare_registry_reachable",
    documentation="Per live worker (label pid): 1 if the registry database answered its last poll, else 0.",
    multiprocess_mode="liveall",
)
REGISTRY_POLL_FAILURES = prometheus_client.Counter(
    name="jobcare_registry_poll_failures", documentation="Registry polls or reloads that failed to reach it."
)


def _registry_poll(ok: bool) -> None:
    REGISTRY_REACHABLE.set(1 if ok else 0)
    if not ok:
        REGISTRY_POLL_FAILURES.inc()


MODEL_HOOKS = WatchHooks(
    refused=lambda reason: MODEL_REFUSED.labels(reason=reason).inc(), poll=_registry_poll
)

# Processes and threads per process, measured on 2 cores (benchmarks/serve_load.py, README "Serving"):
# requests are CPU-bound numpy / LightGBM work holding the GIL for much of their time, so one thread per
# worker and one worker per core serve the most requests per second. Each worker holds its own state.
WORKERS = int(os.environ.get("JOBCARE_WORKERS", "2"))
THREADS = int(os.environ.get("JOBCARE_THREADS", "1"))


@bentoml.service(name="jobcare", traffic={"timeout": 30}, workers=WORKERS, threads=THREADS)
class JobCare:
    def __init__(self) -> None:
        cfg = project_config()
        # no loadable champion (none, refused, registry down): not ready, with the reason; the poll loads it
        self.engine = Engine(cfg, hooks=MODEL_HOOKS, wait_for_champion=True)
        gc.collect()
        gc.freeze()  # the loaded state is long-lived: keep it out of the cyclic collector's pauses
        lc = cfg.serving.impression_log
        self.impressions = ImpressionLog(
            lc.dir,
            lc.max_bytes,
            lc.max_seconds,
            lc.spool_max_records,
            lc.retry_seconds,
            hooks=LogHooks(
                written=IMPRESSIONS_WRITTEN.inc,
                deferred=IMPRESSIONS_DEFERRED.inc,
                dropped=lambda reason, n: IMPRESSIONS_DROPPED.labels(reason=reason).inc(n),
                write_error=lambda error: IMPRESSION_WRITE_ERRORS.labels(error=error).inc(),
                restarted=IMPRESSION_WRITER_RESTARTS.inc,
                pending=IMPRESSIONS_PENDING.set,
            ),
        )
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._every, args=(p, fn), daemon=True, name=name)
            for name, p, fn in (
                ("registry-poll", cfg.serving.reload_poll_seconds, self.engine.reload_if_moved),
                ("item-refresh", cfg.serving.item_refresh_seconds, self.engine.refresh),
            )
            if p > 0
        ]
        for t in self._threads:
            t.start()

    def _every(self, period: float, fn) -> None:
        while not self._stop.wait(period):
            try:
                fn()
            except JobcareError as e:  # named (registry unreachable, ...): counted and logged where raised
                log.warning("background %s failed: %s", getattr(fn, "__name__", fn), e)
            except Exception:  # keep serving the current state; the next round retries
                log.exception("background %s failed", getattr(fn, "__name__", fn))

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self._stop.set()
        self.impressions.close()

    def __is_ready__(self) -> bool:
        return self.engine.ready()[0]

    # ------------------------------------------------------------------ recommend
    def _recommend(self, item_type: str, request: RecommendRequest) -> RecommendResponse:
        seeker_id, profile, k, filters = request.seeker_id, request.profile, request.k, request.filters
        # exactly one of them (RecommendRequest): the id, or a salted hash of the profile
        key = (
            str(seeker_id)
            if seeker_id is not None
            else anonymous_key(profile, self.engine.scfg.anonymous_salt)
        )
        out = _http_errors(
            self.engine.recommend,
            item_type,
            seeker_id=seeker_id,
            profile=profile,
            k=k,
            regions=filters.regions if filters else None,
            occupations=filters.occupations if filters else None,
            log_key=key,
        )
        RESPONSES.labels(
            item_type=item_type, variant=out["variant"], degraded=str(out["degraded"]).lower()
        ).inc()
        logging_ = out.pop("logging")
        timings = out.pop("timings_ms")
        self.impressions.append(
            {
                "request_id": out["request_id"],
                "time": datetime.now(UTC).isoformat(timespec="microseconds"),
                "as_of": out["as_of"],  # the world's clock the answer was computed at
                "seeker": key,  # the id, or a salted hash for an inline profile: never its contents
                "variant": out["variant"],
                "model_version": out["model_version"],
                "item_type": item_type,
                "degraded": out["degraded"],
                "k": k,
                "filters": filters.model_dump() if filters else None,
                "items": [i["id"] for i in out["items"]],
                "scores": [round(i["score"], 6) for i in out["items"]],
                "positions": [i["rank"] for i in out["items"]],
                **logging_,  # policy, epsilon, propensities, pool
                "timings_ms": {k: round(v, 3) for k, v in timings.items()},
            }
        )
        return RecommendResponse(**out)

    # Every endpoint takes its request model as the whole body (a positional-only root input), so the
    # model's rules hold as written: unknown fields refused, exactly one way to identify the question.
    @bentoml.api(route="/recommend/jobs")
    def recommend_jobs(self, request: RecommendRequest, /) -> RecommendResponse:
        """AI recommended jobs: open postings ranked for a seeker (by id, or by an inline profile)."""
        return self._recommend("posting", request)

    @bentoml.api(route="/recommend/courses")
    def recommend_courses(self, request: RecommendRequest, /) -> RecommendResponse:
        """Training courses (recruiting, with seats) ranked for a seeker."""
        return self._recommend("course", request)

    @bentoml.api(route="/recommend/certificates")
    def recommend_certificates(self, request: RecommendRequest, /) -> RecommendResponse:
        """Certificates (not held or pending) ranked for a seeker."""
        return self._recommend("certificate", request)

    @bentoml.api(route="/competency-gap")
    def competency_gap(self, request: CompetencyGapRequest, /) -> CompetencyGapResponse:
        """Required vs held competency units for an occupation, the missing ones, and the open courses
        and certificates that close the gap."""
        out = _http_errors(
            self.engine.competency_gap,
            request.occupation_id,
            seeker_id=request.seeker_id,
            profile=request.profile,
        )
        return CompetencyGapResponse(**out)

    @bentoml.api(route="/package")
    def package(self, request: PackageRequest, /) -> PackageResponse:
        """One path to a target job: ranked bundles of up to 2 courses and 2 certificates that close the
        seeker's competency gap to the occupation (expected coverage gain per day, weighted by the
        occupation's demand in the seeker's region), then open postings of it."""
        out = _http_errors(
            self.engine.package,
            request.occupation_id,
            seeker_id=request.seeker_id,
            profile=request.profile,
            k=request.k,
        )
        return PackageResponse(**out)

    @bentoml.api(route="/labour-market")
    def labour_market(self, request: LabourMarketRequest, /) -> LabourMarketResponse:
        """Labour-market information by occupation and region, per calendar year: postings and seekers,
        the top certificates postings ask for (with the change on the previous year), training outcomes,
        the education, major and age of hires; or, for ``certificate_ids``, the occupations whose
        postings ask for them. Counts of fewer than ``serving.min_cell_people`` people are suppressed."""
        return _http_errors(self.engine.labour_market, request)

    @bentoml.api(route="/career-path")
    def career_path(self, request: CareerPathRequest, /) -> CareerPathResponse:
        """The career development path: for a competency unit (``unit_id``) the majors that teach it, the
        certificates that certify it, the courses that train it and the occupations that require it, with
        its knowledge, skills and tools; for an occupation (``occupation_id``) the same for each unit it
        requires, with importance and level."""
        return _http_errors(self.engine.career_path, request)

    @bentoml.api(route="/reference")
    def reference(self) -> dict:
        """Ids and names of occupations (with their group), regions, certificates, competency units,
        majors and education levels, and the service clock (``as_of``)."""
        return self.engine.reference()

    @bentoml.api(route="/admin/reload")
    def admin_reload(self) -> dict:
        """Reload the models if a registry alias moved (the poller does this on its own too)."""
        try:
            swapped = self.engine.reload_if_moved()
        except BentoMLException:
            raise
        except Exception as e:
            raise ServiceUnavailable(f"reload failed, still serving the loaded models: {e}") from None
        return {
            "reloaded": swapped,
            "versions": {f"{a}/{it}": v for (a, it), v in self.engine.loaded_versions().items()},
        }


JobCare.add_asgi_middleware(
    ApiKeyMiddleware, workers=WORKERS, on_limited=lambda key_id: RATE_LIMITED.labels(key_id=key_id).inc()
)
JobCare.add_asgi_middleware(BodyLimitMiddleware)
JobCare.add_asgi_middleware(JsonBodyMiddleware)  # 415 for a body that is not JSON
JobCare.add_asgi_middleware(ErrorFormatMiddleware)  # every validation 400 names its field and rule
JobCare.mount_asgi_app(ui_app.create_app(), path=ui_app.MOUNT_PATH)  # the report page at /ui/
