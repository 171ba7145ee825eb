"""The CLI: config validation and named errors (exit 2, no traceback)."""

from __future__ import annotations

from typer.testing import CliRunner

from jobcare.cli import app

runner = CliRunner()


def test_unknown_config_key_is_a_named_error(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("world:\n  scale: tiny\n  seeds: 3\n")
    r = runner.invoke(app, ["world", "generate", "--config", str(cfg), "--out", str(tmp_path / "w")])
    assert r.exit_code == 2
    assert "world.seeds" in r.output and "Extra inputs are not permitted" in r.output
    assert "Traceback" not in r.output


def test_generate_validate_summary_via_cli(tmp_path):
    out = tmp_path / "w"
    r = runner.invoke(
        app, ["world", "generate", "-c", "configs/tiny.yaml", "--out", str(out), "--no-progress"]
    )
    assert r.exit_code == 0, r.output
    assert "500 seekers" in r.output
    r = runner.invoke(app, ["world", "validate", str(out), "-c", "configs/tiny.yaml"])
    assert r.exit_code == 0 and "valid" in r.output
    r = runner.invoke(
        app, ["world", "summary", str(out), "-c", "configs/tiny.yaml", "--json", str(tmp_path / "s.json")]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.json").is_file()


def test_validate_missing_world_is_a_named_error(tmp_path):
    r = runner.invoke(app, ["world", "validate", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "WorldNotFoundError" in r.output


def test_every_shipped_config_loads():
    from pathlib import Path

    from jobcare.config import ProjectConfig, load_config

    files = sorted(Path("configs").glob("*.yaml"))
    assert {"demo.yaml", "train.yaml"} <= {f.name for f in files}
    for f in files:
        load_config(f, ProjectConfig)  # unknown or invalid keys would raise ConfigError
    assert load_config("configs/train.yaml", ProjectConfig).train.max_requests == 20000


def test_demo_champions_line_reads_the_item_types_of_a_train_result():
    """``train`` returns the item types plus ``run_id`` and ``stages`` (per-stage timings): the demo's last
    line names each item type's model and skips the rest (a KeyError on ``stages`` once ended the demo)."""
    from jobcare.cli import champions_line

    res = {
        "posting": {"model": "jobcare-postings", "gate": {"alias": "champion"}, "version": "3"},
        "course": {"model": "jobcare-courses", "gate": {"alias": "challenger"}, "version": "2"},
        "run_id": "abc",
        "stages": {"contracts": {"seconds": 1.0, "calls": 1, "peak_rss_mib": 500.0}},
    }
    assert champions_line(res, ["posting", "course"]) == (
        "jobcare-postings@champion = v3, jobcare-courses@challenger = v2"
    )
