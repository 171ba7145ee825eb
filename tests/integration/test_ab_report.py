"""`jobcare ab-report` and `jobcare evaluate` on the tiny world's registry: sections, plots, numbers."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from evaluation.ab_report import ab_report
from evaluation.replay import EvaluationError
from jobcare.cli import app
from jobcare.errors import JobcareError

pytestmark = pytest.mark.integration


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.text = set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.imgs.append(a)

    def handle_data(self, data):
        self.text.append(data)


N_LOGGED = 300


@pytest.fixture(scope="module")
def service_log(served, tiny_world, tmp_path_factory):
    """The service, exploring with epsilon 0.5 over the champion's top 10, answers job requests of 300
    seekers and one inline profile; the world's seekers answer the logged slates."""
    import os

    import yaml

    from jobcare.config import ExploreConfig
    from jobcare.world.io import read_table
    from serving.schemas import Profile, RecommendRequest
    from tests.integration.test_serving import PROFILE

    cfg, _ = served
    tmp = tmp_path_factory.mktemp("service-log")
    c = cfg.model_copy(deep=True)
    c.serving.explore = ExploreConfig(epsilon=0.5, pool=10)
    c.serving.impression_log.dir = tmp / "impressions"
    path = tmp / "serving.yaml"
    path.write_text(yaml.safe_dump(json.loads(c.model_dump_json())))
    before = os.environ.get("JOBCARE_CONFIG")
    os.environ["JOBCARE_CONFIG"] = str(path)
    try:
        from serving.service import JobCare

        svc = JobCare()
        seekers = read_table(tiny_world, "seekers")["seeker_id"].to_numpy()
        explored = [
            svc.recommend_jobs(RecommendRequest(seeker_id=int(s), k=5)).explored for s in seekers[:N_LOGGED]
        ]
        svc.recommend_jobs(RecommendRequest(profile=Profile(**PROFILE), k=5))
        svc.shutdown()
    finally:
        os.environ.pop("JOBCARE_CONFIG") if before is None else os.environ.update(JOBCARE_CONFIG=before)
    outcomes = tmp / "outcomes.parquet"
    r = CliRunner().invoke(
        app,
        [
            "world",
            "respond",
            "--world",
            str(tiny_world),
            "--impressions",
            str(tmp / "impressions"),
            "--out",
            str(outcomes),
        ],
    )
    assert r.exit_code == 0, r.output
    return tmp / "impressions", outcomes, explored


@pytest.fixture(scope="module")
def report(served, tiny_world, tmp_path_factory, service_log):
    cfg, _ = served
    out = tmp_path_factory.mktemp("ab") / "report.html"
    res = ab_report(
        tiny_world,
        cfg,
        "baseline:als",
        "models:/jobcare-postings@champion",
        "posting",
        30,
        out,
        max_requests=150,
        n_boot=500,
        service_log=service_log[:2],
    )
    return res, out


def test_report_renders_every_section_and_plot_with_the_json_numbers(report):
    res, out = report
    p = _Collect()
    p.feed(out.read_text())
    assert {
        "decision",
        "unbiased",
        "metrics",
        "segments",
        "fairness",
        "fairness-tradeoff",
        "beyond-accuracy",
        "off-policy",
        "service-off-policy",
        "method",
    } <= p.ids
    assert {i["alt"] for i in p.imgs} == {
        "lift", "metric at k", "forest plot", "exposure by group", "fairness trade-off",
    }  # fmt: skip
    assert all(i["src"].startswith("data:image/png;base64,") and len(i["src"]) > 2000 for i in p.imgs)
    saved = json.loads(out.with_suffix(".json").read_text())
    text = " ".join(p.text)
    flat = re.sub(r"\s+", " ", text)
    h = saved["headline"]
    assert f"(on explore slates): NDCG@10 B - A = {h['mean_diff']:+.4f} [{h['ci_low']:+.4f}" in flat
    assert saved["decision"] in text and res["decision"] == saved["decision"]
    for comp in (saved["unbiased"]["comparison"], saved["comparison"]):
        for m, c in comp.items():
            assert f"{c['mean_a']:.4f}" in text and f"{c['mean_b']:.4f}" in text, m
    # the baselines on the same explore slates: A (ALS alone) agrees with its column of the comparison
    ub = saved["unbiased"]
    assert set(ub["baselines"]) == {
        "baseline:als", "baseline:two_tower", "baseline:rules", "baseline:popularity", "baseline:legacy",
        "baseline:content_gbdt", "baseline:oracle", "baseline:observable_oracle",
    }  # fmt: skip
    assert not ub["baselines_missing"]
    b = {m: v["ndcg@10"] for m, v in ub["baselines"].items()}
    # the observable part of the truth orders the slates worse than all of it and better than popularity;
    # the content ablation is another model than B (the champion) and than the oracles
    assert b["baseline:popularity"] < b["baseline:observable_oracle"] < b["baseline:oracle"]
    assert len({b["baseline:content_gbdt"], b["baseline:oracle"], ub["comparison"]["ndcg@10"]["mean_b"]}) == 3
    assert (
        "content-only GBDT (the ablation of models:/jobcare-postings@champion"
        in ub["baselines"]["baseline:content_gbdt"]["label"]
    )
    assert ub["baselines"]["baseline:als"]["ndcg@10"] == pytest.approx(ub["comparison"]["ndcg@10"]["mean_a"])
    assert ub["baselines"]["baseline:oracle"]["ndcg@10"] > ub["baselines"]["baseline:popularity"]["ndcg@10"]
    for v in ub["baselines"].values():
        assert f"{v['ndcg@10']:.4f}" in text
    # the unbiased comparison leads, the logged one follows with the reason it favours imitation
    assert flat.index("Explore slates: the unbiased comparison") < flat.index("Logged labels (per seeker")
    assert "favours imitation" in flat
    # segments name regions and occupation groups, not bare ids
    regions = {r["group"] for r in saved["segments"]["region"]}
    assert regions and all(re.fullmatch(r"\D+ \(\d+\)", g) for g in regions), regions
    assert any(g["group"] in flat for g in saved["segments"]["occupation major group"])
    for arm in ("A", "B"):
        for k in ("ips", "snips", "dr", "true"):
            assert f"{saved['ope'][arm][k]['estimate']:.4f}" in text
        so = saved["service_ope"][arm]
        assert f"{so['support']:.3f}" in text
        for k in ("ips", "snips", "dr", "true", "true_supported"):
            assert f"{so[k]['estimate']:.4f}" in text
    assert out.with_suffix(".md").read_text().startswith("# A/B report: postings")


