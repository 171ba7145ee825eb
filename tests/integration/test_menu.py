"""JobCare's menu besides the lists, on the tiny world through the engine and the service's ASGI app:
``/package``, ``/labour-market`` and ``/reference``. Counts are recomputed from the world's tables by
another path (pandas over the raw tables), not read back from the module that computed them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.engine import Engine
from serving.package import package
from tests.integration.conftest import API_KEY
from tests.integration.test_serving import PROFILE
from training.offers import allowed_mask

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(served):
    return Engine(served[0])


class _Authorised:
    """The shared ASGI test client, every request with the API key."""

    def __init__(self, client):
        self.client = client

    def post(self, url: str, headers: dict | None = None, **kwargs):
        return self.client.post(url, headers={"X-API-Key": API_KEY, **(headers or {})}, **kwargs)


@pytest.fixture(scope="module")
def client(asgi_client):
    return _Authorised(asgi_client)


# ------------------------------------------------------------------------------------------ package
def _bundle_ids(out: dict) -> tuple[set, set]:
    courses = {c["id"] for b in out["bundles"] for c in b["courses"]}
    certs = {c["id"] for b in out["bundles"] for c in b["certificates"]}
    return courses, certs


def test_package_leaves_out_what_a_registered_seeker_already_enrolled_in(engine, tiny_tables):
    """For a known seeker the endpoint narrows the items with the seeker's own allowed mask (courses
    enrolled in, certificates registered for or held): every seeker who enrolled or registered, for the
    target occupations of those courses and the seeker's desired occupations. The same search with
    nothing blocked must propose a blocked item at least once, or the test proves nothing."""
    st = engine.state
    ev = tiny_tables["events"]
    ev = ev[ev["ts"] < st.as_of]
    target = tiny_tables["courses"].set_index("course_id")["target_occupation_id"]
    acted = ev[ev["event_type"].isin(["enrol", "register"])]
    bites = checked = 0
    for s, mine in acted.groupby("seeker_id"):
        row = engine.online_seeker(int(s))
        held = list(row["seeker_competency__certificate_ids"] or [])
        blocked = {}
        for it in ("course", "certificate"):
            a = st.arrays[it]
            ok = allowed_mask(a, st.offers[it], int(s), st.as_of, held, base=st.base[it])
            blocked[it] = set(a.keys[st.base[it] & ~ok].tolist())
        occs = set(target.reindex(mine.loc[mine["item_type"] == "course", "item_id"]).dropna().astype(int))
        occs |= set(int(o) for o in row["seeker_profile__desired_occupation_ids"])
        for occ in sorted(occs):
            served = _bundle_ids(engine.package(occ, seeker_id=int(s), k=20))
            free = _bundle_ids(package(st, engine.catalog, engine.ctx, row, occ, 20))
            for i, it in enumerate(("course", "certificate")):
                assert not served[i] & blocked[it], (s, occ, it)
                bites += len(free[i] & blocked[it])
            assert not served[1] & set(held)
            checked += 1
    assert checked >= 20 and bites >= 1, (checked, bites)


def test_package_is_weighted_by_regional_demand_recounted_from_the_postings(engine, tiny_tables):
    """demand_weight = ((open in region with the occupation + 1) / (open in region + 1)) /
    ((open with the occupation + 1) / (open + 1)), open = opened at or before the clock, closing after
    it, recounted from the postings table; every bundle's score is that weight times its gain per day."""
    st = engine.state
    p = tiny_tables["postings"]
    open_ = p[(p["open_at"] <= st.as_of) & (p["close_at"] > st.as_of)]
    # the service also drops postings already filled: recount those from the hire events
    hires = tiny_tables["events"].query("event_type == 'hire' and item_type == 'posting'")
    filled = hires[hires["ts"] < st.as_of].groupby("item_id").size()
    hc = open_.set_index("posting_id")["headcount"]
    open_ = open_[(filled.reindex(open_["posting_id"]).fillna(0).to_numpy() < hc.to_numpy())]
    occ = int(open_["occupation_id"].value_counts().index[0])
    out = engine.package(occ, profile=_profile(), k=5)
    region = PROFILE["region_id"]
    n_or = ((open_["region_id"] == region) & (open_["occupation_id"] == occ)).sum()
    n_r, n_o, n = (open_["region_id"] == region).sum(), (open_["occupation_id"] == occ).sum(), len(open_)
    expected = ((n_or + 1) / (n_r + 1)) / ((n_o + 1) / (n + 1))
    assert out["demand_weight"] == pytest.approx(expected, rel=1e-12)
    assert out["bundles"], "a profile with one unit should have a gap that some bundle closes"
    for b in out["bundles"]:
        assert b["score"] == pytest.approx(expected * b["expected_gain"] / max(b["duration_days"], 1.0))
    assert [b["rank"] for b in out["bundles"]] == list(range(1, len(out["bundles"]) + 1))
    scores = [b["score"] for b in out["bundles"]]
    assert scores == sorted(scores, reverse=True)
    # the open postings that follow are of the occupation, the seeker's region first
    assert (
        all(p.set_index("posting_id").loc[x["id"], "occupation_id"] == occ for x in out["postings"])
        and out["postings"]
    )
    regions = [x["region_id"] == region for x in out["postings"]]
    assert regions == sorted(regions, reverse=True)


