"""Benchmark: the online service at national catalogue scale, in process and over HTTP, in one run.

For each catalogue size (default 50,000 and 200,000 open postings: the demo world's open postings
replicated under new ids, ``serving.load_test_postings``), with k = 10 and 300 candidates:

- in process (``Engine.recommend``, the code path the service runs), sequential: jobs, courses,
  certificates, ``competency_gap``, ``package``, ``labour_market`` and ``career_path`` (an occupation's
  whole path, the largest answer), p50 / p99, with the per-stage breakdown the engine records
  (seeker read, mask, seeker embedding, stage one, union, features, predict, reasons) and the cost of
  appending the impression record;
- over HTTP through ``bentoml serve`` (loopback, the load generator on the same 2 cores): sequential
  p50 / p99 per endpoint; closed loops with 1, 2, 4 and 8 clients (requests/s, p99); an open loop at 80%
  of the best rate for ``--seconds`` (errors); a hot swap of the champion under load (failed requests);
  the service's memory (RSS and PSS summed over its processes).

``--workers`` lists the BentoML worker counts to compare at the largest size (``JOBCARE_WORKERS``); the
first is used for the other sizes. Targets (issue 12), reported with the absolute numbers: in process
p50 <= 8 ms and p99 <= 15 ms at 200,000; HTTP sequential p99 <= 30 ms; >= 100 requests/s with 8 clients
at p99 <= 80 ms; 0 errors at 80%; 0 failures across the swap; courses / certificates within the same
bounds; competency gap p99 <= 20 ms; package, labour market and career path p99 <= 30 ms over HTTP (the
bound of the lists; issue 15 asks to keep the p99 targets); service memory <= 3 GB. The 1 s figure this
replaces: 50,000 open postings, 1,017 ms p50 / 1,425 ms p99 in process (2026-11-28).

The service clock is 45 days before the world's end (``--days-before-end``): at the world's last second
almost no course recruits, which would time an empty course answer. The registry is a copy of the
demo's, so the swap leaves the demo's registry untouched. Needs
`make demo`. Writes ``benchmarks/results/serve_load.json``.

    python benchmarks/serve_load.py [--postings 50000 200000] [--workers 2 1] [--seconds 60]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# benchmarks/features.py would shadow the `features` package when run as `python benchmarks/serve_load.py`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PATHS = {
    "posting": "/recommend/jobs",
    "course": "/recommend/courses",
    "certificate": "/recommend/certificates",
}


def pct(xs, q) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000, q)), 2)


def summary(lat: list[float]) -> dict:
    return {"n": len(lat), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99)}


def sequential(call, seekers, n: int) -> dict:
    for s in seekers[:5]:
        call(int(s))  # warm-up
    lat = []
    for s in seekers[:n]:
        t0 = time.perf_counter()
        call(int(s))
        lat.append(time.perf_counter() - t0)
    return summary(lat)


def closed_loop(call, seekers, threads: int, seconds: float) -> dict:
    """``threads`` workers calling back to back for ``seconds``: throughput, latencies, errors."""
    lat, errors, stop = [], [0], time.perf_counter() + seconds
    lock = threading.Lock()

    def worker(i):
        rng = np.random.default_rng(i)
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                call(int(rng.choice(seekers)))
                with lock:
                    lat.append(time.perf_counter() - t0)
            except Exception:
                with lock:
                    errors[0] += 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(worker, range(threads)))
    wall = time.perf_counter() - t0
    return {"threads": threads, "rps": round(len(lat) / wall, 2), "errors": errors[0], **summary(lat)}


def open_loop(call, seekers, rate: float, seconds: float, threads: int = 16) -> dict:
    """Requests started at a fixed ``rate`` (per second) for ``seconds``; errors and latencies."""
    lat, errors, lock = [], [0], threading.Lock()
    n = int(rate * seconds)
    start = time.perf_counter()
    who = np.random.default_rng(1).choice(seekers, n)

    def one(i):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        try:
            call(int(who[i]))
            with lock:
                lat.append(time.perf_counter() - t0)
        except Exception:
            with lock:
                errors[0] += 1

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, range(n)))
    return {"rate_rps": round(rate, 2), "seconds": seconds, "sent": n, "errors": errors[0], **summary(lat)}


def service_memory(pid: int) -> dict:
    """RSS and PSS (shared pages counted once) summed over the server's process tree, in MB."""
    import psutil

    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    rss = pss = 0
    for p in procs:
        try:
            m = p.memory_full_info()
            rss, pss = rss + m.rss, pss + getattr(m, "pss", m.rss)
        except psutil.Error:
            pass
    return {"processes": len(procs), "rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1)}


def in_process(cfg, seekers, sample: int) -> dict:
    """The engine's own latencies per endpoint and its per-stage breakdown."""

    from serving.engine import Engine
    from serving.impressions import ImpressionLog

    t0 = time.perf_counter()
    engine = Engine(cfg)
    # load time only: a second engine in this process reuses the first one's imports and caches, and an
    # RSS delta here would not be the service's memory (that is measured on the server's processes)
    res = {"engine_load_s": round(time.perf_counter() - t0, 1)}
    res["open_items"] = {it: int(m.sum()) for it, m in engine.state.base.items()}
    gc.collect()
    gc.freeze()  # what the service does after loading (long-lived state out of the collector's way)
    log = ImpressionLog(Path(tempfile.mkdtemp(prefix="jobcare-bench-log-")))
    for item_type in PATHS:
        stages: dict = {}

        def call(s, it=item_type, acc=stages):
            out = engine.recommend(it, seeker_id=s, k=10)
            for name, ms in out["timings_ms"].items():
                acc.setdefault(name, []).append(ms)
            t = time.perf_counter()
            log.append({"request_id": out["request_id"], "items": [i["id"] for i in out["items"]]})
            acc.setdefault("logging", []).append((time.perf_counter() - t) * 1e3)
            return out

        res[item_type] = sequential(call, seekers, sample)
        res[item_type]["stages_mean_ms"] = {k: round(float(np.mean(v)), 3) for k, v in stages.items()}
        res[item_type]["stages_p99_ms"] = {
            k: round(float(np.percentile(v, 99)), 3) for k, v in stages.items()
        }
    occs = np.random.default_rng(0).integers(0, len(engine.catalog.occupations), len(seekers))
    res["competency_gap"] = sequential(
        lambda s: engine.competency_gap(int(occs[s % len(occs)]), seeker_id=s), seekers, sample
    )
    from serving.career_path_schemas import CareerPathRequest
    from serving.labour_market_schemas import LabourMarketRequest

    def occ(s):
        return int(occs[s % len(occs)])

    menu = {  # the rest of JobCare's menu (issue 15): precomputed per refresh, sliced per request
        "package": lambda s: engine.package(occ(s), seeker_id=s, k=3),
        "labour_market": lambda s: engine.labour_market(LabourMarketRequest(occupation_id=occ(s))),
        "career_path": lambda s: engine.career_path(CareerPathRequest(occupation_id=occ(s))),
    }
    for name, call in menu.items():
        res[name] = sequential(call, seekers, sample)
    res["two_threads_jobs"] = closed_loop(lambda s: engine.recommend("posting", seeker_id=s), seekers, 2, 15)
    log.close()
    gc.unfreeze()
    return res


def over_http(cfg_path: Path, tmp: Path, seekers, sample: int, workers: int, seconds: float, swap: bool):
    import httpx

    from serving.launch import start

    t0 = time.perf_counter()
    server = start(
        cfg_path, tmp / f"bentoml-{workers}.log", env={**os.environ, "JOBCARE_WORKERS": str(workers)}
    )
    res: dict = {"workers": workers, "start_s": round(time.perf_counter() - t0, 1)}
    base = server.base_url
    local = threading.local()

    def client():
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(base_url=base, timeout=30)
        return c

    def post(path, body):
        r = client().post(path, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
        return r.json()

    try:
        for _ in range(60):  # every worker loaded: each answers readiness before traffic is measured
            if all(client().get("/readyz").status_code == 200 for _ in range(4 * workers)):
                break
            time.sleep(1)
        for it, path in PATHS.items():
            res[it] = sequential(lambda s, p=path: post(p, {"seeker_id": s, "k": 10}), seekers, sample)
        occs = np.random.default_rng(0).integers(0, 400, len(seekers))
        res["competency_gap"] = sequential(
            lambda s: post("/competency-gap", {"seeker_id": s, "occupation_id": int(occs[s % len(occs)])}),
            seekers,
            sample,
        )

        for name, path, body in (
            ("package", "/package", lambda s: {"seeker_id": s, "occupation_id": int(occs[s % len(occs)])}),
            ("labour_market", "/labour-market", lambda s: {"occupation_id": int(occs[s % len(occs)])}),
            ("career_path", "/career-path", lambda s: {"occupation_id": int(occs[s % len(occs)])}),
        ):
            res[name] = sequential(lambda s, p=path, b=body: post(p, b(s)), seekers, sample)

        def jobs(s):
            return post("/recommend/jobs", {"seeker_id": s, "k": 10})

        res["concurrent"] = [closed_loop(jobs, seekers, n, 20) for n in (1, 2, 4, 8)]
        res["memory"] = service_memory(server.proc.pid)
        print(json.dumps({k: res[k] for k in ("workers", "posting", "concurrent", "memory")}), flush=True)
        if swap:
            best = max(res["concurrent"], key=lambda r: r["rps"])
            res["at_80pct"] = open_loop(jobs, seekers, 0.8 * best["rps"], seconds)
            print(json.dumps(res["at_80pct"]), flush=True)
            res["hot_swap"] = hot_swap(jobs, seekers, 0.5 * best["rps"])
            print(json.dumps(res["hot_swap"]), flush=True)
    finally:
        server.stop()
    return res


def hot_swap(jobs, seekers, rate: float) -> dict:
    """A new champion version registered and promoted while requests run at ``rate``."""
    import mlflow
    from mlflow import MlflowClient

    from training.registry import MODEL_NAMES, promote

    client = MlflowClient()
    name = MODEL_NAMES["posting"]
    old = client.get_model_version_by_alias(name, "champion")
    versions: set = set()
    out: dict = {}

    def load():
        out.update(open_loop(lambda s: versions.add(jobs(s)["model_version"]), seekers, rate, 40))

    t = threading.Thread(target=load)
    t.start()
    time.sleep(8)  # then promote: every worker follows within reload_poll_seconds (10 s)
    new = mlflow.register_model(old.source, name).version
    promote(client, name, str(new), "benchmark: hot swap under load")
    t.join()
    return {
        **out,
        "old_version": str(old.version),
        "new_version": str(new),
        "versions_served": sorted(versions),
    }


def targets(size: dict) -> dict:
    ip, http = size["in_process"], size["http"][0]
    best8 = next(r for r in http["concurrent"] if r["threads"] == 8)
    out = {
        "in_process_jobs_p50_le_8ms": ip["posting"]["p50_ms"] <= 8,
        "in_process_jobs_p99_le_15ms": ip["posting"]["p99_ms"] <= 15,
        "in_process_courses_certificates_p99_le_15ms": max(
            ip["course"]["p99_ms"], ip["certificate"]["p99_ms"]
        )
        <= 15,
        "http_sequential_p99_le_30ms": max(http[it]["p99_ms"] for it in PATHS) <= 30,
        "http_8_clients_ge_100rps": best8["rps"] >= 100,
        "http_8_clients_p99_le_80ms": best8["p99_ms"] <= 80,
        "competency_gap_http_p99_le_20ms": http["competency_gap"]["p99_ms"] <= 20,
        "package_labour_market_career_path_http_p99_le_30ms": max(
            http[m]["p99_ms"] for m in ("package", "labour_market", "career_path")
        )
        <= 30,
        "service_memory_le_3gb": http["memory"]["pss_mb"] <= 3072,
    }
    if "at_80pct" in http:
        out["zero_errors_at_80pct"] = http["at_80pct"]["errors"] == 0
        out["zero_failures_across_swap"] = (
            http["hot_swap"]["errors"] == 0
            and http["hot_swap"]["new_version"] in http["hot_swap"]["versions_served"]
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "serving.yaml")
    ap.add_argument("--postings", type=int, nargs="+", default=[50_000, 200_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 1], help="worker counts to compare")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the run at 80% of the max rate")
    ap.add_argument("--sample", type=int, default=300, help="sequential requests per endpoint")
    ap.add_argument(
        "--days-before-end",
        type=float,
        default=45.0,
        help="the service clock, in days before the world's end (the simulator stops opening course runs "
        "near its end: at its last second 0-2 courses recruit, 45 days before 164 do)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_load.json")
    a = ap.parse_args()
    import yaml

    from jobcare.config import ProjectConfig, load_config

    cfg = load_config(a.config, ProjectConfig)
    reg = Path(cfg.tracking.uri.removeprefix("sqlite:///"))
    if not reg.is_file() or not (cfg.serving.world / "manifest.json").is_file():
        raise SystemExit("needs the demo world and its registry: run `make demo` first")
    tmp = Path(tempfile.mkdtemp(prefix="jobcare-serve-load-"))
    shutil.copy(reg, tmp / "mlflow.db")  # the swap below must not touch the demo's registry
    cfg.tracking.uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg.serving.impression_log.dir = tmp / "impressions"
    cfg.serving.reload_poll_seconds = 10.0  # configs/serving.yaml's value: each worker polls the registry
    cfg.serving.item_refresh_seconds = 0
    cfg.features.repo = cfg.features.repo.resolve()
    cfg.serving.world = cfg.serving.world.resolve()
    import pandas as pd

    from jobcare.world.io import read_manifest

    end = pd.Timestamp(read_manifest(cfg.serving.world)["span"]["end"])
    cfg.serving.as_of = str(end - pd.Timedelta(days=a.days_before_end))
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking.uri)
    res: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "k": 10,
        "as_of": cfg.serving.as_of,
        "sizes": {},
        "previous": {"open_postings": 50_000, "in_process_p50_ms": 1017.27, "in_process_p99_ms": 1425.31},
    }
    seekers = np.arange(0, 2000)
    largest = max(a.postings)
    for n in sorted(a.postings):
        cfg.serving.load_test_postings = n
        cfg_path = tmp / f"serving-{n}.yaml"
        cfg_path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
        size = {"in_process": in_process(cfg, seekers, a.sample)}
        print(json.dumps({n: size["in_process"]["posting"]}), flush=True)
        workers = a.workers if n == largest else a.workers[:1]
        size["http"] = [
            over_http(cfg_path, tmp, seekers, a.sample, w, a.seconds, swap=(j == 0))
            for j, w in enumerate(workers)
        ]
        size["targets"] = targets(size)
        print(json.dumps({n: size["targets"]}, indent=2), flush=True)
        res["sizes"][str(n)] = size
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