def test_service_impression_log_gives_off_policy_estimates_that_match_the_worlds_truth(report, service_log):
    """The service's own log (exploration with logged propensities) values the champion it served within
    three standard errors of the world's true applies. For ALS alone, whose items often lie outside the
    champion's top 10, the report shows the missing support and the truth of the supported positions;
    on 300 slates its IPS rests on one or two re-weighted applies, too few to test its value here (the
    estimators' correctness with logged propensities is tested at scale in tests/unit/test_stats.py)."""
    res, _ = report
    so = res["service_ope"]
    explored = service_log[2]
    assert so["n_slates"] == N_LOGGED and so["skipped"]["inline profile"] == 1
    assert so["skipped"]["outcomes not matching a shown item"] == 0
    assert so["explored_share"] == pytest.approx(np.mean(explored)) and 0.4 < so["explored_share"] < 0.6

    def within(est: dict, truth: float) -> bool:
        se = (est["ci_high"] - est["ci_low"]) / (2 * 1.959964)
        return abs(est["estimate"] - truth) <= 3 * se

    champion, als = so["B"], so["A"]
    assert champion["support"] == 1.0
    assert champion["true_supported"]["estimate"] == pytest.approx(champion["true"]["estimate"])
    for k in ("ips", "snips", "dr"):
        assert within(champion[k], champion["true"]["estimate"]), (k, champion[k], champion["true"])
    assert 0 < als["support"] < 1 and als["true_supported"]["estimate"] < als["true"]["estimate"]
    assert within(so["logged"]["observed"], so["logged"]["true"]["estimate"])
    assert champion["true"]["estimate"] > als["true"]["estimate"]


