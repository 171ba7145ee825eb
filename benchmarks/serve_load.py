"""Benchmark: the online service with 50,000 open postings, in-process floor vs HTTP through `bentoml serve`.

In the same run: the in-process floor (``Engine.recommend``, the code path the service runs) called
sequentially and from two threads; then HTTP on loopback to a `bentoml serve` subprocess, sequential
and concurrent; a 60 s run at 80% of the maximum HTTP rate (errors counted); and a hot swap of the
champion under load (failed requests counted). Targets: HTTP p99 <= 1.3x the floor's p99; concurrent
HTTP throughput >= 0.6x the floor's two-thread throughput; 0 errors at 80%; 0 failures across the swap.

The 50,000 open postings are the demo world's open postings replicated under new ids
(``serving.load_test_postings``). The registry is a copy of the demo's, so the swap leaves the demo's
registry untouched. Needs `make demo`. Writes ``benchmarks/results/serve_load.json``.

    python benchmarks/serve_load.py [--postings 50000] [--seconds 60]
"""

from __future__ import annotations

import argparse
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


def pct(xs, q) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000, q)), 2)


def summary(lat: list[float]) -> dict:
    return {"n": len(lat), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99)}


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
    rng = np.random.default_rng(1)
    who = rng.choice(seekers, n)

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "serving.yaml")
    ap.add_argument("--postings", type=int, default=50_000)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the run at 80% of the max rate")
    ap.add_argument("--sample", type=int, default=200, help="sequential requests per path")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "serve_load.json")
    a = ap.parse_args()
    import httpx
    import yaml

    from jobcare.config import ProjectConfig, load_config

    cfg = load_config(a.config, ProjectConfig)
    reg = Path(cfg.tracking.uri.removeprefix("sqlite:///"))
    if not reg.is_file() or not (cfg.serving.world / "manifest.json").is_file():
        raise SystemExit("needs the demo world and its registry: run `make demo` first")
    tmp = Path(tempfile.mkdtemp(prefix="jobcare-serve-load-"))
    shutil.copy(reg, tmp / "mlflow.db")  # the swap below must not touch the demo's registry
    cfg.tracking.uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg.serving.load_test_postings = a.postings
    cfg.serving.impression_log.dir = tmp / "impressions"
    cfg.serving.reload_poll_seconds = 1.0
    cfg.serving.item_refresh_seconds = 0
    cfg.features.repo = cfg.features.repo.resolve()
    cfg.serving.world = cfg.serving.world.resolve()
    cfg_path = tmp / "serving.yaml"
    cfg_path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    res: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "open_postings_target": a.postings,
    }

    # ---- in-process floor
    from serving.engine import Engine

    t0 = time.perf_counter()
    engine = Engine(cfg)
    res["engine_load_s"] = round(time.perf_counter() - t0, 1)
    from training.candidates.world import open_mask

    p = engine.state.items["posting"]
    res["open_postings"] = int(open_mask("posting", p, engine.as_of).sum())
    seekers = np.arange(0, 2000)

    def floor(s):
        return engine.recommend("posting", seeker_id=s, k=10)

    for s in seekers[:5]:
        floor(int(s))  # warm-up
    lat = []
    for s in seekers[: a.sample]:
        t0 = time.perf_counter()
        floor(int(s))
        lat.append(time.perf_counter() - t0)
    res["floor_sequential"] = summary(lat)
    res["floor_two_threads"] = closed_loop(floor, seekers, 2, 20)
    print(json.dumps({k: res[k] for k in ("floor_sequential", "floor_two_threads")}), flush=True)

    # ---- HTTP through bentoml serve
    from serving.launch import start

    server = start(cfg_path, tmp / "bentoml.log")
    base = server.base_url
    try:
        local = threading.local()

        def http(s):
            c = getattr(local, "c", None)
            if c is None:
                c = local.c = httpx.Client(base_url=base, timeout=30)
            r = c.post("/recommend/jobs", json={"seeker_id": s, "k": 10})
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
            return r.json()

        for s in seekers[:5]:
            http(int(s))
        lat = []
        for s in seekers[: a.sample]:
            t0 = time.perf_counter()
            http(int(s))
            lat.append(time.perf_counter() - t0)
        res["http_sequential"] = summary(lat)
        res["http_concurrent"] = [closed_loop(http, seekers, n, 20) for n in (2, 4, 8)]
        best = max(res["http_concurrent"], key=lambda r: r["rps"])
        print(json.dumps({k: res[k] for k in ("http_sequential", "http_concurrent")}), flush=True)
        res["http_80pct"] = open_loop(http, seekers, 0.8 * best["rps"], a.seconds)
        print(json.dumps(res["http_80pct"]), flush=True)

        # ---- hot swap under load: a new champion version while requests run
        import mlflow
        from mlflow import MlflowClient

        from training.registry import MODEL_NAMES, promote

        mlflow.set_tracking_uri(cfg.tracking.uri)
        client = MlflowClient()
        name = MODEL_NAMES["posting"]
        old = client.get_model_version_by_alias(name, "champion")
        versions: set = set()
        swap_result: dict = {}

        def load():
            swap_result.update(
                open_loop(lambda s: versions.add(http(s)["model_version"]), seekers, 0.5 * best["rps"], 30)
            )

        t = threading.Thread(target=load)
        t.start()
        time.sleep(8)
        new = mlflow.register_model(old.source, name).version
        promote(client, name, str(new), "benchmark: hot swap under load")
        t.join()
        res["hot_swap"] = {
            **swap_result,
            "old_version": str(old.version),
            "new_version": str(new),
            "versions_served": sorted(versions),
        }
        print(json.dumps(res["hot_swap"]), flush=True)
    finally:
        server.stop()
    f2 = res["floor_two_threads"]
    res["targets"] = {
        "http_p99_over_floor_p99": round(
            res["http_sequential"]["p99_ms"] / res["floor_sequential"]["p99_ms"], 3
        ),
        "http_p99_within_1.3x": res["http_sequential"]["p99_ms"] <= 1.3 * res["floor_sequential"]["p99_ms"],
        "http_rps_over_floor_two_thread_rps": round(best["rps"] / f2["rps"], 3),
        "http_throughput_at_least_0.6x": best["rps"] >= 0.6 * f2["rps"],
        "zero_errors_at_80pct": res["http_80pct"]["errors"] == 0,
        "zero_failures_across_swap": res["hot_swap"]["errors"] == 0
        and res["hot_swap"]["new_version"] in res["hot_swap"]["versions_served"],
    }
    print(json.dumps(res["targets"], indent=2))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
