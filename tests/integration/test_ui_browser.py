"""The report page at ``/ui/`` in a real browser: Debian's chromium driven by Playwright against a live
``bentoml serve`` (the session's ``live`` server over the tiny world).

For a registered seeker and then an inline "My data input" profile the page must render every section
with exactly as many bars, lines, bundles and list items as the API returns for the requests the page
sent, show names rather than ids, load nothing from outside the service, fit a 375 px phone without
horizontal scrolling, and log no console error. Screenshots at 375 and 1280 px go to the test's tmp_path.

No browser is downloaded: ``make test`` installs Debian's ``chromium`` with apt when it is missing. Without
it the tests skip with the reason, or fail under CI=true.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.integration
CHROMIUM = Path(os.environ.get("JOBCARE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECTIONS = ("competency", "career-path", "labour-market", "package", "jobs", "courses", "certificates")
ROUTES = {  # section -> the API path whose answer it shows
    "competency": "/competency-gap",
    "career-path": "/career-path",
    "labour-market": "/labour-market",
    "package": "/package",
    "jobs": "/recommend/jobs",
    "courses": "/recommend/courses",
    "certificates": "/recommend/certificates",
}
SEEKER, OCCUPATION, K = 5, 3, 10
WAIT_MS = 120_000


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The browser's path; asked for before `live`, so a missing browser skips (or fails) at once."""
    if not CHROMIUM.is_file():
        msg = f"{CHROMIUM} is missing (Debian: apt-get install chromium; `make test` does it as root)"
        if os.environ.get("CI"):
            pytest.fail(f"{msg}, and CI=true requires the browser test to run")
        pytest.skip(f"{msg} (CI not set): browser test skipped")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    """Debian's chromium under Playwright, closed with this module (its event loop must not outlive it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Recorder:
    """A page with everything it logged and requested."""

    def __init__(self, browser, base: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ko-KR")
        self.page = self.context.new_page()
        self.base = base
        self.console: list[str] = []
        self.requests: list[tuple[str, str, str | None]] = []  # (method, url, body)
        self.page.on("console", lambda m: m.type == "error" and self.console.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append((r.method, r.url, r.post_data)))
        self.page.on("response", lambda r: r.status >= 400 and self.console.append(f"{r.status} {r.url}"))

    def sent(self, path: str) -> dict:
        """The JSON body of the page's last POST to ``path``."""
        bodies = [b for m, u, b in self.requests if m == "POST" and u == self.base + path]
        assert bodies, f"the page never called {path}"
        return json.loads(bodies[-1])

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()

    def texts(self, selector: str) -> list[str]:
        return [t.strip() for t in self.page.locator(selector).all_inner_texts()]


@pytest.fixture
def ui(browser, live):
    rec = Recorder(browser, live)
    yield rec
    rec.context.close()


def api(base: str, path: str, body: dict) -> dict:
    r = httpx.post(base + path, json=body, timeout=60)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r.json()


def submit_and_wait(ui: Recorder, how: str = "click", state: str = "ready") -> None:
    """Submit the form and wait until this report (#report's data-run) has every section answered."""
    run = int(ui.page.get_attribute("#report", "data-run") or 0) + 1
    ui.requests.clear()
    if how == "enter":
        ui.page.locator("#k").press("Enter")  # the keyboard submits the form
    else:
        ui.page.locator("#submit").click()
    ui.page.wait_for_selector(f"#report[data-run='{run}'][data-state='{state}']", timeout=WAIT_MS)
    if state != "ready":
        return
    states = {s: ui.page.get_attribute(f"#{s}", "data-state") for s in SECTIONS}
    assert states == dict.fromkeys(SECTIONS, "ready"), (states, ui.page.inner_text("#form-error"))