def test_report_statistics_are_consistent(report):
    res, _ = report
    # the NDCG@k curves and the comparison reach the per-seeker means by different code paths
    for arm, col in (("A", "mean_a"), ("B", "mean_b")):
        assert res["curves"][arm]["ndcg@10"] == pytest.approx(res["comparison"]["ndcg@10"][col])
    # the champion is far better than ALS alone on the tiny world's logged rows: the test has power there
    logged = res["comparison"]["ndcg@10"]
    assert logged["ci_low"] > 0 and logged["p_value"] < 0.05
    assert res["curves"]["oracle"]["ndcg@10"] > res["curves"]["A"]["ndcg@10"]
    # the decision is the written rule applied to the headline numbers: the explore-slate comparison
    assert res["decision_basis"] == "explore slates" and res["unbiased"]["n_seekers"] >= 30
    h = res["unbiased"]["comparison"]["ndcg@10"]
    assert res["headline"] == h
    if h["ci_low"] > 0 and h["p_value"] < 0.05:
        expected = "B better"
    elif h["ci_high"] < 0 and h["p_value"] < 0.05:
        expected = "B worse"
    else:
        expected = "no significant difference"
    assert res["decision"] == expected
    seg = res["segments"]["seeker history"]
    assert sum(s["n"] for s in seg) == res["n_seekers"]
    for dim in ("gender", "age band"):
        f = res["fairness"]["B"][dim]
        groups = f["groups"].values()
        assert len(groups) >= 2 and sum(g["n"] for g in groups) == res["n_requests"]
        # the ratios are min / max across the groups of their own measure (not of the other one)
        shares, hits = [g["exposure_share"] for g in groups], [g["apply_hit_rate"] for g in groups]
        assert f["exposure_ratio"] == pytest.approx(min(shares) / max(shares))
        assert f["hit_rate_ratio"] == pytest.approx(min(hits) / max(hits))
    o = res["ope"]
    assert o["window_explore_slates"] > 0 and o["B"]["n_slates"] == o["A"]["n_slates"] > 0
    # the true value depends on the order: the champion's order of the same random slates is worth more
    # than ALS alone's and than the logged random order (an estimator ignoring the order gives one value)
    assert o["B"]["true"]["estimate"] > o["A"]["true"]["estimate"] > 0
    assert o["B"]["true"]["estimate"] > o["logged"]["true"]["estimate"]
    for arm in ("A", "B"):  # each estimate has a real interval around it
        for k in ("ips", "snips", "dr"):
            e = o[arm][k]
            assert e["ci_low"] < e["estimate"] < e["ci_high"], (arm, k, e)


def test_cli_evaluate_and_named_errors(served, tiny_world):
    cfg, path = served
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "models:/jobcare-postings@champion",
            "--world",
            str(tiny_world),
            "--window",
            "30",
            "--max-requests",
            "80",
            "--config",
            str(path),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "ndcg@10" in r.output and "oracle" in r.output
    r = CliRunner().invoke(
        app,
        [
            "ab-report",
            "--a",
            "nonsense",
            "--b",
            "baseline:als",
            "--world",
            str(tiny_world),
            "--config",
            str(path),
        ],
    )
    assert r.exit_code == 2 and "cannot tell the item type" in r.output
    with pytest.raises(EvaluationError, match="ranks postings, not courses"):
        ab_report(
            tiny_world,
            cfg,
            "baseline:als",
            "models:/jobcare-postings@champion",
            "course",
            30,
            tiny_world.parent / "x.html",
            max_requests=50,
        )


def test_service_log_inputs_get_named_errors(served, tiny_world, service_log, tmp_path):
    from evaluation import ope

    cfg, path = served
    impressions, outcomes, _ = service_log
    r = CliRunner().invoke(
        app,
        [
            "ab-report",
            "--a",
            "baseline:als",
            "--b",
            "models:/jobcare-postings@champion",
            "--world",
            str(tiny_world),
            "--impressions",
            str(impressions),
            "--config",
            str(path),
        ],
    )
    assert r.exit_code == 2 and "--impressions and --outcomes: give both or neither" in r.output
    bad = tmp_path / "outcomes.csv"
    bad.write_text("request_id,item\nabc,3\n")
    with pytest.raises(EvaluationError, match=r"missing columns \['item_id', 'event_type'\]"):
        ope.read_outcomes(bad)
    with pytest.raises(JobcareError, match="outcomes: file not found"):
        ope.read_outcomes(tmp_path / "nope.parquet")
    with pytest.raises(EvaluationError, match="no logged course response with a known seeker"):
        ope.service_off_policy(
            cfg, tiny_world, impressions, outcomes, "baseline:als", "baseline:als", "course", None
        )
    # an outcome on an item the logged response never showed is counted, not silently used
    df = pd.read_parquet(outcomes)
    extra = pd.DataFrame([{**df.iloc[0].to_dict(), "item_id": 10**6}])
    from serving.impressions import read_records

    _, skipped = ope.service_slates(read_records(impressions), pd.concat([df, extra]), "posting")
    assert skipped["outcomes not matching a shown item"] == 1
    # the world answers only what it can: its own seekers, at a logged clock
    from jobcare.world.oracle import WorldOracle
    from jobcare.world.respond import ResponseError, respond

    rec = read_records(impressions).head(2).copy()
    oracle = WorldOracle(tiny_world)
    with pytest.raises(ResponseError, match="seeker 99999 is not in this world"):
        respond(oracle, rec.assign(seeker="99999"))
    with pytest.raises(ResponseError, match="no `as_of`"):
        respond(oracle, rec.assign(as_of=pd.NaT))
    again = respond(oracle, read_records(impressions), seed=0)
    assert again.equals(df.reset_index(drop=True))  # same log, same seed: the same answers


