"""Registry models as arms of the online A/B inside the tiny world: the continued world's features are
the Feast repository's where the worlds agree, a model arm's slates come from the service's request path
with the service's exploration, the champion beats a random arm on applies, and a run is deterministic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evaluation.online_ab import run_online_ab
from evaluation.online_features import STAMPS, ContinuedFeatures, live_tables
from features.item_index import item_features, latest_rows
from jobcare.config import ExploreConfig, ProjectConfig
from jobcare.world.io import read_manifest
from serving.engine import explore_slate
from tests.integration.test_online_ab import table_digests

FROM, DAYS = "2024-03-01", 28  # tiny world: day 60 of 120
OPE_DAYS = 30  # the off-policy estimates read the explore slates of days 30-60
ARMS = "A=baseline:random,B=models:/jobcare-postings@champion"
CHANGING = ("seeker_competency", "seeker_activity", "posting_popularity")


def _cfg(served):
    cfg = served[0].model_copy(deep=True)
    cfg.serving.explore = ExploreConfig(epsilon=0.3, pool=20, salt="online-test")
    return cfg


def _digest(folder) -> dict:
    return table_digests(
        folder, ("sessions", "impressions", "events", "truth/impressions", "assignment", "model_requests")
    )


@pytest.fixture(scope="module")
def champion_vs_random(tiny_world, served, tmp_path_factory):
    out = tmp_path_factory.mktemp("online_ab_models")
    res = run_online_ab(tiny_world, _cfg(served), FROM, DAYS, ARMS, 0.5, 3, out, ope_window=OPE_DAYS)
    return res, out


def _same(a: pd.DataFrame, b: pd.DataFrame, key: str, what: str) -> None:
    """Equal feature rows (the stamps aside: a feature row is the same whichever snapshot carries it)."""
    a, b = (x.drop(columns=STAMPS, errors="ignore").sort_values(key).reset_index(drop=True) for x in (a, b))
    assert list(a.columns) == list(b.columns), what
    assert a[key].tolist() == b[key].tolist(), what
    for c in a.columns:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if x.dtype == object:  # list columns
            assert all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(x, y)), (what, c)
        else:
            assert np.array_equal(x, y), (what, c)


@pytest.mark.parametrize("after_days", [0, 12])
def test_rebuilt_features_of_the_worlds_own_run_are_the_repositorys(oracle, local_repo, after_days):
    """Fed the world's own rows after the cut as "continued", the daily rebuild (seekers touched since the
    cut, 91 days of activity, postings clipped at the day) gives exactly the Feast repository's rows."""
    start = pd.Timestamp(oracle.manifest["span"]["start"])
    cut = pd.Timestamp(FROM, tz="UTC")
    f = ContinuedFeatures(oracle.tables, local_repo, start, cut)
    t = oracle.tables
    after = {
        "events": t["events"][t["events"]["ts"] >= cut],
        "seeker_competency_events": t["seeker_competency_events"][
            (t["seeker_competency_events"]["ts"] >= cut)
            & (t["seeker_competency_events"]["source"] != "initial")
        ],
        "seeker_certificates": t["seeker_certificates"][
            (t["seeker_certificates"]["acquired_at"] >= cut)
            & (t["seeker_certificates"]["source"] != "initial")
        ],
    }
    combined = {k: pd.concat([f.before[k], after[k]], ignore_index=True) for k in after}
    at = f.moment((cut - start).days + after_days)
    changing = f.tables_at(at, combined)
    if after_days:  # the rebuild had something to do: seekers changed and postings were applied to
        assert len(after["seeker_competency_events"]) and (after["events"]["event_type"] == "apply").any()
    for view, key in (("seeker_competency", "seeker_id"), ("seeker_activity", "seeker_id")):
        _same(changing[view], latest_rows(local_repo / "data" / f"{view}.parquet", key, at), key, view)
    for it, key in (("posting", "posting_id"), ("course", "course_id"), ("certificate", "certificate_id")):
        _same(f.items_at(at, changing)[it], item_features(local_repo, it, at), key, it)
    rows = f.seekers_at(at, changing, ["seeker_competency__unit_ids", "seeker_activity__applies_30d"])
    comp = latest_rows(local_repo / "data" / "seeker_competency.parquet", "seeker_id", at).set_index(
        "seeker_id"
    )
    act = latest_rows(local_repo / "data" / "seeker_activity.parquet", "seeker_id", at).set_index("seeker_id")
    for s in comp.index[:: max(1, len(comp) // 50)]:
        r = rows.row(int(s))
        assert np.array_equal(r["seeker_competency__unit_ids"], comp.at[s, "unit_ids"])
        assert r["seeker_activity__applies_30d"] == act.at[s, "applies_30d"]


def test_live_buffers_read_as_the_continued_tables(tiny_world, tmp_path, monkeypatch):
    """What the daily rebuild reads from the simulator's buffers is what the continuation writes."""
    from evaluation import online_arms

    seen = {}

    class Probe(online_arms.RandomArm):
        def begin_day(self, d, live):
            seen["live"] = live

    monkeypatch.setattr(online_arms, "RandomArm", Probe)
    monkeypatch.setattr("evaluation.online_ab.RandomArm", Probe)
    run_online_ab(
        tiny_world, ProjectConfig(), FROM, 10, "A=baseline:random,B=baseline:legacy", 0.5, 2, tmp_path
    )
    start = pd.Timestamp(read_manifest(tiny_world)["span"]["start"])
    got = live_tables(seen["live"], start)
    for name, key in (
        ("events", ["ts", "seeker_id", "item_id", "event_type"]),
        ("seeker_competency_events", ["ts", "seeker_id", "unit_id"]),
        ("seeker_certificates", ["acquired_at", "seeker_id", "certificate_id"]),
    ):
        want = pd.read_parquet(tmp_path / f"{name}.parquet")
        if name != "events":
            want = want[want["source"] != "initial"]
        cols = list(got[name].columns)
        a = got[name][cols].sort_values(key).reset_index(drop=True)
        b = want[cols].sort_values(key).reset_index(drop=True)
        assert len(a) and len(a) == len(b), name
        for c in cols:
            assert a[c].astype(str).tolist() == b[c].astype(str).tolist(), (name, c)


def test_champion_arm_gets_more_applies_than_random(champion_vs_random):
    res, _ = champion_vs_random
    a = res["metrics"]["applies"]
    assert min(res["n_seekers"].values()) > 80
    assert a["ci_low"] > 0, a
    info = res["model_arms"]["B"]
    assert info["item_type"] == "posting" and info["serves"]["posting"].endswith("@champion")
    # the served fixture's champions were trained on the whole span: the report says they saw the future
    assert info["data_cutoff_after_cut"] == ["certificate", "course", "posting"]
    eng = res["engine"]
    assert eng["rebuild_days"] == DAYS and eng["arms"]["B"]["sessions"] == res["n_sessions"]["B"]


def test_model_arm_slates_are_the_services_exploration(tiny_world, champion_vs_random):
    """Each logged slate of the model arm and its propensities are explore_slate over the model's order
    (with the request id), the explore share is epsilon, and the arm served every item type."""
    res, out = champion_vs_random
    eps = 0.3
    req = pd.read_parquet(out / "model_requests.parquet")
    imp = pd.read_parquet(out / "impressions.parquet")
    sess = pd.read_parquet(out / "sessions.parquet").set_index("session_id")
    arm = pd.read_parquet(out / "assignment.parquet").set_index("seeker_id")["arm"]
    assert set(req["item_type"]) == {"posting", "course", "certificate"}
    assert (arm.reindex(req["seeker_id"]).to_numpy() == "B").all()
    assert len(req) == int((sess["seeker_id"].map(arm) == "B").sum())  # every shown session of B's seekers
    by_session = dict(tuple(imp.sort_values(["session_id", "position"]).groupby("session_id")))
    ecfg = ExploreConfig(epsilon=eps, pool=20, salt="online-test")
    k = read_manifest(tiny_world)["config"].get("slate_size", 10)
    explored = []
    for r in req.itertuples(index=False):
        items, prop, exp, _ = explore_slate(np.asarray(r.pool), k, r.request_id, ecfg)
        got = by_session[r.session_id]
        assert got["item_id"].tolist() == items.tolist()
        assert np.allclose(got["propensity"].to_numpy(), prop)
        assert (sess.at[r.session_id, "policy"] == "explore") == exp
        explored.append(exp)
    share = float(np.mean(explored))
    assert abs(share - eps) < 4 * np.sqrt(eps * (1 - eps) / len(explored))
    assert req["n_candidates"].min() > 0 and (req["pool"].map(len) <= 20).all()


def test_same_seed_gives_identical_tables(tiny_world, served, champion_vs_random, tmp_path):
    _, out = champion_vs_random
    run_online_ab(tiny_world, _cfg(served), FROM, DAYS, ARMS, 0.5, 3, tmp_path)
    assert _digest(tmp_path) == _digest(out)


def test_a_seeker_s_features_follow_what_they_gained_in_the_continuation(
    oracle, local_repo, champion_vs_random
):
    """A seeker who passes an exam (or completes a course) in the continuation holds its units and the
    certificate (or one more completed course) from that morning's features on, not the morning before."""
    _, out = champion_vs_random
    start = pd.Timestamp(oracle.manifest["span"]["start"])
    f = ContinuedFeatures(oracle.tables, local_repo, start, pd.Timestamp(FROM, tz="UTC"))
    cont = {k: pd.read_parquet(out / f"{k}.parquet") for k in f.before}
    t = {k: pd.concat([f.before[k], cont[k]], ignore_index=True) for k in f.before}
    ev = cont["events"]
    gains = ev[ev["event_type"].isin(["acquire", "complete"])]
    assert len(gains)
    g = gains.iloc[0]
    s, item, kind = int(g["seeker_id"]), int(g["item_id"]), g["event_type"]
    day = int((g["ts"] - start) / pd.Timedelta(days=1))  # outcomes resolve before 06:00
    cols = [
        "seeker_competency__unit_ids",
        "seeker_competency__unit_levels",
        "seeker_competency__certificate_ids",
        "seeker_competency__n_courses_completed",
    ]
    rows = {}
    for when in (day - 1, day):
        at = f.moment(when)
        rows[when] = f.seekers_at(at, f.tables_at(at, t), cols).row(s)
    before, after = rows[day - 1], rows[day]
    held = dict(zip(np.asarray(after[cols[0]]).tolist(), np.asarray(after[cols[1]]).tolist()))
    units, key = (
        (oracle.tables["certificate_units"], "certificate_id")
        if kind == "acquire"
        else (oracle.tables["course_units"], "course_id")
    )
    for u, lv in units.loc[units[key] == item, ["unit_id", "level"]].itertuples(index=False):
        assert held.get(int(u), 0) >= int(lv)
    if kind == "acquire":
        assert (
            item not in np.asarray(before[cols[2]]).tolist() and item in np.asarray(after[cols[2]]).tolist()
        )
    else:
        assert after[cols[3]] == before[cols[3]] + 1


def test_off_policy_estimates_before_the_cut_sit_next_to_the_online_effect(champion_vs_random):
    """The random arm is the logging policy's explore slate: its applies per posting session before (logged)
    and after (online) agree; the champion's off-policy target only reorders a random slate, and its
    online sessions, which choose the slate, get more expected applies than that reordering's truth."""
    res, out = champion_vs_random
    r = res["ope_vs_online"]
    assert r["item_type"] == "posting" and r["explore_slates_before"] > 30
    rnd, champ = r["arms"]["A"], r["arms"]["B"]
    before, after = rnd["off_policy"]["logged_random_order"], rnd["online"]
    for kind in ("observed", "true"):
        b, a = before[kind], after[kind]
        assert b["ci_low"] < a["ci_high"] and a["ci_low"] < b["ci_high"], (kind, b, a)  # intervals overlap
    assert rnd["same_policy"] and champ["same_policy"] is False
    ope_b = champ["off_policy"]
    assert ope_b["n_slates"] == r["explore_slates_before"]
    assert champ["online"]["true"]["ci_low"] > ope_b["true"]["ci_high"]
    sess = pd.read_parquet(out / "sessions.parquet")
    arm = pd.read_parquet(out / "assignment.parquet").set_index("seeker_id")["arm"]
    n_b = int(((sess["item_type"] == "posting") & (sess["seeker_id"].map(arm) == "B")).sum())
    assert champ["online"]["n_sessions"] == n_b
    assert "Off-policy estimates before the cut" in (out / "online_ab.md").read_text()


def test_two_model_arms_share_the_day_and_the_same_model_shows_no_effect(tiny_world, served, tmp_path):
    """The champion by alias against the same version by number: both arms run the request path over one
    rebuilt day (rebuilt once per day, not per arm), each with its own exploration keys; no effect."""
    arms = "A=models:/jobcare-postings@champion,B=models:/jobcare-postings/1"
    res = run_online_ab(tiny_world, _cfg(served), FROM, 14, arms, 0.5, 5, tmp_path)
    assert res["engine"]["rebuild_days"] == 14
    assert {a: x["sessions"] > 0 for a, x in res["engine"]["arms"].items()} == {"A": True, "B": True}
    assert res["model_arms"]["B"]["serves"]["posting"] == "models:/jobcare-postings/1"
    req = pd.read_parquet(tmp_path / "model_requests.parquet")
    assert set(req["arm"]) == {"A", "B"} and req["request_id"].is_unique
    a = res["metrics"]["applies"]
    assert a["ci_low"] < 0 < a["ci_high"], a


def test_congestion_arm_runs_and_logs_the_services_exploration(tiny_world, served, tmp_path, monkeypatch):
    """``?congestion=W`` re-ranks the arm's postings after predict and before exploration: the logged slates
    and propensities are still exactly explore_slate over the logged (re-ranked) order; the weight is in
    the report and on the arm's posting requests only; the other arm is the plain champion. The counts the
    stage reads each day (the day's offer index) are the simulator's live ones before the day's sessions."""
    from evaluation.online_engine import EngineDays
    from serving.congestion import congestion

    checked = []
    begin = EngineDays.begin_day

    def probe(self, d, live):
        begin(self, d, live)
        st = self.state
        ids, applied, left = st.offers["posting"].load(st.as_of)
        head = self.features.static["postings"].set_index("posting_id")["headcount"]
        assert np.array_equal(applied, live["p_applies"][ids]), d
        assert np.array_equal(left, head.reindex(ids).to_numpy() - live["p_hires"][ids]), d
        c = congestion(st)
        pos = st.arrays["posting"].positions(ids)
        ok = (pos >= 0) & (live["p_hires"][ids] < head.reindex(ids).to_numpy())
        want = np.log1p(
            live["p_applies"][ids][ok] / (head.reindex(ids).to_numpy() - live["p_hires"][ids])[ok]
        )
        assert np.allclose(c[pos[ok]], want), d
        checked.append(d)

    monkeypatch.setattr(EngineDays, "begin_day", probe)
    arms = "A=models:/jobcare-postings@champion,B=models:/jobcare-postings@champion?congestion=1.0"
    res = run_online_ab(tiny_world, _cfg(served), FROM, 14, arms, 0.5, 5, tmp_path)
    assert len(set(checked)) == 14
    info = res["model_arms"]
    assert info["B"]["congestion_weight"] == 1.0 and info["A"]["congestion_weight"] is None
    assert info["B"]["serves"]["posting"] == "models:/jobcare-postings@champion"
    assert "re-ranked by congestion, weight 1" in (tmp_path / "online_ab.md").read_text()
    req = pd.read_parquet(tmp_path / "model_requests.parquet")
    on = req["congestion_weight"].notna()
    assert on.any() and (req.loc[on, "arm"] == "B").all() and (req.loc[on, "item_type"] == "posting").all()
    assert ((req["arm"] == "B") & (req["item_type"] == "posting") & ~on).sum() == 0
    imp = pd.read_parquet(tmp_path / "impressions.parquet")
    by_session = dict(tuple(imp.sort_values(["session_id", "position"]).groupby("session_id")))
    ecfg = ExploreConfig(epsilon=0.3, pool=20, salt="online-test")
    k = read_manifest(tiny_world)["config"].get("slate_size", 10)
    for r in req[on].itertuples(index=False):
        items, prop, _, _ = explore_slate(np.asarray(r.pool), k, r.request_id, ecfg)
        got = by_session[r.session_id]
        assert got["item_id"].tolist() == items.tolist()
        assert np.array_equal(got["propensity"].to_numpy(), prop)


def test_congestion_off_leaves_the_response_and_weight_zero_the_order(served):
    """Off (the default): no ``congestion`` in the logging; on with weight 0: the same slate and scores."""
    from jobcare.config import CongestionConfig
    from serving.engine import Engine

    eng = Engine(served[0])
    assert not eng.scfg.congestion.enabled
    seekers = [0, 1, 2, 3, 5, 8]
    off = [eng.recommend("posting", seeker_id=s, k=10, explore=False) for s in seekers]
    eng.scfg = eng.scfg.model_copy(update={"congestion": CongestionConfig(enabled=True, weight=0.0)})
    zero = [eng.recommend("posting", seeker_id=s, k=10, explore=False) for s in seekers]
    eng.scfg = eng.scfg.model_copy(update={"congestion": CongestionConfig(enabled=True, weight=2.0)})
    strong = [eng.recommend("posting", seeker_id=s, k=10, explore=False) for s in seekers]
    for a, b, c in zip(off, zero, strong):
        assert "congestion" not in a["logging"]
        assert b["logging"]["congestion"] == {"weight": 0.0} and c["logging"]["congestion"] == {"weight": 2.0}
        assert [(i["id"], i["score"]) for i in a["items"]] == [(i["id"], i["score"]) for i in b["items"]]
        assert a["logging"]["pool"] == b["logging"]["pool"]
    assert any(a["logging"]["pool"] != c["logging"]["pool"] for a, c in zip(off, strong))


def test_fairness_arm_reranks_only_its_groups_and_needs_them_in_the_config(tiny_world, served, tmp_path):
    """``?fairness=W`` re-ranks the arm's slates for the seekers of the config's serving.fairness groups only
    (every item type, recorded per request), the other arm and other groups are the champion's; without
    groups in the config it is a named error before any simulation."""
    from evaluation.online_ab import ArmOptionError
    from jobcare.config import FairnessConfig
    from jobcare.groups import age_band
    from jobcare.world.io import read_table

    arms = "A=models:/jobcare-postings@champion,B=models:/jobcare-postings@champion?fairness=1"
    with pytest.raises(ArmOptionError, match=r"serving.fairness.groups"):
        run_online_ab(tiny_world, _cfg(served), FROM, 7, arms, 0.5, 5, tmp_path / "none")
    cfg = _cfg(served)
    cfg.serving.fairness = FairnessConfig(
        dimension="age band", groups=["50+", "40-49"]
    )  # off: the arm turns it on
    res = run_online_ab(tiny_world, cfg, FROM, 7, arms, 0.5, 5, tmp_path)
    info = res["model_arms"]
    assert info["B"]["fairness"] == {
        "dimension": "age band",
        "groups": ["50+", "40-49"],
        "content_weight": 1.0,
    }
    assert info["A"]["fairness"] is None
    assert "content weight 1 (serving.fairness)" in (tmp_path / "online_ab.md").read_text()
    req = pd.read_parquet(tmp_path / "model_requests.parquet")
    band = read_table(tiny_world, "seekers").set_index("seeker_id")["age"].map(age_band)
    in_group = req["seeker_id"].map(band).isin(["50+", "40-49"]).to_numpy()
    on = req["fairness_weight"].notna().to_numpy()
    assert on.any() and (on == (in_group & (req["arm"] == "B").to_numpy())).all()
    assert (req.loc[on, "fairness_weight"] == 1.0).all()
