"""Benchmark: a soak of the online service: ``--minutes`` (default 10) of /recommend/jobs at a fixed rate
through a real ``bentoml serve``.

The rate is ``--rate`` or 80% of the best closed-loop rate recorded in ``benchmarks/results/serve_load.json``
(issue 17: "10 minutes at 80% of the measured maximum rate"); requests are started on schedule by
``serve_load.open_loop``. Reported: requests sent, errors (any non-200 or transport error), p50 / p95 /
p99; the RSS of each worker process after a warm-up and at the end (growth %, target <= 5%) with samples
every ``--sample-seconds``; and the impression log: records on disk after a graceful stop against
responses served (target: equal), with the service's own counters from ``/metrics`` (responses, records
written, deferred, dropped, write errors, writer restarts). The service writes its impression log to a
fresh temporary folder so the count is exact. Targets: 0 errors, RSS growth <= 5%, records = responses.

    python benchmarks/soak.py [--config configs/serving.yaml] [--minutes 10] [--rate R] [--postings N]

Writes ``benchmarks/results/soak.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from serve_load import ROOT, open_loop  # also takes benchmarks/ off sys.path (it shadows `features`)

SERVE_LOAD = Path(__file__).resolve().parent / "results" / "serve_load.json"
COUNTERS = (
    "jobcare_responses_total",
    "jobcare_impressions_written_total",
    "jobcare_impressions_deferred_total",
    "jobcare_impressions_dropped_total",
    "jobcare_impression_write_errors_total",
    "jobcare_impression_writer_restarts_total",
)


def best_recorded_rate(path: Path = SERVE_LOAD) -> tuple[float, str]:
    """The highest closed-loop requests/s in serve_load's results, and where it was measured."""
    res = json.loads(path.read_text())
    best, where = 0.0, ""
    for size, s in res["sizes"].items():
        for http in s["http"]:
            for c in http["concurrent"]:
                if c["rps"] > best:
                    best = c["rps"]
                    where = (
                        f"{size} postings, {http['workers']} workers, {c['threads']} clients ({res['date']})"
                    )
    if best <= 0:
        raise SystemExit(f"{path}: no closed-loop rate recorded; pass --rate")
    return best, where


def worker_rss(pid: int) -> dict[int, float]:
    """RSS in MB of each BentoML worker process under the server ``pid`` (the processes that serve)."""
    import psutil

    out = {}
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if "worker" in " ".join(p.cmdline()):
                out[p.pid] = round(p.memory_info().rss / 2**20, 1)
        except psutil.Error:
            pass
    return out


def metric_sums(text: str) -> dict[str, float]:
    """Sum of every sample of each counter in ``COUNTERS`` (over labels and workers) in /metrics text."""
    sums = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m and m.group(1) in sums:
            sums[m.group(1)] += float(m.group(3))
    return sums


