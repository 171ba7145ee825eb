"""The model path never sees the answer key: ``features/``, ``training/`` and ``serving/`` import
neither the world's oracle nor its utility model and never name ``truth/`` (the simulator's ground
truth). Only evaluation code may, behind an explicit flag (``evaluation/reference.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODEL_PATH = ("features", "training", "serving")
FORBIDDEN_MODULES = ("jobcare.world.oracle", "jobcare.world.utility", "evaluation.reference")
FORBIDDEN_NAMES = ("TRUTH_DIR", "WorldOracle", "world_oracle")


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docs = {  # docstrings may talk about the truth; code may not reach it
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            mods = [base] + [f"{base}.{a.name}" for a in node.names]
            out += [f"imports {a.name}" for a in node.names if a.name in FORBIDDEN_NAMES]
        else:
            mods = []
        out += [f"imports {m}" for m in mods if m in FORBIDDEN_MODULES]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if "truth/" in node.value or node.value == "truth":
                out.append(f"names {node.value!r}")
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in FORBIDDEN_NAMES:
                out.append(f"uses {name}")
    return [f"{path.relative_to(ROOT)}:{v}" for v in out]


def test_the_model_path_never_reads_the_answer_key():
    files = [p for d in MODEL_PATH for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 40  # the scan covers the packages
    found = [v for p in files for v in violations(p)]
    assert not found, found


def test_the_scan_catches_each_way_of_reaching_the_oracle(tmp_path):
    cases = {
        "a.py": "from jobcare.world.oracle import WorldOracle\n",
        "b.py": "import jobcare.world.utility as u\n",
        "c.py": "from jobcare.world import oracle\n",
        "d.py": "p = world / 'truth/utility.json'\n",
        "e.py": "from jobcare.world.io import TRUTH_DIR\n",
        "f.py": "from evaluation.reference import world_oracle\n",
        "g.py": '"""A docstring about truth/."""\nTRUTH = "truth"\n',
    }
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        for name, src in cases.items():
            (tmp_path / name).write_text(src)
            assert violations(tmp_path / name), name
        (tmp_path / "ok.py").write_text("from jobcare.world.io import read_tables\nx = 'the truthful'\n")
        assert violations(tmp_path / "ok.py") == []
    finally:
        ROOT = old