def _profile():
    from serving.schemas import Profile

    return Profile(**PROFILE)


def test_package_endpoint_rules_are_named_errors(client):
    ok = client.post("/package", json={"profile": PROFILE, "occupation_id": 5, "k": 2})
    assert ok.status_code == 200, ok.text
    assert [b["rank"] for b in ok.json()["bundles"]] == [1, 2] and ok.json()["degraded"] is False
    both = client.post("/package", json={"seeker_id": 5, "profile": PROFILE, "occupation_id": 5})
    assert both.status_code == 400 and "seeker_id or profile: exactly one" in both.text
    neither = client.post("/package", json={"occupation_id": 5})
    assert neither.status_code == 400 and "exactly one" in neither.text
    unknown = client.post("/package", json={"seeker_id": 5, "occupation_id": 10_000})
    assert unknown.status_code == 400 and "occupation_id: 10000 is not an occupation" in unknown.text
    assert client.post("/package", json={"seeker_id": 5, "occupation_id": 5, "k": 0}).status_code == 400
    assert client.post("/package", json={"seeker_id": 10**9, "occupation_id": 5}).status_code == 404


# ------------------------------------------------------------------------------------- labour market
def test_labour_market_series_equal_a_recount_of_the_tables_with_small_cells_hidden(client, tiny_tables):
    p, s, ev = tiny_tables["postings"], tiny_tables["seekers"], tiny_tables["events"]
    occ = int(p["occupation_id"].value_counts().index[0])
    out = client.post("/labour-market", json={"occupation_id": occ})
    assert out.status_code == 200, out.text
    assert out.json()["certificates"] is None
    a = out.json()["occupation"]
    as_of = pd.Timestamp(a["as_of"])
    assert a["min_people"] == 5
    mine = p[(p["occupation_id"] == occ) & (p["open_at"] < as_of)]
    posted = mine.groupby([mine["open_at"].dt.year, "region_id"]).size()
    apply = ev[(ev["event_type"] == "apply") & (ev["ts"] < as_of) & (ev["item_type"] == "posting")]
    apply = apply[apply["item_id"].isin(mine["posting_id"])]
    apply = apply.assign(
        year=apply["ts"].dt.year,
        region_id=s.set_index("seeker_id").loc[apply["seeker_id"], "region_id"].to_numpy(),
    )
    applicants = apply.drop_duplicates(["seeker_id", "year"]).groupby(["year", "region_id"]).size()
    shown = suppressed = 0
    for row in a["series"]:
        if row["region_id"] is None:
            expected = int(mine["open_at"].dt.year.eq(row["year"]).sum())
            assert row["postings"] == expected
            continue
        assert row["postings"] == int(posted.get((row["year"], row["region_id"]), 0))
        true = int(applicants.get((row["year"], row["region_id"]), 0))
        cell = row["applicants"]
        if cell["suppressed"]:
            assert cell["value"] is None
            suppressed += 1
        else:
            assert cell["value"] == true >= 5
            shown += 1
        if 0 < true < 5:
            assert cell["suppressed"], (row, true)
    assert suppressed > 0  # the tiny world has small regional cells: the rule must have acted
    years = a["years"]
    assert years == sorted(years) and {r["year"] for r in a["series"]} == set(years)
    # top certificates of the latest year: recounted from posting_certificates
    pc = tiny_tables["posting_certificates"]
    latest = mine[mine["open_at"].dt.year == a["top_certificates"]["year"]]
    counts = pc[pc["posting_id"].isin(latest["posting_id"])].groupby("certificate_id").size()
    top = a["top_certificates"]["items"]
    assert len(top) == min(5, len(counts))
    for item in top:
        assert item["postings"] == int(counts[item["certificate_id"]])
    assert [i["postings"] for i in top] == sorted([i["postings"] for i in top], reverse=True)


