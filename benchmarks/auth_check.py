"""Benchmark: what the API-key middleware (serving/auth.py) adds to a request, on this machine.

- one scrypt check at the stored parameters (a key's first request in a worker, or a fresh wrong key);
- the middleware around a trivial ASGI app, per request, against the app alone: a hashed key already
  verified (the cache), a plain ``JOBCARE_API_KEYS`` key, each with the rate limiter on and off;
- for comparison, one round trip of a token bucket kept in Redis (a Lua script, ``EVALSHA``), the shared
  alternative to per-worker buckets (skipped when Redis is not reachable).
Writes ``benchmarks/results/auth_check.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path

from jobcare.config import AuthConfig
from serving.auth import ApiKeyMiddleware, KeyHash, hash_key, new_key

BUCKET_LUA = """
local t = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(t[1]) or burst
local stamp = tonumber(t[2]) or now
tokens = math.min(burst, tokens + (now - stamp) * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', now)
redis.call('EXPIRE', KEYS[1], 60)
return ok
"""


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def per_request_us(asgi, headers: list, n: int) -> list[float]:
    """Median over 5 rounds of n requests, microseconds per request."""

    async def send(message):
        pass

    scope = {"type": "http", "path": "/recommend/jobs", "headers": headers}
    rounds = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            await asgi(dict(scope), None, send)
        rounds.append((time.perf_counter() - t) / n * 1e6)
    return rounds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000, help="requests per round")
    ap.add_argument("--redis", default="127.0.0.1:6379")
    args = ap.parse_args()

    key = new_key()
    stored = hash_key(key)
    h = KeyHash.parse("bench", stored)
    scrypt_ms = []
    for _ in range(10):
        t = time.perf_counter()
        assert h.matches(key.encode())
        scrypt_ms.append((time.perf_counter() - t) * 1e3)

    out: dict = {
        "machine": platform.processor() or platform.machine(),
        "scrypt": {"params": stored.split("$")[1:4], "check_ms_median": statistics.median(scrypt_ms)},
        "per_request_us": {},
    }
    baseline = asyncio.run(per_request_us(app, [], args.n))
    out["per_request_us"]["app alone"] = statistics.median(baseline)
    for label, rate in (("", 0.0), (", rate limit on", 1e9)):
        auth = AuthConfig(
            enabled=True,
            key_hashes=[{"id": "bench", "hash": stored}],
            rate_limit={"per_second": rate, "burst": 10**9} if rate else {"per_second": 0.0},
        )
        mw = ApiKeyMiddleware(app, keys=["plain-bench-key-0123456789"], auth=auth, workers=2)
        # the first request verifies the hashed key (scrypt), the rest hit the cache
        hashed = asyncio.run(per_request_us(mw, [(b"x-api-key", key.encode())], args.n))
        plain = asyncio.run(per_request_us(mw, [(b"x-api-key", b"plain-bench-key-0123456789")], args.n))
        out["per_request_us"][f"hashed key, verified{label}"] = statistics.median(hashed)
        out["per_request_us"][f"plain key{label}"] = statistics.median(plain)

    try:
        import redis

        host, port = args.redis.rsplit(":", 1)
        r = redis.Redis(host=host, port=int(port), socket_timeout=1)
        sha = r.script_load(BUCKET_LUA)
        times = []
        for i in range(2000):
            t = time.perf_counter()
            r.evalsha(sha, 1, "jobcare:bench:bucket", 1e9, 1e9, time.time())
            if i >= 100:
                times.append((time.perf_counter() - t) * 1e6)
        r.delete("jobcare:bench:bucket")
        times.sort()
        out["redis_bucket_us"] = {"median": statistics.median(times), "p99": times[int(0.99 * len(times))]}
    except Exception as e:  # no Redis here: the comparison is left out, said so
        out["redis_bucket_us"] = f"not measured: {type(e).__name__}: {e}"

    path = Path(__file__).parent / "results" / "auth_check.json"
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