def check_report(ui: Recorder, ref: dict, identity: dict) -> dict:
    """Each section shows as many elements as the API returns for the request the page sent."""
    base = ui.base
    got = {s: api(base, ROUTES[s], ui.sent(ROUTES[s])) for s in SECTIONS}
    for s in ("jobs", "courses", "certificates"):
        assert ui.sent(ROUTES[s]) == {**identity, "k": K}
        items = got[s]["items"]
        assert ui.count(f"#{s} .rec-item") == len(items)
        assert ui.texts(f"#{s} .rec-item h3") == [i["title"] for i in items]
        assert ui.count(f"#{s} .reasons li") == sum(len(i["reasons"]) for i in items)
        assert ui.count(f"#{s} .improve li") == sum(len(i["to_improve"]) for i in items)
    assert len(got["jobs"]["items"]) == K  # the tiny world has more than K open postings

    gap = got["competency"]
    assert ui.sent("/competency-gap") == {**identity, "occupation_id": OCCUPATION}
    assert gap["required"], "the target occupation requires units"
    assert ui.count("#competency .unit-bar") == len(gap["required"])
    assert ui.count("#competency .unit-bar .bar-held") == sum(u["held_level"] > 0 for u in gap["required"])
    assert ui.count("#competency .unit-missing") == len(gap["missing"])
    assert ui.texts("#competency .unit-bar .bar-label") == [u["name"] for u in gap["required"]]

    lm = got["labour-market"]["occupation"]
    regions = list(dict.fromkeys(r["region"] for r in lm["series"] if r["region_id"] is not None))
    assert len(regions) == len(ref["regions"]) > 1  # every region (the nation is in the table)
    for chart in ("postings-chart", "seekers-chart"):
        assert ui.count(f"#labour-market .{chart} .lm-line") == len(regions)
    legend = ui.texts("#labour-market .postings-chart + .legend li")
    assert [t.split(" (")[0] for t in legend] == regions
    top = lm["top_certificates"]["items"]
    assert ui.count("#labour-market .cert-bar") == len(top) <= 5
    assert ui.texts("#labour-market .cert-bar .bar-label") == [c["name"] for c in top]
    arrows = ui.texts("#labour-market .cert-bar .change")
    assert arrows == [
        ("▲+" if c["change"] > 0 else "▼" if c["change"] < 0 else "＝") + str(c["change"]) for c in top
    ]
    dists = [lm["hires_by_age"][-1], lm["hires_by_education"][-1]]
    assert ui.count("#labour-market .dist-bar") == sum(len(d["items"]) for d in dists)
    hidden = [c for d in dists for c in d["items"] if c["count"]["suppressed"]]
    shown = ui.texts("#labour-market .dist-bar.suppressed .bar-val")
    assert len(shown) == len(hidden) and all(t.startswith(f"<{lm['min_people']}") for t in shown)
    rows = ui.count("#labour-market details.table tbody tr")
    assert rows == len(lm["series"])

    pkg = got["package"]
    assert ui.sent("/package") == {**identity, "occupation_id": OCCUPATION, "k": 3}
    assert ui.count("#package .bundle") == len(pkg["bundles"])
    assert ui.count("#package .bundle-units li") == sum(len(b["closes_units"]) for b in pkg["bundles"])
    assert ui.texts("#package .postings li") == [
        f"{p['title']} — {p['region']}" for p in pkg["postings"][:10]
    ]

    cp = got["career-path"]
    assert ui.sent("/career-path") == {"occupation_id": OCCUPATION}
    assert ui.count("#career-path .path-unit") == len(cp["occupation"]["units"]) > 0
    assert ui.texts("#career-path .path-title strong") == [cp["occupation"]["occupation"]["title"]]
    return got


def screenshots(ui: Recorder, folder: Path, tag: str) -> None:
    for width in (1280, 375):
        ui.page.set_viewport_size({"width": width, "height": 900 if width > 800 else 812})
        ui.page.wait_for_timeout(400)  # the charts redraw for the new width
        assert ui.page.evaluate("document.documentElement.scrollWidth") <= width, f"wider than {width} px"
        ui.page.screenshot(path=str(folder / f"ui-{tag}-{width}.png"), full_page=True)
    ui.page.set_viewport_size({"width": 1280, "height": 900})


