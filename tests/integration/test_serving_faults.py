"""Serving-side faults injected for real (issue 17): the production-profile Redis online store killed under a
load of concurrent clients and brought back, and the impression log's disk really full (a 256 KB tmpfs).

Needs PostgreSQL (the Feast SQL registry), a ``redis-server`` binary (our own server on a free loopback
port: the shared Redis on 6379 is never touched), and root for the tmpfs. Without them the tests skip
with the reason, except under CI=true where they fail (as ``conftest.require_service``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from serving.impressions import ImpressionLog, read_records
from tests.integration.conftest import PG_URL, require_service

pytestmark = pytest.mark.integration
CLIENTS = 8
OUTAGE_S = 5.0  # Redis stays down at least this long
RECOVERY_BOUND_S = 10.0  # the bound: answers back to normal within 10 s of Redis coming back


def skip_or_fail(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{msg}, and CI=true requires the fault-injection tests to run")
    pytest.skip(f"{msg} (CI not set): fault-injection test skipped")


def wait_until(pred, timeout: float, what: str, step: float = 0.02) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# ---------------------------------------------------------------------------------------------- Redis
class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1:``port`` that snapshots to ``folder`` on SAVE only, so a
    restart after ``kill -9`` comes back with what was saved (the materialised features)."""

    def __init__(self, port: int, folder: Path):
        self.port, self.folder = port, folder
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> None:
        import redis

        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
                "--dbfilename", "features.rdb",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"redis-server exited: {(self.folder / 'redis.log').read_text()[-2000:]}"
                )
            try:
                return bool(client.ping())
            except redis.RedisError:  # refused, or LOADING the snapshot
                return False

        wait_until(up, timeout, f"redis-server on port {self.port}")

    def save(self) -> None:
        import redis

        redis.Redis(host="127.0.0.1", port=self.port).save()

    def kill(self) -> None:
        """SIGKILL (no shutdown save) and wait for the process to be gone."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.fixture(scope="module")
def production_served(served, tiny_world, tmp_path_factory):
    """The ``served`` registry and config with a production-profile feature repository: Feast's SQL
    registry on PostgreSQL (a project of its own) and the online store in our own redis-server,
    materialised and snapshotted. Yields (config path, RedisServer, impressions folder)."""
    import yaml

    from features import store
    from jobcare.config import FeaturesConfig
    from serving.launch import free_port

    require_service("PostgreSQL", "127.0.0.1:5432")
    if shutil.which("redis-server") is None:
        skip_or_fail("no redis-server binary on PATH")
    tmp = tmp_path_factory.mktemp("production_served")
    server = RedisServer(free_port(), tmp)
    server.start()
    project = f"jc_{uuid.uuid4().hex[:10]}"
    fcfg = FeaturesConfig(
        profile="production",
        repo=tmp / "repo",
        project=project,
        redis=f"127.0.0.1:{server.port}",
        registry_url=PG_URL,
    )
    repo = store.render_repo(tiny_world, fcfg)
    store.apply(repo)
    store.materialize(repo)
    server.save()
    cfg = served[0].model_copy(deep=True)
    cfg.features = fcfg
    cfg.serving.impression_log.dir = tmp / "impressions"
    path = tmp / "serving.yaml"
    path.write_text(yaml.safe_dump(json.loads(cfg.model_dump_json())))
    try:
        yield path, server, tmp / "impressions"
    finally:
        server.stop()
        try:  # this project only: FeatureStore.teardown() would delete every project in the registry
            store.open_store(repo).registry.delete_project(project)
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the test's own result
            print(f"registry cleanup of {project} failed: {e}")


class Clients:
    """``n`` clients posting /recommend/jobs by seeker_id back to back; every answer recorded as
    (start, end, status, degraded) with monotonic times."""

    def __init__(self, base_url: str, seekers: np.ndarray, n: int):
        self.base_url, self.seekers = base_url, seekers
        self.rows: list[tuple[float, float, object, object]] = []
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def _run(self, i: int) -> None:
        import httpx

        rng = np.random.default_rng(i)
        with httpx.Client(base_url=self.base_url, timeout=30) as c:
            while not self.halt.is_set():
                s = int(rng.choice(self.seekers))
                t0 = time.monotonic()
                try:
                    r = c.post("/recommend/jobs", json={"seeker_id": s, "k": 10})
                    status = r.status_code
                    degraded = r.json()["degraded"] if status == 200 else r.text[:200]
                except httpx.HTTPError as e:
                    status, degraded = type(e).__name__, None
                with self.lock:
                    self.rows.append((t0, time.monotonic(), status, degraded))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(60)

    def count(self, pred) -> int:
        with self.lock:
            return sum(1 for r in self.rows if pred(r))


def test_redis_killed_under_load_every_request_is_answered_degraded_then_recovers(
    production_served, tiny_tables, tmp_path
):
    import httpx

    from serving.launch import start

    path, redis_server, impressions = production_served
    env = {k: v for k, v in os.environ.items() if k != "JOBCARE_API_KEYS"}
    server = start(path, tmp_path / "bentoml.log", env=env, ready_timeout=180)
    seekers = tiny_tables["seekers"]["seeker_id"].to_numpy()
    load = Clients(server.base_url, seekers, CLIENTS)
    readyz_during, readyz_after = [], None
    try:
        load.start()
        wait_until(
            lambda: load.count(lambda r: r[3] is False) >= 100, 120, "100 normal answers before the fault"
        )
        redis_server.kill()
        t_kill = time.monotonic()
        wait_until(lambda: load.count(lambda r: r[0] > t_kill) >= 100, 60, "100 answers during the outage")
        with httpx.Client(base_url=server.base_url, timeout=10) as c:
            readyz_during = [c.get("/readyz").status_code for _ in range(6)]  # either worker may answer
        time.sleep(max(0.0, t_kill + OUTAGE_S - time.monotonic()))
        t_back = time.monotonic()  # Redis coming back: the moment it is started again (same port)
        redis_server.start()  # returns once it answers PING with the snapshot loaded
        # recovered = answers normal again; keep the load on for 3 s more to see that they stay so
        wait_until(
            lambda: load.count(lambda r: r[0] > t_back and r[3] is False) >= 2 * CLIENTS,
            RECOVERY_BOUND_S + 5,
            "normal answers after Redis came back",
        )
        time.sleep(3)
        load.stop()
        with httpx.Client(base_url=server.base_url, timeout=10) as c:
            wait_until(lambda: c.get("/readyz").status_code == 200, RECOVERY_BOUND_S, "/readyz 200 again")
            readyz_after = c.get("/readyz").status_code
    finally:
        load.stop()
        server.stop()

    rows = load.rows
    errors = [r for r in rows if r[2] != 200]
    degraded = [r for r in rows if r[3] is True]
    outage = [r for r in rows if r[0] > t_kill and r[1] < t_back]  # started and ended while Redis was down
    last_degraded_end = max(r[1] for r in degraded)
    recovery_s = max(0.0, last_degraded_end - t_back)
    after = [r for r in rows if r[0] > last_degraded_end]
    figures = {
        "clients": CLIENTS,
        "requests": len(rows),
        "degraded": len(degraded),
        "errors": len(errors),
        "outage_s": round(t_back - t_kill, 2),
        "requests_during_outage": len(outage),
        "recovery_s": round(recovery_s, 2),
        "normal_after_recovery": len(after),
        "readyz_during_outage": readyz_during,
    }
    print(f"\nredis killed under load: {json.dumps(figures)}")
    assert not errors, f"{len(errors)} requests not answered 200, e.g. {errors[:3]}"
    normal_in_outage = [
        (round(r[0] - t_kill, 3), round(r[1] - t_kill, 3)) for r in outage if r[3] is not True
    ]
    # no stale features while the store is down
    assert outage and not normal_in_outage, f"normal answers during the outage at {normal_in_outage[:20]}"
    assert set(readyz_during) == {503} and readyz_after == 200
    assert recovery_s <= RECOVERY_BOUND_S
    assert len(after) >= 2 * CLIENTS and all(r[3] is False for r in after)
    # the service stopped gracefully: its impression log holds exactly the answers it gave
    logged = read_records(impressions)
    assert len(logged) == len(rows) and logged["request_id"].is_unique
    assert int(logged["degraded"].sum()) == len(degraded)
    assert set(logged.loc[logged["degraded"], "policy"]) == {"degraded"}


def test_an_unencodable_seeker_key_is_the_request_s_fault_and_an_unreachable_store_is_degraded():
    """``Engine.resolve``'s split: an error raised while encoding the key is a 400 naming seeker_id; a
    connection error or timeout of the store gives a degraded answer (None, True)."""
    import sqlite3

    import redis

    from serving.engine import Engine
    from serving.errors import ServingError

    class Reader:
        def __init__(self, exc):
            self.exc = exc

        def read(self, key):
            if self.exc is None:
                from feast.protos.feast.types.Value_pb2 import Value

                Value(int64_val=key)  # what OnlineReader does first: out of int64 -> ValueError
                return {"seeker_profile__region_id": 1}
            raise self.exc

    eng = Engine.__new__(Engine)  # resolve only needs the reader and the outage-warning counters
    eng.seeker_reader = Reader(None)
    eng._store_failures, eng._store_warned = 0, -1e9
    with pytest.raises(ServingError, match=r"seeker_id: 9223372036854775808 cannot be looked up") as e:
        eng.resolve(2**63, None)
    assert e.value.status == 400
    assert eng.resolve(7, None) == ({"seeker_profile__region_id": 1}, False)
    for exc in (
        redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        sqlite3.OperationalError("unable to open database file"),
        ConnectionResetError(104, "Connection reset by peer"),
    ):
        eng.seeker_reader = Reader(exc)
        assert eng.resolve(7, None) == (None, True), type(exc).__name__
    # one warning for the outage (the first failure), not one per degraded answer: 3 counted since it
    assert eng._store_failures == 3


# ---------------------------------------------------------------------------------------------- disk full
@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KB tmpfs: writing past it is a real ENOSPC. Unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        skip_or_fail("not root: cannot mount a tmpfs for a real full disk")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        skip_or_fail(f"mount -t tmpfs not permitted here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _record(i: int) -> dict:
    """About the size of a real jobs record (910 bytes of JSON)."""
    rng = np.random.default_rng(i)
    items = rng.integers(0, 200_000, 10).tolist()
    return {
        "request_id": f"r{i:06d}",
        "time": "2026-12-01T12:00:00.000000+00:00",
        "as_of": "2025-12-30 23:59:59+00:00",
        "seeker": str(i),
        "variant": "champion",
        "model_version": "3",
        "item_type": "posting",
        "degraded": False,
        "k": 10,
        "filters": None,
        "items": items,
        "scores": np.round(rng.random(10), 6).tolist(),
        "positions": list(range(1, 11)),
        "policy": "model",
        "epsilon": 0.0,
        "propensities": [1.0] * 10,
        "pool": rng.integers(0, 200_000, 30).tolist(),
        "timings_ms": {"seeker_read": 1.1, "stage_one": 6.4, "predict": 3.0, "reasons": 2.1, "total": 14.4},
    }


def test_a_really_full_disk_spools_drops_the_oldest_and_resumes_when_space_returns(tiny_disk):
    folder = tiny_disk / "impressions"
    log = ImpressionLog(folder, retry_seconds=0.05, spool_max_records=500)
    n = 0
    while not log.failing:  # one record at a time until the disk is full: w records on it
        assert n < 2000, "a 256 KB disk should be full long before 2,000 records"
        log.append(_record(n))
        n += 1
        wait_until(lambda n=n: log.written == n or log.failing, 10, "the record written or refused")
    w = log.written
    assert log.write_errors["ENOSPC"] >= 1 and w == n - 1
    lines = [ln for p in folder.iterdir() for ln in p.read_text().splitlines()]
    assert len(lines) == w and all(json.loads(ln)["request_id"] for ln in lines)  # whole lines only
    burst = 1500
    for i in range(n, n + burst):
        log.append(_record(i))
    wait_until(lambda: log.write_errors["ENOSPC"] >= 5, 10, "the writer retrying the full disk")
    assert log.pending == 500 and log.dropped == {"spool_full": n + burst - w - 500}
    assert log.written == w
    # space comes back (the tmpfs grown, as an operator would grow a volume)
    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)
    wait_until(lambda: log.pending == 0, 30, "the spool written")
    log.close()
    s = log.stats()
    print(f"\nfull disk: {json.dumps(s)}")
    assert s["written"] == w + 500 and s["appended"] == s["written"] + s["dropped"]["spool_full"]
    ids = [int(x[1:]) for x in read_records(folder)["request_id"]]
    assert ids == list(range(w)) + list(range(n + burst - 500, n + burst))  # the oldest were dropped
