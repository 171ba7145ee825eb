"""API keys and per-key rate limits: the service's ASGI middleware ahead of every endpoint.

**Keys** come from ``serving.auth.key_hashes`` (salted scrypt hashes with a key id, printed by
``jobcare auth hash-key``) and from ``JOBCARE_API_KEYS`` (plain, comma-separated; ids ``env-1``, ``env-2``,
...). A request names its key in ``X-API-Key`` or ``Authorization: Bearer``; without a valid one it gets
401. Health, metrics, the docs and the report page's files stay open (:func:`is_open_path`).

**Checking a key**: scrypt costs tens of milliseconds by design, far more than a recommendation, so a key is
checked against the hashes once per worker process and then remembered: the verified-key cache maps a
keyed digest of the presented key (HMAC-SHA-256 under a random per-process secret) to its key id. The
cache holds only keys that verified, so it never grows past the configured keys; its lookups compare
MACs under a secret no client knows, so their timing says nothing usable about any stored value; scrypt
outputs are compared with :func:`hmac.compare_digest`. A key that failed is remembered too (bounded, least
recently used dropped), so a client with a stale key costs no scrypt; fresh wrong keys are checked at
most ``new_key_checks_per_second`` per worker (each check runs scrypt once per ``key_hashes`` entry, in a
thread, off the event loop), and over that budget get 429.

**Rate limit** (``serving.auth.rate_limit``): a token bucket per key id, refilled at ``per_second`` and
holding ``burst``. Each of the service's worker processes keeps its own buckets with
``per_second / workers`` and ``ceil(burst / workers)``: the kernel spreads connections over the workers,
so a key's total stays at the configured rate when its requests are spread, and one client on one
keep-alive connection (all of it on one worker) gets its worker's share. Over the limit: 429 with
``Retry-After`` (whole seconds until a token is back) and ``jobcare_rate_limited_total{key_id}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from jobcare.config import KEY_HASH_RE, AuthConfig
from jobcare.errors import ConfigError, JobcareError
from serving.middleware import reply

log = logging.getLogger("jobcare.serving.auth")

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/", "/ui"})
OPEN_PREFIXES = ("/ui/",)  # the report page's static files (serving/ui_app.py); its API calls need the key

# scrypt's "interactive" parameters (Percival 2009): 16 MiB and ~35 ms per check on this machine. The CLI's
# keys carry 256 random bits, against which any salted hash holds; the cost guards keys chosen by people.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, HASH_BYTES = 16, 32
KEY_PREFIX = "jck_"  # the CLI's keys: easy to spot in a leaked file or a secret scanner
MIN_KEY_CHARS = 20
FAILED_KEYS_REMEMBERED = 4096
UNVERIFIED = "unverified"  # the key id reported when the budget of new-key checks is spent


def is_open_path(path: str) -> bool:
    """Health, metrics, the docs and the report page's files: served without an API key."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class ApiKeyError(JobcareError):
    """A key given to ``jobcare auth hash-key`` breaks a rule (length, characters)."""


def check_key(key: str) -> str:
    """``key`` if it can serve as an API key, else :class:`ApiKeyError` naming the rule.

    Rules: at least ``MIN_KEY_CHARS`` characters; printable ASCII without spaces or commas (HTTP servers
    strip header whitespace and ``JOBCARE_API_KEYS`` splits on commas).
    """
    if len(key) < MIN_KEY_CHARS:
        raise ApiKeyError(f"key: {len(key)} characters (rule: at least {MIN_KEY_CHARS}; new keys have 47)")
    bad = sorted({c for c in key if not (33 <= ord(c) <= 126) or c == ","})
    if bad:
        raise ApiKeyError(f"key: characters {bad!r} (rule: printable ASCII, no spaces or commas)")
    return key


def new_key() -> str:
    """A new API key: ``jck_`` and 32 random bytes, URL-safe base64 (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyHash:
    """One stored key: scrypt parameters, salt and derived key, under the caller's id."""

    key_id: str
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, key_id: str, text: str) -> KeyHash:
        m = re.match(KEY_HASH_RE, text)
        if m is None:
            raise ConfigError(
                f"serving.auth.key_hashes[{key_id}].hash: not scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>"
            )
        n, r, p = (int(x) for x in m.groups()[:3])
        return cls(key_id, n, r, p, bytes.fromhex(m.group(4)), bytes.fromhex(m.group(5)))

    def __str__(self) -> str:
        return f"scrypt${self.n}${self.r}${self.p}${self.salt.hex()}${self.digest.hex()}"

    def matches(self, key: bytes) -> bool:
        """scrypt of ``key`` under this salt equals the stored hash (compared in constant time)."""
        got = hashlib.scrypt(
            key, salt=self.salt, n=self.n, r=self.r, p=self.p, maxmem=2**29, dklen=len(self.digest)
        )
        return hmac.compare_digest(got, self.digest)