def test_report_page_for_a_seeker_id_and_an_inline_profile(chromium, ui, live, tmp_path):
    ref = api(live, "/reference", {})
    page = ui.page
    page.goto(f"{live}/ui")  # redirected to /ui/ (relative asset paths)
    assert page.url == f"{live}/ui/"
    page.wait_for_selector("body[data-ready='true']", timeout=WAIT_MS)
    assert page.get_attribute("html", "lang") == "ko"
    # names, never ids, in the selects
    assert ui.count("#occupation option") == len(ref["occupations"])
    assert ui.texts("#region option") == [r["name"] for r in ref["regions"]]
    assert ui.count("#cert-pick option") == len(ref["certificates"])
    # every form control has a label
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select')].filter(e => e.type !== 'hidden'
             && !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)"""
    )
    assert unlabelled == []

    # 1. a registered seeker, submitted from the keyboard
    page.fill("#seeker-id", str(SEEKER))
    page.select_option("#occupation", str(OCCUPATION))
    page.fill("#k", str(K))
    submit_and_wait(ui, how="enter")
    check_report(ui, ref, {"seeker_id": SEEKER})
    # a unit's own career path from the competency chart
    unit_button = page.locator("#competency .unit-bar button").first
    unit_id = int(unit_button.get_attribute("data-unit"))
    unit_button.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#career-path .unit-path", timeout=WAIT_MS)
    path = api(live, "/career-path", {"unit_id": unit_id})["unit"]
    for key in ("majors", "certificates", "courses", "occupations"):
        assert ui.count(f"#career-path [data-list='{key}'] li") == len(path[key])
    assert ui.texts("#career-path .path-title strong") == [path["unit"]["name"]]
    screenshots(ui, tmp_path, "seeker")

    # 2. "My data input": fields chosen by their names
    page.check("#mode-profile")
    assert page.is_hidden("#seeker-id") and page.is_visible("#my-data")
    region, education, major = ref["regions"][3], ref["education_levels"][2], ref["majors"][1]
    desired = [ref["occupations"][5], ref["occupations"][7]]
    unit, cert = ref["units"][4], ref["certificates"][2]
    page.select_option("#region", label=region["name"])
    page.select_option("#education", value=str(education["id"]))
    page.fill("#career-years", "4")
    page.select_option("#major", label=major["name"])
    page.select_option("#desired-1", label=desired[0]["name"])
    page.select_option("#desired-2", label=desired[1]["name"])
    page.fill("#wage", "287.5")
    page.locator("#riasec-R").focus()
    page.keyboard.press("End")  # the sliders work from the keyboard: R = 100
    page.fill("#riasec-A", "10")
    page.fill("#wv-independence", "90")
    page.select_option("#unit-pick", label=unit["name"])
    page.select_option("#unit-level", "5")
    page.locator("#unit-add").click()
    page.select_option("#cert-pick", label=cert["name"])
    page.locator("#cert-add").focus()
    page.keyboard.press("Enter")
    assert ui.texts("#unit-list li span") == [f"{unit['name']} · Lv 5"]
    assert ui.texts("#cert-list li span") == [cert["name"]]
    submit_and_wait(ui)
    profile = ui.sent("/recommend/jobs")["profile"]
    assert profile["region_id"] == region["id"] and profile["education_level"] == education["id"]
    assert profile["major_id"] == major["id"] and profile["career_years"] == 4
    assert profile["desired_occupation_ids"] == [desired[0]["id"], desired[1]["id"]]
    assert profile["reservation_wage"] == 287.5
    assert profile["riasec"]["R"] == 100 and profile["riasec"]["A"] == 10
    assert profile["work_values"]["independence"] == 90
    assert profile["competencies"] == [{"unit_id": unit["id"], "level": 5}]
    assert profile["certificate_ids"] == [cert["id"]]
    check_report(ui, ref, {"profile": profile})
    # one region in the labour-market section: one line per chart
    page.select_option("#lm-region", label=region["name"])
    expect(page.locator("#labour-market .postings-chart .lm-line")).to_have_count(1, timeout=WAIT_MS)
    assert ui.texts("#labour-market .postings-chart + .legend li")[0].startswith(region["name"])
    screenshots(ui, tmp_path, "profile")

    # nothing from outside the service, and a clean console
    outside = [u for _, u, _ in ui.requests if not u.startswith(live)]
    assert outside == []
    assert ui.console == []
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        f"ui-{t}-{w}.png" for t in ("profile", "seeker") for w in (1280, 375)
    ]


def test_errors_and_the_api_key_are_shown_next_to_the_form(chromium, ui, live):
    page = ui.page
    keys = []

    def unauthorised(route):
        keys.append(route.request.headers.get("x-api-key"))
        route.fulfill(
            status=401, content_type="application/json", body='{"error":"missing or invalid API key"}'
        )

    page.route(re.compile(r".*/reference$"), unauthorised)
    page.goto(f"{live}/ui/")
    page.wait_for_selector("body[data-ready='error']", timeout=WAIT_MS)
    assert "API" in page.inner_text("#form-error") and "401" in page.inner_text("#form-error")
    page.locator("summary").first.click()
    page.fill("#api-key", "k-123")
    page.locator("#submit").click()
    expect(page.locator("#form-error")).to_contain_text("401")
    assert keys[0] is None and set(keys[1:]) == {"k-123"}  # sent as the X-API-Key header once given

    page.unroute(re.compile(r".*/reference$"))
    page.fill("#api-key", "")
    page.fill("#seeker-id", "987654")  # unknown to the online store: the API answers 404
    submit_and_wait(ui, state="error")
    error = page.inner_text("#form-error")
    assert "987654" in error and "unknown" in error
    assert page.get_attribute("#jobs", "data-state") == "error" and "987654" in page.inner_text("#jobs")
    # the occupation-only sections still answer
    assert page.get_attribute("#labour-market", "data-state") == "ready"
    # only the browser's own notes of the 401 and 404 answers, no script error
    assert [m for m in ui.console if not re.search(r"status of (401|404)|^(401|404) ", m)] == []