def test_labour_market_errors_and_the_certificates_question(client, tiny_tables):
    bad = client.post("/labour-market", json={"occupation_id": 1, "certificate_ids": [1]})
    assert bad.status_code == 400 and "exactly one" in bad.text
    assert client.post("/labour-market", json={}).status_code == 400
    unknown = client.post("/labour-market", json={"occupation_id": 99_999})
    assert unknown.status_code == 404 and "occupation_id" in unknown.text
    assert client.post("/labour-market", json={"occupation_id": 1, "extra": 1}).status_code == 400
    pc = tiny_tables["posting_certificates"]
    cert = int(pc["certificate_id"].value_counts().index[0])
    out = client.post("/labour-market", json={"certificate_ids": [cert]})
    assert out.status_code == 200, out.text
    assert out.json()["occupation"] is None
    a = out.json()["certificates"]
    p = tiny_tables["postings"]
    as_of = pd.Timestamp(a["as_of"])
    asked = p[
        p["posting_id"].isin(pc.loc[pc["certificate_id"] == cert, "posting_id"]) & (p["open_at"] < as_of)
    ]
    asked = asked[asked["open_at"].dt.year.isin(a["years"])]
    assert a["postings"] == len(asked)
    by_occ = asked.groupby("occupation_id").size()
    assert [i["postings"] for i in a["items"]] == sorted(by_occ, reverse=True)[:5]


# ----------------------------------------------------------------------------------------- reference
def test_reference_names_every_id_the_page_shows(client, tiny_tables):
    r = client.post("/reference", json={})
    assert r.status_code == 200, r.text
    ref = r.json()
    for key, table, id_col, col in (
        ("occupations", "occupations", "occupation_id", "title"),
        ("regions", "regions", "region_id", "name"),
        ("certificates", "certificates", "certificate_id", "name"),
        ("units", "competency_units", "unit_id", "name"),
        ("majors", "majors", "major_id", "name"),
    ):
        t = tiny_tables[table].sort_values(id_col)
        assert [x["id"] for x in ref[key]] == t[id_col].tolist(), key
        assert [x["name"] for x in ref[key]] == t[col].astype(str).tolist(), key
    groups = tiny_tables["occupation_groups"].set_index("group_id")["name"]
    occ = tiny_tables["occupations"].sort_values("occupation_id")
    assert [x["group"] for x in ref["occupations"]] == groups.loc[occ["group_id"]].tolist()
    assert [x["name"] for x in ref["education_levels"]][0] == "high_school"
    assert np.all(np.diff([x["id"] for x in ref["regions"]]) > 0)


