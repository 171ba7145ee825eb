"""ASGI middleware that makes every request-validation 400 name its field and rule in ``error``.

BentoML answers a body that breaks the request model with ``{"error": "1 validation error for
RecommendRequestIODescriptor", "detail": [{"loc": [...], "msg": ..., "type": ...}]}``: the message names an
internal class, and an error about the body as a whole (not JSON, not an object, a rule across fields)
has an empty ``loc``. This rewrites such a body to ``{"error": "filters.regions: Input should be a valid
array (rule: list_type)", "detail": [...]}``, one ``<field>: <message> (rule: <type>)`` per error joined
by ``; ``, with ``request body`` as the field of an error about the whole body, and each ``detail``
entry's ``loc`` set to that same field (schemathesis checks this, tests/integration/test_schemathesis.py).
Only 400 JSON responses carrying a ``detail`` list are read; everything else streams through untouched.
"""

from __future__ import annotations

import json

from serving.middleware import reply

BODY = "request body"


def field_of(loc: list) -> str:
    """``["filters", "regions", 0]`` -> ``filters.regions[0]``; ``[]`` -> ``request body``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or BODY


def rewrite(payload) -> bytes | None:
    """The new body for a validation error payload, or None when it is not one."""
    if not isinstance(payload, dict) or not isinstance(payload.get("detail"), list):
        return None
    detail, parts = [], []
    for err in payload["detail"]:
        if not isinstance(err, dict):
            return None
        where = field_of(list(err.get("loc") or []))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        rule = "" if "(rule:" in msg else f" (rule: {err.get('type', 'invalid')})"
        parts.append(f"{where}: {msg}{rule}")
        detail.append({**err, "loc": list(err.get("loc") or []) or [BODY]})
    return json.dumps({"error": "; ".join(parts), "detail": detail}).encode()


class JsonBodyMiddleware:
    """415 for a request body declared as anything but JSON (``Content-Type``): every endpoint takes a JSON
    body, and BentoML would otherwise parse forms and multipart (a multipart body without a boundary was a
    500). A request without ``Content-Type`` is read as JSON, as BentoML does."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH"):
            ctype = dict(scope.get("headers", [])).get(b"content-type")
            media = ctype.split(b";")[0].strip().lower() if ctype is not None else b"application/json"
            if media != b"application/json":
                shown = media.decode("latin-1")[:80]
                await reply(send, 415, f"Content-Type: {shown!r} not accepted (rule: application/json)")
                return
        await self.app(scope, receive, send)


class ErrorFormatMiddleware:
    """Rewrites 400 validation-error bodies (see the module docstring); other responses pass as they are."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def send_wrapper(message):
            nonlocal start
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                if message["status"] == 400 and ctype.startswith(b"application/json"):
                    start = message  # hold it until the body is known
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            try:
                new = rewrite(json.loads(body))
            except ValueError:
                new = None
            body = new if new is not None else body
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_wrapper)