def hash_key(
    key: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P, salt: bytes | None = None
) -> str:
    """The stored form of ``key``: ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`` with a random 16-byte salt."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.scrypt(key.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**29, dklen=HASH_BYTES)
    return str(KeyHash("", n, r, p, salt, digest))


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; a request takes one. ``clock`` is injectable for tests."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self.tokens, self.stamp = float(burst), clock()

    def take(self) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be (nothing taken)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class KeyRing:
    """The accepted keys: plain ones (``JOBCARE_API_KEYS``) known at once, hashed ones once verified."""

    def __init__(self, plain: list[str], hashed: list[KeyHash]):
        self._secret = secrets.token_bytes(32)  # per process: the cache's MACs mean nothing elsewhere
        self.hashed = hashed
        self.ids = [f"env-{i}" for i in range(1, len(plain) + 1)] + [h.key_id for h in hashed]
        self.verified: dict[bytes, str] = {self.mac(k.encode()): f"env-{i}" for i, k in enumerate(plain, 1)}
        self.failed: OrderedDict[bytes, None] = OrderedDict()

    def mac(self, key: bytes) -> bytes:
        return hmac.digest(self._secret, key, "sha256")

    def verify(self, key: bytes) -> str | None:
        """The id of the hashed entry ``key`` matches (scrypt per entry, slow: call off the event loop)."""
        for h in self.hashed:
            if h.matches(key):
                return h.key_id
        return None

    def remember(self, mac: bytes, key_id: str | None) -> None:
        if key_id is not None:
            self.verified[mac] = key_id
            return
        self.failed[mac] = None
        self.failed.move_to_end(mac)
        if len(self.failed) > FAILED_KEYS_REMEMBERED:
            self.failed.popitem(last=False)


def _presented_key(headers: dict) -> bytes:
    key = headers.get(b"x-api-key", b"")
    bearer = headers.get(b"authorization", b"")
    if not key and bearer[:7].lower() == b"bearer ":
        key = bearer[7:].strip()
    return key


class ApiKeyMiddleware:
    """401 without a valid API key, 429 over a key's rate limit; open paths pass untouched.

    Args:
        app: the ASGI app behind it.
        keys: plain keys (default: ``JOBCARE_API_KEYS``).
        auth: the ``serving.auth`` section (default: from ``JOBCARE_CONFIG`` when ``keys`` is not given).
        workers: worker processes sharing the configured rate limit (each enforces its share).
        on_limited: called with the key id of each 429 (the service counts them in ``/metrics``).
        clock: seconds, monotonic (tests pass their own).

    Raises:
        ConfigError: auth is enabled but no key is configured.
    """

    def __init__(
        self,
        app,
        keys: list[str] | None = None,
        auth: AuthConfig | None = None,
        workers: int = 1,
        on_limited: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.app = app
        if auth is None and keys is None:
            from serving.service import project_config

            auth = project_config().serving.auth
        auth = auth if auth is not None else AuthConfig()
        keys = AuthConfig.env_keys() if keys is None else keys
        self.enabled = auth.enabled or bool(keys)
        hashed = [KeyHash.parse(h.id, h.hash) for h in auth.key_hashes] if self.enabled else []
        if self.enabled and not keys and not hashed:
            raise ConfigError(
                "serving.auth: enabled with no key (rule: at least one key_hashes entry or JOBCARE_API_KEYS)"
            )
        self.ring = KeyRing(keys, hashed)
        self.on_limited = on_limited or (lambda key_id: None)
        self.workers = max(1, int(workers))
        rl = auth.rate_limit
        self.rate = rl.per_second / self.workers
        self.burst = math.ceil(rl.burst / self.workers)
        self.buckets = (
            {i: TokenBucket(self.rate, self.burst, clock) for i in self.ring.ids} if rl.per_second > 0 else {}
        )
        self.checks = TokenBucket(auth.new_key_checks_per_second, auth.new_key_checks_per_second, clock)
        self._limited: set[str] = set()
        self._pending: dict[bytes, asyncio.Future] = {}

    async def _key_id(self, key: bytes) -> tuple[str | None, float]:
        """(the key's id or None for a wrong key, 0.0); (None, seconds to wait) when the budget of new-key
        checks is spent."""
        mac = self.ring.mac(key)
        key_id = self.ring.verified.get(mac)
        if key_id is not None or mac in self.ring.failed or not self.ring.hashed:
            return key_id, 0.0
        pending = self._pending.get(mac)  # the same key arriving again while its check runs: one check
        if pending is not None:
            return await asyncio.shield(pending), 0.0
        wait = self.checks.take()
        if wait:
            return None, wait
        check = asyncio.get_running_loop().run_in_executor(None, self.ring.verify, key)
        self._pending[mac] = check
        try:
            key_id = await asyncio.shield(check)
        finally:
            del self._pending[mac]
        self.ring.remember(mac, key_id)
        if key_id is not None:
            log.info("API key %s verified (remembered by this worker)", key_id)
        return key_id, 0.0

    async def _too_many(self, send, key_id: str, wait: float, message: str) -> None:
        self.on_limited(key_id)
        retry = str(max(1, math.ceil(wait))).encode()
        await reply(send, 429, f"{message}; retry after {retry.decode()} s", ((b"retry-after", retry),))

    async def __call__(self, scope, receive, send):
        if not self.enabled or scope["type"] != "http" or is_open_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = _presented_key(dict(scope.get("headers", [])))
        key_id, wait = await self._key_id(key) if key else (None, 0.0)
        if wait:
            await self._too_many(
                send,
                UNVERIFIED,
                wait,
                "API key: too many new keys to check (rule: serving.auth.new_key_checks_per_second)",
            )
            return
        if key_id is None:
            await reply(
                send,
                401,
                "API key: missing or invalid (header X-API-Key or Authorization: Bearer)",
                ((b"www-authenticate", b"Bearer"),),
            )
            return
        bucket = self.buckets.get(key_id)
        wait = bucket.take() if bucket is not None else 0.0
        if wait:
            if key_id not in self._limited:
                self._limited.add(key_id)
                log.warning(
                    "API key %s: over its rate limit (%.3g/s per worker), answering 429", key_id, self.rate
                )
            await self._too_many(
                send,
                key_id,
                wait,
                f"API key {key_id}: over {self.rate:g} requests/s, burst {self.burst}, in this worker "
                "(rule: serving.auth.rate_limit)",
            )
            return
        self._limited.discard(key_id)
        scope.setdefault("state", {})["api_key_id"] = key_id
        await self.app(scope, receive, send)
