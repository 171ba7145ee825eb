"""`jobcare ab-report` and `jobcare evaluate` on the tiny world's registry: sections, plots, numbers."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

from evaluation.ab_report import ab_report
from evaluation.replay import EvaluationError
from jobcare.cli import app

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


@pytest.fixture(scope="module")
def report(served, tiny_world, tmp_path_factory):
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
    )
    return res, out


def test_report_renders_every_section_and_plot_with_the_json_numbers(report):
    res, out = report
    p = _Collect()
    p.feed(out.read_text())
    assert {"decision", "metrics", "segments", "fairness", "beyond-accuracy", "off-policy", "method"} <= p.ids
    assert {i["alt"] for i in p.imgs} == {"lift", "metric at k", "forest plot", "exposure by group"}
    assert all(i["src"].startswith("data:image/png;base64,") and len(i["src"]) > 2000 for i in p.imgs)
    saved = json.loads(out.with_suffix(".json").read_text())
    text = " ".join(p.text)
    h = saved["comparison"]["ndcg@10"]
    assert f"{h['mean_diff']:+.4f} [{h['ci_low']:+.4f}, {h['ci_high']:+.4f}]" in re.sub(r"\s+", " ", text)
    assert saved["decision"] in text and res["decision"] == saved["decision"]
    for m, c in saved["comparison"].items():
        assert f"{c['mean_a']:.4f}" in text and f"{c['mean_b']:.4f}" in text, m
    for arm in ("A", "B"):
        for k in ("ips", "snips", "dr", "true"):
            assert f"{saved['ope'][arm][k]['estimate']:.4f}" in text
    assert out.with_suffix(".md").read_text().startswith("# A/B report: postings")


def test_report_statistics_are_consistent(report):
    res, _ = report
    for c in res["comparison"].values():
        assert c["ci_low"] <= c["mean_diff"] <= c["ci_high"] and 0 < c["p_value"] <= 1
        assert c["mean_b"] - c["mean_a"] == pytest.approx(c["mean_diff"])
    # the decision is the written rule applied to the headline numbers
    h = res["comparison"]["ndcg@10"]
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
        shares = [g["exposure_share"] for g in f["groups"].values()]
        assert sum(shares) == pytest.approx(1.0) and 0 <= f["exposure_ratio"] <= 1
    assert res["curves"]["oracle"]["ndcg@10"] > 0
    o = res["ope"]
    assert o["window_explore_slates"] > 0 and o["B"]["n_slates"] == o["A"]["n_slates"] > 0
    for arm in ("A", "B"):
        assert o[arm]["true"]["estimate"] > 0 and o[arm]["ips"]["ci_low"] <= o[arm]["ips"]["ci_high"]


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
