"""The online service on the tiny world: the engine directly, the BentoML service class, its ASGI app,
and a real `bentoml serve` subprocess (every endpoint, a hot reload; the schemathesis run is
tests/integration/test_schemathesis.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from serving.engine import Engine, ServingError, UnknownSeekerError, route_variant
from serving.impressions import ImpressionLog, read_impressions
from serving.schemas import Profile, RecommendRequest
from training.registry import MODEL_NAMES, promote

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PROFILE = {
    "region_id": 3,
    "education_level": 2,
    "career_years": 4,
    "desired_occupation_ids": [5, 7],
    "reservation_wage": 287.5,
    "riasec": {"R": 80, "I": 60, "A": 10, "S": 20, "E": 30, "C": 40},
    "competencies": [{"unit_id": 1, "level": 3}, {"unit_id": 4, "level": 5}],
    "certificate_ids": [2],
}


@pytest.fixture(scope="module")
def engine(served):
    return Engine(served[0])


def _applied_open_posting(engine, tables):
    """(seeker, posting) where the seeker applied before the clock to a posting still open then."""
    ev, p = tables["events"], tables["postings"].set_index("posting_id")
    now = engine.as_of
    ap = ev[(ev["event_type"] == "apply") & (ev["ts"] < now)]
    ap = ap[
        (p.loc[ap["item_id"], "open_at"].to_numpy() <= now)
        & (p.loc[ap["item_id"], "close_at"].to_numpy() > now)
    ]
    assert len(ap), "the tiny world should have applications to postings still open at its end"
    row = ap.iloc[0]
    return int(row["seeker_id"]), int(row["item_id"])


def test_jobs_are_open_not_applied_ranked_and_explained(engine, tiny_tables):
    seeker, applied = _applied_open_posting(engine, tiny_tables)
    r = engine.recommend("posting", seeker_id=seeker, k=100)
    ids = [i["id"] for i in r["items"]]
    assert ids and applied not in ids
    p = tiny_tables["postings"].set_index("posting_id")
    now = engine.as_of
    assert ((p.loc[ids, "open_at"] <= now) & (p.loc[ids, "close_at"] > now)).all()
    hires = tiny_tables["events"].query("event_type == 'hire' and ts <= @now").groupby("item_id").size()
    assert (hires.reindex(ids).fillna(0).to_numpy() < p.loc[ids, "headcount"].to_numpy()).all()  # not filled
    assert [i["rank"] for i in r["items"]] == list(range(1, len(ids) + 1))
    scores = [i["score"] for i in r["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(i["title"] == p.at[i["id"], "title"] for i in r["items"])
    # reasons come from the ranker's contributions: every item says something, and a competency shortfall
    # is never given as a reason to recommend (only as something to improve)
    assert all(i["reasons"] or i["to_improve"] for i in r["items"])
    assert sum(bool(i["reasons"]) for i in r["items"]) >= len(r["items"]) // 2
    assert not [x for i in r["items"] for x in i["reasons"] if x.startswith("covers 0 of")]
    assert r["variant"] == "champion" and r["model_version"] == "1" and r["degraded"] is False


def test_serving_features_equal_the_training_path(engine, local_repo, tiny_tables):
    """The ranker inputs the service builds (online seeker + in-memory items) equal what training would
    read from Feast point in time for the same seeker and items at the service's own clock (the online
    store is materialised to that clock), plus the reference pair features."""
    from features import store as fstore
    from features.pair_arrays import SeekerArrays
    from tests import reference_path as ref
    from training.offers import allowed_mask

    state = engine.state
    v = state.variants["champion"]
    bundle = v.bundles["posting"]
    arrays = state.arrays["posting"]
    checked = 0
    for seeker in (5, 17, 42):
        row = engine.online_seeker(seeker)
        mask = allowed_mask(arrays, state.offers["posting"], seeker, state.as_of, None, state.base["posting"])
        scored = engine.score(state, v, "posting", row, SeekerArrays.from_row(row, engine.ctx, seeker), mask)
        ids = arrays.keys[scored.candidates]
        entity = pd.DataFrame(
            {
                "seeker_id": seeker,
                "posting_id": ids,
                "occupation_id": arrays.occ[scored.candidates],
                "event_timestamp": state.as_of,
            }
        )
        want = ref.feast_rows(fstore.open_store(local_repo), "posting", entity, engine.ctx)
        shared = [c for c in bundle.features if c in want.columns]
        assert len(shared) > 40  # every Feast and pair feature (the cand_rank_* come from stage one)
        got = pd.DataFrame(scored.matrix, columns=bundle.features)
        np.testing.assert_array_equal(
            got[shared].to_numpy(np.float32), want[shared].astype(float).to_numpy(np.float32)
        )
        checked += len(ids)
    assert checked > 30


def test_the_direct_online_read_equals_get_online_features(engine):
    fs = engine.store.get_feature_service("seeker_online_v1")
    for seeker in (0, 5, 17, 42, 987654):
        cols = engine.store.get_online_features(
            features=fs, entity_rows=[{"seeker_id": seeker}], full_feature_names=True
        ).to_dict()
        assert engine.seeker_reader.read(seeker) == {c: v[0] for c, v in cols.items()}
    assert engine.seeker_reader.read(5)["seeker_profile__region_id"] is not None


def test_inline_profile_filters_and_named_errors(engine):
    prof = Profile(**PROFILE)
    r = engine.recommend("posting", profile=prof, k=5, regions=[3, 4])
    assert r["seeker_id"] is None and len(r["items"]) <= 5
    region = engine.state.items["posting"].set_index("posting_id")["posting_attributes__region_id"]
    assert r["items"]
    assert all(region[i["id"]] in (3, 4) for i in r["items"])
    with pytest.raises(ServingError, match=r"profile.desired_occupation_ids: \[99999\]"):
        engine.recommend("posting", profile=Profile(**{**PROFILE, "desired_occupation_ids": [99999]}))
    with pytest.raises(UnknownSeekerError, match="seeker_id 987654: unknown"):
        engine.recommend("posting", seeker_id=987654)
    with pytest.raises(ServingError, match="k: 0 is outside 1-100"):
        engine.recommend("posting", seeker_id=5, k=0)
    with pytest.raises(ServingError, match="seeker_id or profile"):
        engine.recommend("posting")
    empty = engine.recommend("posting", seeker_id=5, regions=[16], occupations=[0])
    assert empty["items"] == [] and "no open item matches" in empty["reason"]


def test_competency_gap_lists_missing_units_and_what_closes_them(engine):
    prof = Profile(**PROFILE)
    g = engine.competency_gap(5, profile=prof)
    req = {u["unit_id"]: u for u in g["required"]}
    assert req and {m["unit_id"] for m in g["missing"]} == {
        u for u, x in req.items() if x["held_level"] < x["required_level"]
    }
    missing = {m["unit_id"] for m in g["missing"]}
    for offer in g["courses"] + g["certificates"]:
        assert offer["closes_units"] and set(offer["closes_units"]) <= missing
    assert 2 not in [c["id"] for c in g["certificates"]]  # held certificate not offered
    assert 0 <= g["coverage"] <= 1
    with pytest.raises(ServingError, match="occupation_id: 5000 is not an occupation"):
        engine.competency_gap(5000, profile=prof)


def test_degraded_answer_when_the_online_store_is_down(engine, monkeypatch):
    import redis

    def down(*a, **k):
        raise redis.exceptions.ConnectionError("connection refused")

    monkeypatch.setattr(engine.seeker_reader, "read", down)
    r = engine.recommend("posting", seeker_id=5, k=5)
    assert r["degraded"] is True and len(r["items"]) == 5
    assert engine.ready() == (False, "online store unreachable: ConnectionError")


def test_popularity_is_recomputed_at_the_service_clock_not_frozen_at_the_models_cutoff(served, tiny_world):
    """An item refresh fits popularity on the events before the service's clock, so the degraded answer's
    "popular right now" ranks by what seekers did lately. With the clock 25 days before the models' data
    cutoff, the served popularity is that of the events before the clock, not the bundle's."""
    from jobcare.world.io import read_manifest, read_tables
    from training.candidates.popularity import PopularityRecommender
    from training.interactions import world_interactions
    from training.offers import allowed_mask

    cfg = served[0].model_copy(deep=True)
    end = pd.Timestamp(read_manifest(tiny_world)["span"]["end"])
    cfg.serving.as_of = str(end - pd.Timedelta(days=25))
    eng = Engine(cfg)
    v = eng.state.variants["champion"]
    sidx, keys = v.stages["posting"], eng.state.arrays["posting"].keys
    events = read_tables(tiny_world, ["events"])["events"]
    inter = world_interactions(events, "posting", eng.as_of, cfg.candidates.event_weights)
    want = PopularityRecommender().fit(inter).score(None, keys)
    np.testing.assert_allclose(sidx.pop, want)
    frozen = v.bundles["posting"].popularity.score(None, keys)  # fitted to the cutoff, 25 days later
    assert not np.allclose(sidx.pop, frozen)
    # the degraded answer: the most popular allowed postings by the clock's popularity
    eng.seeker_reader.read = lambda *a, **k: (_ for _ in ()).throw(ConnectionError("down"))
    r = eng.recommend("posting", seeker_id=5, k=5)
    st = eng.state
    mask = allowed_mask(
        st.arrays["posting"], st.offers["posting"], 5, st.as_of, None, base=st.base["posting"]
    )
    top = keys[mask][np.lexsort((np.flatnonzero(mask), -want[mask]))][:5]
    assert r["degraded"] and [i["id"] for i in r["items"]] == top.tolist()


