"""ASGI middleware of the service that acts before any endpoint runs: the request body size limit.

A body over ``serving.max_body_bytes`` gets 413 with a JSON error naming the limit, whether its size is
declared (``Content-Length``) or only found while reading a chunked body; nothing of it reaches an
endpoint. Bodies are at most a profile and a few lists, so the default 64 KB is generous.
"""

from __future__ import annotations

import json


async def reply(send, status: int, message: str, headers: tuple = ()) -> None:
    """Send a complete JSON error response (``{"error": message}``)."""
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes`` (declared or counted), 400 for a malformed length."""

    def __init__(self, app, max_bytes: int | None = None):
        self.app = app
        if max_bytes is None:
            from serving.service import project_config

            max_bytes = project_config().serving.max_body_bytes
        self.max_bytes = int(max_bytes)

    def _too_large(self) -> str:
        return f"request body: larger than {self.max_bytes} bytes (rule: serving.max_body_bytes)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await reply(send, 400, "Content-Length: not a non-negative integer")
            elif int(length) > self.max_bytes:
                await reply(send, 413, self._too_large())
            else:  # the HTTP server holds the body to its declared length
                await self.app(scope, receive, send)
            return
        chunks, size = [], 0  # no declared length (chunked): read it, up to the limit
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await reply(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)
