"""Pure, vectorised fit primitives shared by the world's utility and the models' pair features.

Both the simulator (ground truth) and ``features/`` (what models see) compute competency coverage
and RIASEC congruence; the formulas live here once.
"""

from __future__ import annotations

import numpy as np


def coverage(held: np.ndarray, required: np.ndarray, importance: np.ndarray) -> np.ndarray:
    """Importance-weighted coverage of required units, penalised by level shortfall.

    Args:
        held: (n, U) level the seeker holds for each required unit (0 = not held).
        required: (n, U) required level (>= 1; padding columns may hold any value > 0).
        importance: (n, U) importance weights (0 on padding columns).

    Returns:
        (n,) values in [0, 1]: sum(imp * min(1, held / required)) / sum(imp); 0 when nothing is required.
    """
    held = np.asarray(held, dtype=np.float64)
    required = np.maximum(np.asarray(required, dtype=np.float64), 1.0)
    importance = np.asarray(importance, dtype=np.float64)
    num = (importance * np.minimum(1.0, held / required)).sum(axis=1)
    den = importance.sum(axis=1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def missing_units(held: np.ndarray, required: np.ndarray, importance: np.ndarray) -> np.ndarray:
    """(n,) number of required units (importance > 0) held below the required level."""
    req = np.asarray(importance) > 0
    return ((np.asarray(held) < np.asarray(required)) & req).sum(axis=1).astype(np.int32)


def riasec_congruence(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two (n, 6) RIASEC profiles, in [-1, 1] (0 for a flat profile)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = (a * b).sum(axis=1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)