def test_ab_routing_is_deterministic_and_splits_by_share():
    arms = [route_variant(str(s), "salt-1", 0.3) for s in range(20_000)]
    share = arms.count("challenger") / len(arms)
    assert abs(share - 0.3) < 0.015
    assert arms == [route_variant(str(s), "salt-1", 0.3) for s in range(20_000)]
    assert route_variant("42", "salt-1", 0.0) == "champion"


def test_impression_log_loses_nothing_when_the_disk_is_slow(tmp_path):
    log = ImpressionLog(tmp_path, max_bytes=2_000)
    slow = log.write_line

    def write_line(line):
        time.sleep(0.002)
        slow(line)

    log.write_line = write_line
    t0 = time.perf_counter()
    for i in range(300):
        log.append(
            {
                "request_id": str(i),
                "time": "2025-01-01T00:00:00Z",
                "seeker": str(i),
                "variant": "champion",
                "model_version": "1",
                "item_type": "posting",
                "degraded": False,
                "items": [i, i + 1],
                "scores": [1.0, 0.5],
                "positions": [1, 2],
            }
        )
    assert time.perf_counter() - t0 < 0.3  # appends do not wait for the disk (300 x 2 ms = 0.6 s)
    log.close()
    files = sorted(tmp_path.glob("impressions-*.jsonl"))
    assert len(files) > 1 and not list(tmp_path.glob("*.open"))  # rotated by size, all closed
    df = read_impressions(tmp_path)
    assert len(df) == 600 and df["request_id"].nunique() == 300