def test_unbiased_comparison_counts_the_explore_slates_and_is_antisymmetric(served, tiny_world):
    """The explore comparison covers exactly the window's explore slates with an outcome; swapping A and B
    negates every difference; a model against itself differs by nothing. A comparison built on other
    rows for one arm, or on logged slates, would break one of these."""
    from evaluation.ab_report import unbiased
    from evaluation.replay import replay
    from jobcare.world.io import read_tables

    cfg = served[0]
    ex = replay(tiny_world, cfg, "posting", 30, 10_000, "explore")
    champ = "models:/jobcare-postings@champion"
    ab, ba = unbiased(ex, "baseline:als", champ, 300), unbiased(ex, champ, "baseline:als", 300)
    t = read_tables(tiny_world, ["sessions", "events"])
    s, ev = t["sessions"], t["events"]
    lo, hi = ex.window
    s = s[(s.item_type == "posting") & (s.policy == "explore") & (s.ts >= lo) & (s.ts < hi)]
    ev = ev[ev.session_id.isin(s.session_id) & (ev.ts < hi) & ev.event_type.isin(["view", "apply", "hire"])]
    assert ab["n_requests"] == ev.session_id.nunique() > 20
    assert ab["n_seekers"] == s[s.session_id.isin(ev.session_id)].seeker_id.nunique()
    for m, c in ab["comparison"].items():
        assert ba["comparison"][m]["mean_diff"] == pytest.approx(-c["mean_diff"]), m
        assert ba["comparison"][m]["mean_a"] == pytest.approx(c["mean_b"]), m
    same = unbiased(ex, champ, champ, 300)["comparison"]["ndcg@10"]
    assert same["mean_diff"] == 0 and same["ci_low"] == same["ci_high"] == 0


def test_fairness_tradeoff_starts_at_the_audit_of_b_and_recounts_at_full_weight(report, served, tiny_world):
    """The trade-off curve's weight-0 point is B's own fairness audit and unbiased NDCG; the re-ranked groups
    follow the written rule; at weight 1 the re-ranked seekers' slates are ordered by the champion's
    content-only ablation (recounted here through ``replay.scores``, not the blend)."""
    from evaluation.ab_report import UNDER_SERVED, _per_seeker, _with_outcome, fairness_tradeoff
    from evaluation.replay import per_request, replay, scores
    from jobcare.groups import group_of

    res, out = report
    ft = res["fairness_tradeoff"]
    assert ft["weights"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for dim in ("gender", "age band"):
        audit = res["fairness"]["B"][dim]
        p0 = ft[dim]["points"][0]
        assert p0["logged_exposure_ratio"] == pytest.approx(audit["exposure_ratio"])
        assert p0["logged_hit_rate_ratio"] == pytest.approx(audit["hit_rate_ratio"])
        assert p0["explore_ndcg_cost"] == 0.0
        assert p0["explore_ndcg@10"] == pytest.approx(res["unbiased"]["comparison"]["ndcg@10"]["mean_b"])
        g = audit["groups"]
        exp, hit = (
            {k: v["exposure_share"] for k, v in g.items()},
            {k: v["apply_hit_rate"] for k, v in g.items()},
        )
        want = [
            k
            for k in g
            if exp[k] < UNDER_SERVED * max(exp.values()) or hit[k] < UNDER_SERVED * max(hit.values())
        ] or [min(exp, key=exp.get)]
        assert ft[dim]["re_ranked_groups"] == want
    md = out.with_suffix(".md").read_text()
    assert "## Exposure-aware re-ranking of B" in md
    last = ft["age band"]["points"][-1]
    assert f"| 1 | {last['explore_ndcg@10']:.4f} | {100 * last['explore_ndcg_cost']:+.1f}% |" in md
    # recount the weight-1 point of one dimension on the same window's explore slates
    cfg, _ = served
    rp = replay(tiny_world, cfg, "posting", 30, 150)
    ex = replay(tiny_world, cfg, "posting", 30, 150, "explore", rp.oracle, rp.data.stage)
    b = "models:/jobcare-postings@champion"
    again = fairness_tradeoff(rp, ex, b, "posting")
    dim = "gender"
    assert again[dim] == ft[dim]  # deterministic
    rows = _with_outcome(ex.data.rows)
    sub = dataclasses.replace(ex, data=dataclasses.replace(ex.data, rows=rows))
    ranker, content = scores(b, sub)[0], scores("baseline:content_gbdt", sub)[0]
    au = ex.audit.set_index("request_id")
    chosen = {
        r
        for r, ge, a in zip(au.index, au["gender"], au["age"])
        if group_of(dim, ge, a) in ft[dim]["re_ranked_groups"]
    }
    use = rows["request_id"].isin(chosen).to_numpy()
    pr = per_request(rows, np.where(use, content, ranker))
    seeker = au["seeker_id"]
    assert ft[dim]["points"][-1]["explore_ndcg@10"] == pytest.approx(
        float(_per_seeker(pr, seeker, "ndcg@10").mean())
    )