# --------------------------------------------------------------------------------------- career path
def test_career_path_through_the_service_lists_the_link_tables_in_order(client, tiny_tables):
    """Through the HTTP layer on the tiny (synthetic NCS) world: the unit's occupations, majors and
    certificates recounted from the link tables, knowledge / skills / tools present, errors named."""
    ou = tiny_tables["occupation_units"]
    unit = int(ou["unit_id"].value_counts().index[0])
    r = client.post("/career-path", json={"unit_id": unit})
    assert r.status_code == 200, r.text
    path = r.json()["unit"]
    mine = ou[ou["unit_id"] == unit].sort_values(
        ["importance", "level", "occupation_id"], ascending=[False, False, True]
    )
    assert path["occupations_total"] == len(mine)
    assert [o["occupation_id"] for o in path["occupations"]] == mine["occupation_id"].tolist()[:20]
    mu = tiny_tables["major_units"]
    assert path["majors_total"] == int((mu["unit_id"] == unit).sum())
    cu = tiny_tables["certificate_units"]
    assert path["certificates_total"] == int((cu["unit_id"] == unit).sum())
    el = path["elements"]
    assert el["knowledge"] and el["skills"] and el["tools"]
    occ = int(mine["occupation_id"].iloc[0])
    r = client.post("/career-path", json={"occupation_id": occ})
    assert r.status_code == 200, r.text
    units = r.json()["occupation"]["units"]
    assert sorted(u["path"]["unit"]["unit_id"] for u in units) == sorted(
        ou.loc[ou["occupation_id"] == occ, "unit_id"].tolist()
    )
    assert client.post("/career-path", json={"unit_id": 1, "occupation_id": 1}).status_code == 400
    missing = client.post("/career-path", json={"unit_id": 10**6})
    assert missing.status_code == 404 and "unit_id" in missing.text


def test_ids_beyond_the_int32_tables_are_400_at_the_boundary(client):
    """Schemathesis once found a 500: a filter id beyond int64 overflowed inside the engine. Every id a
    request carries is bounded to the tables' int32 range, so such ids are a 400 naming the field."""
    big = 2**31
    cases = [
        ("/recommend/jobs", {"seeker_id": 2, "filters": {"occupations": [36212141082016092160]}}),
        ("/recommend/jobs", {"seeker_id": 2, "filters": {"regions": [-1]}}),
        ("/recommend/jobs", {"profile": {**PROFILE, "certificate_ids": [big]}}),
        ("/competency-gap", {"seeker_id": 2, "occupation_id": big}),
        ("/package", {"seeker_id": 2, "occupation_id": big}),
        ("/labour-market", {"certificate_ids": [big]}),
        ("/labour-market", {"occupation_id": 1, "region_id": big}),
        ("/career-path", {"unit_id": big}),
    ]
    for route, body in cases:
        r = client.post(route, json=body)
        assert r.status_code == 400, (route, body, r.status_code, r.text)


def test_strict_bodies_both_identities_unknown_fields_and_size(client):
    """Issue 17's input rules, on every endpoint that identifies a seeker: seeker_id and profile are
    mutually exclusive (a 400 naming both), an unknown top-level field is a 400 naming it, and a body over
    serving.max_body_bytes is a 413, declared or chunked, before any endpoint runs."""
    for route, extra in (
        ("/recommend/jobs", {}),
        ("/recommend/courses", {"k": 3}),
        ("/competency-gap", {"occupation_id": 3}),
        ("/package", {"occupation_id": 3}),
    ):
        both = client.post(route, json={"seeker_id": 5, "profile": PROFILE, **extra})
        assert both.status_code == 400 and "seeker_id or profile: exactly one" in both.text, both.text
        unknown = client.post(route, json={"seeker_id": 5, "seekr": 1, **extra})
        assert unknown.status_code == 400 and "seekr" in unknown.text, unknown.text
        assert client.post(route, json={"seeker_id": 5, **extra}).status_code == 200
    big = {"seeker_id": 5, "k": 3, "pad": "x" * 10_000_000}
    r = client.post("/recommend/jobs", json=big)
    assert r.status_code == 413 and "65536 bytes" in r.json()["error"]

    def chunks():
        yield b'{"seeker_id": 5, "k": 3, "pad": "'
        for _ in range(100):
            yield b"y" * 1_000
        yield b'"}'

    r = client.post("/recommend/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    small = client.post("/recommend/jobs", content=iter([b'{"seeker_id": 5, ', b'"k": 2}']))
    assert small.status_code == 200 and len(small.json()["items"]) == 2