def _register_copy_and_promote(cfg, item_type: str) -> str:
    """A new registry version (same model files) promoted to champion, as a retraining would."""
    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    name = MODEL_NAMES[item_type]
    src = client.get_model_version_by_alias(name, "champion")
    new = mlflow.register_model(src.source, name).version
    promote(client, name, str(new), "test: hot reload")
    return str(new)


def test_service_class_logs_ids_never_profiles_and_hot_swaps_under_load(served, monkeypatch):
    cfg, path = served
    monkeypatch.setenv("JOBCARE_CONFIG", str(path))
    from serving.service import JobCare

    svc = JobCare()
    r = svc.recommend_jobs(RecommendRequest(seeker_id=5, k=3))
    assert r.seeker_id == 5 and len(r.items) == 3
    anon = svc.recommend_jobs(RecommendRequest(profile=Profile(**PROFILE), k=3))
    errors, served_versions, stop = [], set(), threading.Event()

    def hammer():
        while not stop.is_set():
            try:
                served_versions.add(svc.recommend_jobs(RecommendRequest(seeker_id=7, k=5)).model_version)
            except Exception as e:  # any failure during the swap is a test failure
                errors.append(repr(e))

    t = threading.Thread(target=hammer)
    t.start()
    time.sleep(0.5)
    new = _register_copy_and_promote(cfg, "posting")
    out = svc.admin_reload()
    time.sleep(0.5)
    stop.set()
    t.join()
    assert out["reloaded"] and out["versions"]["champion/posting"] == new
    assert not errors and new in served_versions
    svc.shutdown()
    df = read_impressions(cfg.serving.impression_log.dir)
    by_request = df.drop_duplicates("request_id").set_index("request_id")["seeker"]
    assert by_request[r.request_id] == "5" and by_request[anon.request_id].startswith("anon:")
    text = "".join(p.read_text() for p in Path(cfg.serving.impression_log.dir).glob("impressions-*"))
    assert "287.5" not in text and "riasec" not in text and "desired_occupation" not in text