def soak(cfg_path: Path, log_dir: Path, seekers, rate: float, seconds: float, warmup_s: float, every: float):
    import httpx

    from serving.impressions import read_records
    from serving.launch import start

    # serving.launch.start gives the server a BENTOML_HOME of its own (a start wipes its Prometheus folder)
    server = start(cfg_path, log_dir / "bentoml.log")
    base, local, served = server.base_url, threading.local(), [0]
    lock = threading.Lock()

    def jobs(s: int) -> None:
        c = getattr(local, "c", None)
        if c is None:
            c = local.c = httpx.Client(base_url=base, timeout=30)
        r = c.post("/recommend/jobs", json={"seeker_id": s, "k": 10})
        if r.status_code != 200:
            raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
        with lock:
            served[0] += 1

    res: dict = {}
    samples: list = []
    try:
        res["warmup"] = open_loop(jobs, seekers, rate, warmup_s)  # caches, allocator pools, lazy imports
        start_rss = worker_rss(server.proc.pid)
        halt = threading.Event()

        def sample() -> None:
            t0 = time.perf_counter()
            while not halt.wait(every):
                samples.append(
                    {"t_s": round(time.perf_counter() - t0), "rss_mb": worker_rss(server.proc.pid)}
                )

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        res["run"] = open_loop(jobs, seekers, rate, seconds)
        halt.set()
        sampler.join()
        end_rss = worker_rss(server.proc.pid)
        metrics_text = httpx.get(f"{base}/metrics", timeout=30).text
    finally:
        server.stop()  # SIGTERM: each worker's on_shutdown closes its impression log (drains it)
    growth = {
        str(pid): round(100 * (end_rss[pid] - mb) / mb, 2) for pid, mb in start_rss.items() if pid in end_rss
    }
    records = len(read_records(log_dir / "impressions"))
    res["rss"] = {
        "workers_start_mb": {str(k): v for k, v in start_rss.items()},
        "workers_end_mb": {str(k): v for k, v in end_rss.items()},
        "growth_pct": growth,
        "total_growth_pct": round(100 * (sum(end_rss.values()) / sum(start_rss.values()) - 1), 2),
        "samples": samples,
    }
    res["impressions"] = {
        "responses_served": served[0],
        "records_on_disk": records,
        "metrics_before_stop": metric_sums(metrics_text),
        "metrics_lines": [ln for ln in metrics_text.splitlines() if ln.startswith("jobcare_")],
    }
    res["targets"] = {
        "zero_errors": res["warmup"]["errors"] == 0 and res["run"]["errors"] == 0,
        "rss_growth_le_5pct": bool(growth) and max(growth.values()) <= 5.0,
        "records_equal_responses": records == served[0],
        "metrics_agree": metric_sums(metrics_text)["jobcare_impressions_written_total"] == served[0]
        and metric_sums(metrics_text)["jobcare_impressions_dropped_total"] == 0,
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "serving.yaml")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument(
        "--rate", type=float, default=None, help="requests/s (default: 80%% of serve_load's best)"
    )
    ap.add_argument("--warmup-seconds", type=float, default=30.0)
    ap.add_argument("--sample-seconds", type=float, default=30.0, help="RSS sampling period")
    ap.add_argument(
        "--postings",
        type=int,
        default=0,
        help="serving.load_test_postings (serve_load's sizes; 0: as configured)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    a = ap.parse_args()
    import yaml

    from jobcare.config import ProjectConfig, load_config
    from jobcare.world.io import read_tables

    cfg = load_config(a.config, ProjectConfig)
    if a.rate is None:
        best, where = best_recorded_rate()
        rate, rate_source = 0.8 * best, f"80% of {best} requests/s measured by serve_load ({where})"
    else:
        rate, rate_source = a.rate, "--rate"
    tmp = Path(tempfile.mkdtemp(prefix="jobcare-soak-"))
    cfg.serving.impression_log.dir = tmp / "impressions"  # fresh: every record on it is from this run
    cfg.serving.load_test_postings = a.postings
    cfg.features.repo = cfg.features.repo.resolve()
    cfg.serving.world = cfg.serving.world.resolve()
    cfg_path = tmp / "serving.yaml"
    cfg_path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    seekers = read_tables(cfg.serving.world, ["seekers"])["seekers"]["seeker_id"].to_numpy()[:2000]
    print(
        f"soak: {a.minutes} min at {rate:.1f} requests/s ({rate_source}) on {cfg.serving.world}", flush=True
    )
    res = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d"),
        "config": str(a.config),
        "world": str(cfg.serving.world),
        "workers": int(os.environ.get("JOBCARE_WORKERS", "2")),
        "minutes": a.minutes,
        "rate_rps": round(rate, 2),
        "rate_source": rate_source,
        **soak(cfg_path, tmp, np.asarray(seekers), rate, 60 * a.minutes, a.warmup_seconds, a.sample_seconds),
    }
    print(json.dumps({k: res[k] for k in ("run", "targets")} | {"impressions": res["impressions"]}, indent=2))
    print(json.dumps({k: v for k, v in res["rss"].items() if k != "samples"}, indent=2))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
