"""API keys as salted scrypt hashes, the verified-key cache, per-key token buckets and 429s
(serving/auth.py), the ``serving.auth`` config rules and ``jobcare auth hash-key``. Clocks are fake."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import yaml
from typer.testing import CliRunner

from jobcare.cli import app as cli
from jobcare.config import AuthConfig, ProjectConfig, load_config
from jobcare.errors import ConfigError
from serving.auth import ApiKeyError, ApiKeyMiddleware, KeyHash, KeyRing, TokenBucket, check_key, hash_key

N = 2**10  # cheap scrypt in tests; the parameters are read from each entry
KEY_A, KEY_B = "jck_" + "a" * 43, "jck_" + "b" * 43


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def entry(key_id: str, key: str) -> dict:
    return {"id": key_id, "hash": hash_key(key, n=N)}


def auth(*entries: dict, per_second: float = 0.0, burst: int = 20, checks: float = 4.0) -> AuthConfig:
    return AuthConfig(
        enabled=True,
        key_hashes=list(entries),
        rate_limit={"per_second": per_second, "burst": burst},
        new_key_checks_per_second=checks,
    )


async def ok_app(scope, receive, send):
    body = scope.get("state", {}).get("api_key_id", "-").encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(mw, path="/recommend/jobs", key: str | None = None, bearer: bool = False):
    """(status, headers, body) of one request through the middleware."""
    return asyncio.run(_call(mw, path, key, bearer))


async def _call(mw, path, key, bearer):
    sent = []

    async def send(message):
        sent.append(message)

    headers = []
    if key is not None:
        headers = (
            [(b"authorization", b"Bearer " + key.encode())] if bearer else [(b"x-api-key", key.encode())]
        )
    await mw({"type": "http", "path": path, "headers": headers}, None, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"].decode()


# ------------------------------------------------------------------ hashes


def test_hash_is_scrypt_of_the_key_under_its_salt_and_round_trips():
    salt = bytes(range(16))
    text = hash_key("jck_secret-key-of-twenty", n=N, r=8, p=1, salt=salt)
    expected = hashlib.scrypt(b"jck_secret-key-of-twenty", salt=salt, n=N, r=8, p=1, dklen=32)
    assert text == f"scrypt${N}$8$1${salt.hex()}${expected.hex()}"
    h = KeyHash.parse("a", text)
    assert (h.n, h.r, h.p, h.salt) == (N, 8, 1, salt) and str(h) == text
    assert h.matches(b"jck_secret-key-of-twenty")
    assert not h.matches(b"jck_secret-key-of-twentY") and not h.matches(b"")


def test_each_hash_has_its_own_salt():
    a, b = hash_key(KEY_A, n=N), hash_key(KEY_A, n=N)
    assert a != b and a.split("$")[4] != b.split("$")[4]
    assert KeyHash.parse("x", a).matches(KEY_A.encode()) and KeyHash.parse("x", b).matches(KEY_A.encode())


def test_keys_given_to_the_cli_must_be_long_and_plain():
    assert check_key("k" * 20) == "k" * 20
    with pytest.raises(ApiKeyError, match="6 characters .rule: at least 20"):
        check_key("k-1234")
    with pytest.raises(ApiKeyError, match=r"\[' ', ','\].*no spaces or commas"):
        check_key("abc,defghij klmnopqrstu")


# ------------------------------------------------------------------ config


def test_plain_keys_in_the_config_are_refused_naming_the_rule(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("serving:\n  auth: {enabled: true, keys: [k-123]}\n")
    with pytest.raises(
        ConfigError, match=r"serving\.auth.*plain API key.*refused.*salted hashes.*JOBCARE_API_KEYS"
    ):
        load_config(p, ProjectConfig)


@pytest.mark.parametrize(
    ("hashes", "rule"),
    [
        ([{"id": "a", "hash": "sha256$abc"}], r"key_hashes\.0\.hash: String should match pattern"),
        ([{"id": "a b", "hash": hash_key(KEY_A, n=N)}], r"key_hashes\.0\.id: String should match pattern"),
        ([entry("a", KEY_A), entry("a", KEY_B)], r"ids \['a'\] repeated or reserved"),
        ([entry("env-1", KEY_A)], r"ids \['env-1'\] repeated or reserved"),
        ([{"id": "a", "hash": "scrypt$1000$8$1$" + "00" * 16 + "$" + "00" * 32}], "n must be a power of 2"),
        ([{"id": "a", "hash": "scrypt$1048576$32$1$" + "00" * 16 + "$" + "00" * 32}], "256 MiB"),
    ],
)
def test_bad_key_hash_entries_are_named(tmp_path, hashes, rule):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"serving": {"auth": {"enabled": True, "key_hashes": hashes}}}))
    with pytest.raises(ConfigError, match=rule):
        load_config(p, ProjectConfig)


def test_enabled_without_any_key_is_refused(monkeypatch):
    monkeypatch.delenv("JOBCARE_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="enabled with no key"):
        ApiKeyMiddleware(ok_app, auth=AuthConfig(enabled=True))


# ------------------------------------------------------------------ the CLI


def test_cli_prints_an_entry_the_service_accepts_and_the_key_only_on_stderr(tmp_path, monkeypatch):
    monkeypatch.delenv("JOBCARE_API_KEYS", raising=False)
    r = CliRunner().invoke(cli, ["auth", "hash-key", "--id", "partner-a", "--log2-n", "10"])
    assert r.exit_code == 0, r.output
    key = r.stderr.strip().rsplit(": ", 1)[1]
    assert key.startswith("jck_") and len(key) == 47 and key not in r.stdout
    listed = yaml.safe_load(r.stdout)
    assert listed[0]["id"] == "partner-a" and listed[0]["hash"].startswith(f"scrypt${2**10}$8$1$")
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"serving": {"auth": {"enabled": True, "key_hashes": listed}}}))
    mw = ApiKeyMiddleware(ok_app, auth=load_config(p, ProjectConfig).serving.auth)
    assert call(mw, key=key) == (200, {}, "partner-a")
    assert call(mw, key=key[:-1] + ("A" if key[-1] != "A" else "B"))[0] == 401


def test_cli_hashes_a_key_from_stdin_and_refuses_a_short_one():
    given = "an-existing-key-of-28-chars!"
    r = CliRunner().invoke(cli, ["auth", "hash-key", "--id", "ops", "--stdin", "--log2-n", "10"], input=given)
    assert r.exit_code == 0 and r.stderr == ""
    assert KeyHash.parse("ops", yaml.safe_load(r.stdout)[0]["hash"]).matches(given.encode())
    r = CliRunner().invoke(cli, ["auth", "hash-key", "--id", "ops", "--stdin"], input="short\n")
    assert r.exit_code == 2 and "ApiKeyError" in r.output and "at least 20" in r.output
    r = CliRunner().invoke(cli, ["auth", "hash-key", "--id", "env-2"])
    assert r.exit_code == 2 and "reserved" in r.output and "jck_" not in r.output


# ------------------------------------------------------------------ the middleware: keys


def test_hashed_and_plain_keys_name_their_caller(monkeypatch):
    monkeypatch.setenv("JOBCARE_API_KEYS", " plain-one , plain-two")
    mw = ApiKeyMiddleware(ok_app, auth=auth(entry("partner-a", KEY_A), entry("partner-b", KEY_B)))
    assert call(mw, key=KEY_A) == (200, {}, "partner-a")
    assert call(mw, key=KEY_B, bearer=True)[2] == "partner-b"
    assert call(mw, key="plain-two")[2] == "env-2" and call(mw, key="plain-one", bearer=True)[2] == "env-1"
    status, headers, body = call(mw, key="plain-three")
    assert status == 401 and headers[b"www-authenticate"] == b"Bearer" and "X-API-Key" in body
    assert call(mw)[0] == 401 and call(mw, key="")[0] == 401
    for path in ("/healthz", "/readyz", "/metrics", "/docs.json", "/ui/app.js"):
        assert call(mw, path) == (200, {}, "-"), path  # open: no key, nothing named


def test_env_keys_turn_auth_on_even_when_the_config_has_it_off(monkeypatch):
    monkeypatch.setenv("JOBCARE_API_KEYS", "k-123")
    mw = ApiKeyMiddleware(ok_app, auth=AuthConfig())
    assert call(mw)[0] == 401 and call(mw, key="k-123")[2] == "env-1"
    monkeypatch.delenv("JOBCARE_API_KEYS")
    assert call(ApiKeyMiddleware(ok_app, auth=AuthConfig()))[0] == 200  # off: everything passes


def test_scrypt_runs_once_per_key_per_process(monkeypatch):
    calls = []
    real = KeyRing.verify

    def counted(self, key):
        calls.append(key)
        return real(self, key)

    monkeypatch.setattr(KeyRing, "verify", counted)
    mw = ApiKeyMiddleware(ok_app, keys=[], auth=auth(entry("partner-a", KEY_A)))
    for _ in range(5):
        assert call(mw, key=KEY_A)[2] == "partner-a"
    for _ in range(5):
        assert call(mw, key=KEY_B)[0] == 401
    assert calls == [KEY_A.encode(), KEY_B.encode()]  # a known-bad key is remembered too
    assert KEY_A.encode() not in mw.ring.verified  # the cache holds per-process MACs, not keys
    assert set(mw.ring.verified.values()) == {"partner-a"} and len(mw.ring.failed) == 1


def test_concurrent_first_requests_with_one_key_share_one_check(monkeypatch):
    calls = []
    real = KeyRing.verify
    monkeypatch.setattr(KeyRing, "verify", lambda self, key: calls.append(key) or real(self, key))
    mw = ApiKeyMiddleware(ok_app, keys=[], auth=auth(entry("partner-a", KEY_A), checks=1.0))

    async def many():
        return await asyncio.gather(*(_call(mw, "/package", KEY_A, False) for _ in range(6)))

    assert [r[2] for r in asyncio.run(many())] == ["partner-a"] * 6  # no 429 from the check budget
    assert len(calls) == 1


def test_fresh_wrong_keys_beyond_the_check_budget_get_429():
    clock, limited = Clock(), []
    mw = ApiKeyMiddleware(
        ok_app, keys=[], auth=auth(entry("a", KEY_A), checks=2.0), on_limited=limited.append, clock=clock
    )
    assert [call(mw, key=f"wrong-key-{i:02d}")[0] for i in range(2)] == [401, 401]
    status, headers, body = call(mw, key="wrong-key-03")
    assert status == 429 and headers[b"retry-after"] == b"1" and "new_key_checks_per_second" in body
    assert call(mw, key="wrong-key-00")[0] == 401  # remembered: costs no check
    assert limited == ["unverified"]
    clock.t += 0.5  # one check back (2 per second)
    assert call(mw, key=KEY_A)[2] == "a"


# ------------------------------------------------------------------ the middleware: rate limits


def test_token_bucket_allows_the_burst_then_the_rate():
    clock = Clock()
    b = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [b.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take() == pytest.approx(0.5)
    clock.t += 0.25
    assert b.take() == pytest.approx(0.25)  # half a token back: a quarter second to go
    clock.t += 0.25
    assert b.take() == 0.0 and b.take() == pytest.approx(0.5)
    clock.t += 60
    assert [b.take() for _ in range(4)][:3] == [0.0, 0.0, 0.0]  # refills to the burst, never past it
    assert b.take() > 0


def test_each_worker_enforces_its_share_of_the_rate_per_key(monkeypatch):
    monkeypatch.setenv("JOBCARE_API_KEYS", "plain-key-for-env")
    clock, limited = Clock(), []
    mw = ApiKeyMiddleware(
        ok_app,
        auth=auth(entry("partner-a", KEY_A), per_second=4.0, burst=5),
        workers=2,
        on_limited=limited.append,
        clock=clock,
    )
    assert (mw.rate, mw.burst) == (2.0, 3)  # 4/s over 2 workers; burst 5 -> ceil(5/2) per worker
    assert [call(mw, key=KEY_A)[0] for _ in range(3)] == [200, 200, 200]
    status, headers, body = call(mw, key=KEY_A)
    assert status == 429 and headers[b"retry-after"] == b"1"
    assert "partner-a" in body and "serving.auth.rate_limit" in body and KEY_A not in body
    assert call(mw, key="plain-key-for-env")[2] == "env-1"  # another key: its own bucket
    for _ in range(5):
        assert call(mw, "/metrics")[0] == 200  # open paths are never limited
    clock.t += 0.5  # one token back at 2/s
    assert [call(mw, key=KEY_A)[0] for _ in range(2)] == [200, 429]
    assert limited == ["partner-a", "partner-a"]


def test_retry_after_counts_whole_seconds_until_a_token():
    clock = Clock()
    mw = ApiKeyMiddleware(
        ok_app, keys=["plain-key-0123456789"], auth=auth(per_second=0.1, burst=1), clock=clock
    )
    assert call(mw, key="plain-key-0123456789")[0] == 200
    assert call(mw, key="plain-key-0123456789")[1][b"retry-after"] == b"10"
    clock.t += 7.5
    assert call(mw, key="plain-key-0123456789")[1][b"retry-after"] == b"3"  # 2.5 s left, rounded up


def test_rate_limit_off_by_default():
    mw = ApiKeyMiddleware(ok_app, keys=["plain-key-0123456789"], clock=Clock())
    assert mw.buckets == {}
    assert {call(mw, key="plain-key-0123456789")[0] for _ in range(200)} == {200}