def test_asgi_app_errors_auth_and_metrics(asgi_client):
    c = asgi_client
    auth = {"X-API-Key": "k-123"}
    assert c.post("/recommend/jobs", json={"seeker_id": 5}).status_code == 401
    assert c.post("/recommend/jobs", json={"seeker_id": 5}, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
    ok = c.post("/recommend/jobs", json={"seeker_id": 5, "k": 4}, headers={"Authorization": "Bearer k-123"})
    assert ok.status_code == 200 and len(ok.json()["items"]) == 4
    bad = c.post("/recommend/jobs", json={"seeker_id": 5, "k": 0}, headers=auth)
    assert bad.status_code == 400 and "k" in bad.text and "greater than or equal to 1" in bad.text
    bad = c.post("/recommend/jobs", json={"profile": {**PROFILE, "region_id": -1}}, headers=auth)
    assert bad.status_code == 400 and "region_id" in bad.text and "Traceback" not in bad.text
    for body in ({"seeker_id": 2**63}, {"seeker_id": -1}):  # out of the id range: 400 before any store read
        bad = c.post("/recommend/jobs", json=body, headers=auth)
        assert bad.status_code == 400 and "seeker_id" in bad.text and "Traceback" not in bad.text, bad.text
    bad = c.post("/competency-gap", json={"seeker_id": -(2**64), "occupation_id": 0}, headers=auth)
    assert bad.status_code == 400 and "seeker_id" in bad.text
    bad = c.post(
        "/recommend/jobs", json={"seeker_id": 5, "filters": {"regions": list(range(101))}}, headers=auth
    )
    assert bad.status_code == 400 and "regions" in bad.text
    # filter ids no item has match nothing (they used to index past a lookup table: a 500); ids outside
    # the tables' int32 range are refused at the boundary
    none = c.post(
        "/recommend/jobs", json={"seeker_id": 5, "filters": {"regions": [9_999, 2**31 - 1]}}, headers=auth
    )
    assert none.status_code == 200 and none.json()["items"] == [] and "no open item" in none.json()["reason"]
    for ids in ([-7], [10**15]):
        bad = c.post("/recommend/jobs", json={"seeker_id": 5, "filters": {"regions": ids}}, headers=auth)
        assert bad.status_code == 400 and "regions" in bad.text, bad.text
    missing = c.post("/recommend/courses", json={"seeker_id": 987654}, headers=auth)
    assert missing.status_code == 404 and "unknown to the online store" in missing.text
    gap = c.post("/competency-gap", json={"seeker_id": 5, "occupation_id": 3}, headers=auth)
    assert gap.status_code == 200 and "missing" in gap.json()
    m = c.get("/metrics").text
    assert 'jobcare_responses_total{degraded="false",item_type="posting",variant="champion"}' in m
    assert "jobcare_impressions_written_total" in m


def test_bentoml_serve_answers_every_endpoint_and_reloads(live, served):
    with httpx.Client(base_url=live, timeout=30) as c:
        for route in ("jobs", "courses", "certificates"):
            r = c.post(f"/recommend/{route}", json={"seeker_id": 5, "k": 3})
            assert r.status_code == 200, r.text
            assert r.json()["variant"] == "champion"
        r = c.post("/recommend/jobs", json={"profile": PROFILE, "k": 2})
        assert r.status_code == 200 and r.json()["seeker_id"] is None
        assert c.post("/competency-gap", json={"profile": PROFILE, "occupation_id": 5}).status_code == 200
        for path in ("/healthz", "/livez", "/readyz", "/metrics", "/docs.json"):
            assert c.get(path).status_code == 200
        before = c.post("/recommend/certificates", json={"seeker_id": 5}).json()["model_version"]
        new = _register_copy_and_promote(served[0], "certificate")
        assert new != before
        out = c.post("/admin/reload", json={}).json()
        assert out["versions"]["champion/certificate"] == new
        assert c.post("/recommend/certificates", json={"seeker_id": 5}).json()["model_version"] == new


def test_bentoml_build_packages_the_service(tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    r = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", ".", "--output", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    bentos = list((tmp_path / "bentoml" / "bentos" / "jobcare").glob("*/bento.yaml"))
    assert len(bentos) == 1
    src = bentos[0].parent / "src"
    assert (src / "serving" / "service.py").is_file() and (src / "evaluation" / "templates").is_dir()
    assert (src / "configs" / "serving.yaml").is_file()
    assert {p.name for p in (src / "serving" / "ui").iterdir()} >= {"index.html", "app.js", "app.css"}
    assert "requirements.txt" in {p.name for p in (bentos[0].parent / "env" / "python").iterdir()}


def test_ab_split_serves_each_arm_its_own_models(served):
    cfg = served[0].model_copy(deep=True)
    cfg.serving.ab.challenger_share = 0.5
    mlflow.set_tracking_uri(cfg.tracking.uri)
    client = MlflowClient()
    expected = {}
    for it, name in MODEL_NAMES.items():
        champ = client.get_model_version_by_alias(name, "champion")
        new = str(mlflow.register_model(champ.source, name).version)
        client.set_registered_model_alias(name, "challenger", new)
        expected[it] = {"champion": str(champ.version), "challenger": new}
    eng = Engine(cfg)
    seen = {}
    for s in range(40):
        r = eng.recommend("posting", seeker_id=s, k=3)
        assert r["variant"] == route_variant(str(s), cfg.serving.ab.salt, 0.5)
        seen.setdefault(r["variant"], set()).add(r["model_version"])
    assert seen == {arm: {expected["posting"][arm]} for arm in ("champion", "challenger")}
    for it in MODEL_NAMES:
        client.delete_registered_model_alias(MODEL_NAMES[it], "challenger")
