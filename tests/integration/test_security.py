"""Security of the running service: hashed API keys and per-key rate limits across a real `bentoml serve`
with 2 workers (429, Retry-After, the /metrics counter), and the error bodies of refused requests through
the session's ASGI app (every 4xx names its field; non-JSON bodies get 415, a multipart one was a 500)."""

from __future__ import annotations

import os

import httpx
import pytest
import yaml

from serving.auth import hash_key, new_key

pytestmark = pytest.mark.integration
ENV_KEY = "plain-env-key-for-the-test-0001"


@pytest.fixture(scope="module")
def limited_server(served, tmp_path_factory):
    """`bentoml serve` (2 workers) with one hashed key (``partner-a``), one plain key in the environment
    (``env-1``) and a rate limit of 0.02 requests/s, burst 2: each worker holds 1 token and refills one
    every 100 s, so within the test at most one request per worker per key gets through."""
    from serving.launch import start

    key = new_key()
    data = yaml.safe_load(served[1].read_text())
    data["serving"]["auth"] = {
        "enabled": True,
        "key_hashes": [{"id": "partner-a", "hash": hash_key(key)}],
        "rate_limit": {"per_second": 0.02, "burst": 2},
    }
    tmp = tmp_path_factory.mktemp("limited")
    path = tmp / "serving.yaml"
    path.write_text(yaml.safe_dump(data))
    # serving.launch.start gives the server its own BENTOML_HOME: a start empties its Prometheus folder,
    # which would wipe the counters of the session's in-process app (asgi_client)
    env = {**os.environ, "JOBCARE_API_KEYS": ENV_KEY, "JOBCARE_WORKERS": "2"}
    server = start(path, tmp / "bentoml.log", env=env, ready_timeout=180)
    yield server.base_url, key
    server.stop()


def test_hashed_keys_and_rate_limits_across_two_workers(limited_server):
    base, key = limited_server
    statuses, retry_after = [], []
    with httpx.Client(base_url=base, timeout=30) as c:
        assert c.post("/reference", json={}).status_code == 401
        wrong = c.post("/reference", json={}, headers={"X-API-Key": key[:-2] + "xx"})
        assert wrong.status_code == 401 and "X-API-Key" in wrong.json()["error"]
        for _ in range(12):
            r = c.post("/recommend/jobs", json={"seeker_id": 5, "k": 2}, headers={"X-API-Key": key})
            statuses.append(r.status_code)
            if r.status_code == 429:
                retry_after.append(int(r.headers["retry-after"]))
                body = r.json()["error"]
                assert "partner-a" in body and "serving.auth.rate_limit" in body and key not in body
        # the plain key has its own bucket: its first request passes while partner-a is limited
        assert (
            c.post("/reference", json={}, headers={"Authorization": f"Bearer {ENV_KEY}"}).status_code == 200
        )
        for _ in range(10):  # health and metrics are never limited, and need no key
            assert c.get("/healthz").status_code == 200
        metrics = c.get("/metrics").text
    # one token per worker: one or two requests through (a keep-alive connection may stay on one worker)
    assert set(statuses) == {200, 429} and 1 <= statuses.count(200) <= 2, statuses
    assert all(1 <= s <= 100 for s in retry_after), retry_after  # whole seconds to the next token (<= 100 s)
    line = next(
        x for x in metrics.splitlines() if x.startswith('jobcare_rate_limited_total{key_id="partner-a"}')
    )
    assert float(line.split()[-1]) == statuses.count(429)  # summed over both workers


def test_refused_bodies_name_their_field(asgi_client):
    c, auth = asgi_client, {"X-API-Key": "k-123"}
    cases = [
        (b"[]", "request body: Input should be an object"),
        (b"\x00", "request body: Invalid JSON"),
        (b'{"seeker_id": 5, "shoe_size": 44}', "shoe_size: Extra inputs are not permitted"),
        (b"{}", "request body: seeker_id or profile: exactly one is required"),
        (
            b'{"seeker_id": 5, "filters": {"regions": [1, "x"]}}',
            "filters.regions[1]: Input should be a valid integer",
        ),
    ]
    for raw, expected in cases:
        r = c.post("/recommend/jobs", content=raw, headers={**auth, "Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"].startswith(expected), r.text
        assert "IODescriptor" not in r.text and all(d["loc"] for d in r.json()["detail"])
    for ctype in ("multipart/form-data", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"):
        r = c.post("/recommend/jobs", content=b'{"seeker_id": 5}', headers={**auth, "Content-Type": ctype})
        assert r.status_code == 415 and "Content-Type" in r.json()["error"], (ctype, r.text)
    ok = c.post("/recommend/jobs", content=b'{"seeker_id": 5, "k": 2}', headers=auth)  # no Content-Type: JSON
    assert ok.status_code == 200 and len(ok.json()["items"]) == 2
    unauthorised = c.post("/recommend/jobs", json={"seeker_id": 5})
    assert unauthorised.status_code == 401 and "X-API-Key" in unauthorised.json()["error"]
