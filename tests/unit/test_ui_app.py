"""The report page's static app (serving/ui_app.py) and its place behind the API-key middleware: the page
is open, the API stays protected, nothing is loaded from outside the service."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from serving import ui_app


def test_the_page_serves_only_its_own_files_with_a_strict_policy():
    c = TestClient(ui_app.create_app())
    index = c.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in index.headers["content-security-policy"]
    assert c.get("/app.js").headers["content-type"].startswith("text/javascript")
    assert c.get("/app.css").headers["content-type"].startswith("text/css")
    for bad in ("/service.py", "/..%2Fservice.py", "/index.htm"):
        assert c.get(bad).status_code == 404


def test_the_page_references_nothing_outside_the_package():
    for name in ui_app.FILES:
        text = (ui_app.UI_DIR / name).read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), name  # no CDN, no web font
        assert "innerHTML" not in text and "@import" not in text
    html = (ui_app.UI_DIR / "index.html").read_text()
    links = set(re.findall(r'(?:src|href)="([^"#]+)"', html))
    assert {x for x in links if not x.startswith("data:")} == {"app.css", "app.js"}  # the icon is inline


def _status(mw, path: str, headers: list | None = None) -> int:
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers or []}
    # run the coroutine by hand (nothing in it waits): no event loop needed, none disturbed
    with pytest.raises(StopIteration):
        mw(scope, None, send).send(None)
    return sent[0]["status"]


def test_the_page_is_open_and_the_api_protected_when_keys_are_on():
    from serving.service import ApiKeyMiddleware

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    mw = ApiKeyMiddleware(app, keys=["k-123"])
    for path in ("/ui", "/ui/", "/ui/app.js", "/healthz"):
        assert _status(mw, path) == 200, path
    for path in ("/uix", "/ui-admin", "/reference", "/recommend/jobs", "/package", "/career-path"):
        assert _status(mw, path) == 401, path
    assert _status(mw, "/reference", [(b"x-api-key", b"k-123")]) == 200
