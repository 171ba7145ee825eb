"""The answer key, for evaluation only: the world's ground truth (``truth/``) as an oracle.

Only a simulated world has one. The model path (``features/``, ``training/``, ``serving/``) never builds
it (an import rule, ``tests/unit/test_import_rules.py``); evaluation code passes it in where it compares
against the oracle, behind an explicit flag (``jobcare train --oracle``).
"""

from __future__ import annotations

from pathlib import Path

from jobcare.errors import JobcareError
from jobcare.world.io import TRUTH_DIR


class NoTruthError(JobcareError):
    """The oracle was asked for on a world (or a service's logs) without ``truth/``."""


def has_truth(world: str | Path) -> bool:
    return (Path(world) / TRUTH_DIR / "utility.json").is_file()


NO_ORACLE_HINT = "run without --oracle (oracle metrics exist only for simulated worlds)"


def world_oracle(world: str | Path, hint: str = NO_ORACLE_HINT):
    """The world's oracle (:class:`jobcare.world.oracle.WorldOracle`); a named error without truth, which
    ends with ``hint`` (what the caller can do instead)."""
    if not has_truth(world):
        raise NoTruthError(
            f"{world}: no {TRUTH_DIR}/utility.json: this world (or log export) has no answer key; {hint}"
        )
    from jobcare.world.oracle import WorldOracle

    return WorldOracle(world)
