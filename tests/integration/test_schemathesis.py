"""schemathesis over the service's own OpenAPI document (``/docs.json``), in process through the session's
ASGI app (fixture ``asgi_client``: one BentoML app per process), with a fixed seed: EXAMPLES positive and
EXAMPLES negative examples per operation, then the stateful run over the links schemathesis infers.

Checks on every response: no 5xx; every 4xx carries an ``error`` message that names the field at fault
(a property of the operation's request schema, a key the request sent, ``request body`` for the body as a
whole, or the header); a validation 400 names each ``detail`` entry's field in ``error``
(serving/error_format.py)."""

from __future__ import annotations

import collections
import json
import re
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import GenerationMode
from schemathesis.core.transport import Response

from serving.error_format import field_of
from tests.integration.conftest import API_KEY

pytestmark = pytest.mark.integration
EXAMPLES = 200
SEED = 20261205
HEADERS = {"X-API-Key": API_KEY}
HEADER_NAMES = ("request body", "Content-Type", "Content-Length", "X-API-Key")
SETTINGS = dict(
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # problems are collected, not raised: nothing to shrink
)


def property_names(doc: dict, node, seen: set | None = None) -> set[str]:
    """Every property name reachable from ``node`` in the OpenAPI document (``$ref``s followed)."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            target = doc
            for part in ref.lstrip("#/").split("/"):
                target = target[part]
            names |= property_names(doc, target, seen)
        names |= set(node.get("properties", {}) or {})
        for v in node.values():
            names |= property_names(doc, v, seen)
    elif isinstance(node, list):
        for v in node:
            names |= property_names(doc, v, seen)
    return names


def sent_keys(body) -> set[str]:
    """Keys anywhere in the JSON body sent (an unknown field is named by its own key)."""
    if isinstance(body, dict):
        return set(map(str, body)) | {k for v in body.values() for k in sent_keys(v)}
    if isinstance(body, list):
        return {k for v in body for k in sent_keys(v)}
    return set()


def problems(doc: dict, case, status: int, text: str) -> list[str]:
    """What breaks the two rules in one response (empty: nothing)."""
    if status >= 500:
        return [f"{status}: {text[:200]}"]
    if status < 400:
        return []
    try:
        payload = json.loads(text)
    except ValueError:
        return [f"{status}: not JSON: {text[:200]}"]
    items = payload if isinstance(payload, list) else [payload]
    errors = [str(i.get("error", "")) for i in items if isinstance(i, dict)]
    if not errors or not all(errors):
        return [f"{status}: no error message: {text[:200]}"]
    message = " ".join(errors)
    out = []
    if isinstance(payload, dict) and isinstance(payload.get("detail"), list):
        for d in payload["detail"]:
            where = field_of(list(d.get("loc") or []))
            if not d.get("loc") or where not in message:
                out.append(f"{status}: detail {d.get('loc')} not named in {message[:200]!r}")
    op = doc["paths"][case.path][case.method.lower()]
    names = property_names(doc, op.get("requestBody", {})) | sent_keys(case.body) | set(HEADER_NAMES)
    if not any(re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", message) for n in names if n):
        out.append(f"{status}: no field named in {message[:200]!r}")
    return out


def send(client, case):
    """The case through the ASGI test client, with the API key."""
    kw = case.as_transport_kwargs(base_url="http://testserver", headers=HEADERS)
    body = {}
    if "json" in kw:
        body["content"] = json.dumps(kw["json"], allow_nan=False).encode()
    elif kw.get("data") is not None:
        body["content"] = kw["data"] if isinstance(kw["data"], bytes | str) else json.dumps(kw["data"])
    return client.request(kw["method"], kw["url"], headers=kw["headers"], params=kw.get("params"), **body)


@pytest.fixture(scope="module")
def api(asgi_client):
    doc = asgi_client.get("/docs.json").json()
    return doc, schemathesis.openapi.from_dict(doc)


def test_every_operation_fuzzed_without_5xx_and_every_4xx_names_its_field(api, asgi_client):
    doc, schema = api
    found, counts, statuses = [], collections.Counter(), collections.defaultdict(collections.Counter)
    started = time.perf_counter()
    operations = [r.ok() for r in schema.get_all_operations()]

    def fuzz(op, mode):
        @seed(SEED)
        @settings(max_examples=EXAMPLES, **SETTINGS)
        @given(op.as_strategy(mode))
        def run(case):
            r = send(asgi_client, case)
            counts[(op.label, mode.value)] += 1
            statuses[op.label][r.status_code] += 1
            found.extend(
                f"{op.label} {mode.value} {p} <- {case.body!r:.300}"
                for p in problems(doc, case, r.status_code, r.text)
            )

        return run

    for op in operations:
        inputs = any(len(x) for x in (op.body, op.query, op.path_parameters, op.headers, op.cookies))
        # an operation without inputs (GET /healthz ...) has one request and nothing to make invalid
        for mode in (
            (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if inputs else (GenerationMode.POSITIVE,)
        ):
            fuzz(op, mode)()
    took = time.perf_counter() - started
    print(f"\nschemathesis: {sum(counts.values())} requests in {took:.1f} s; by operation and status:")
    for label, st in statuses.items():
        print(f"  {label}: {dict(sorted(st.items()))}")
    assert not found, "\n".join(found[:10])
    with_body = [op.label for op in operations if op.method.upper() == "POST" and op.body]
    assert len(with_body) >= 8  # the recommend x3, gap, package, labour market, career path, ...
    for label in with_body:
        for mode in ("positive", "negative"):
            assert counts[(label, mode)] >= EXAMPLES, (label, mode, counts[(label, mode)])
    for label in with_body:  # every operation's rules were hit, so the naming check ran on each
        assert statuses[label][400] > 0, (label, statuses[label])
    assert sum(st[200] for st in statuses.values()) > 0


def test_stateful_links_without_5xx_and_every_4xx_names_its_field(api, asgi_client):
    doc, schema = api
    found, steps = [], collections.Counter()

    class Workflow(schema.as_state_machine()):
        def call(self, case, **kwargs):
            return Response.from_any(send(asgi_client, case))

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            steps[case.operation.label] += 1
            found.extend(
                f"{case.operation.label} {p}"
                for p in problems(doc, case, response.status_code, response.text)
            )

    # derandomize: the state machine's fixed seed (hypothesis derives it from the test)
    Workflow.run(
        settings=settings(max_examples=EXAMPLES // 4, stateful_step_count=6, derandomize=True, **SETTINGS)
    )
    print(f"\nstateful: {sum(steps.values())} steps: {dict(steps)}")
    assert not found, "\n".join(found[:10])
    assert sum(steps.values()) >= EXAMPLES // 4
