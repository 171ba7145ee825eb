"""The ``unit_elements`` link table: the knowledge, skills and tools linked to each competency unit.

Both taxonomies carry the same table (``unit_id, kind, rank, name, weight, element_unit_id``), so the
career path (``POST /career-path``) answers alike on either:

- **synthetic (NCS-style)**: Korean NCS units list the knowledge, skills and attitudes of each unit
  and the equipment / tools it uses. :func:`synthetic_unit_elements` gives each unit 2-4 knowledge
  items, 2-4 skills and 1-3 tools, drawn from a vocabulary of its major group plus one item of its
  activity word ("planning", "inspection", ...) that is always kept. Weights are uniform on
  [0.4, 1.0], ranked in decreasing order; ``element_unit_id`` is null (elements are not units). The
  draw uses its OWN generator ``default_rng([seed, ELEMENTS_STREAM])``, so adding the table leaves
  every other table of a world byte for byte as before. Attitudes are not modelled.
- **O*NET**: see :func:`co_required_elements`: a skill unit's first skill is itself, a technology or
  tool commodity's first tool is itself (weight 1), followed by the skills and the tools that O*NET
  occupations most often require together with it. The O*NET 29.2 files used here hold no Knowledge
  ratings, so O*NET worlds have NO knowledge elements (none are invented).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ELEMENT_KINDS = ("knowledge", "skill", "tool")
ELEMENTS_STREAM = 0x454C454D  # "ELEM": the element draw's own stream, independent of the world's others
CO_REQUIRED_K = 5  # O*NET: co-required skills and tools kept per unit (besides the unit itself)
_COUNTS = {"knowledge": (2, 4), "skill": (2, 4), "tool": (1, 3)}  # inclusive range per unit (synthetic)

# per synthetic major group: knowledge; skills; tools (5 each, ';'-separated)
_GROUP_VOCAB = {
    "Management & Finance": (
        "accounting principles;corporate finance;business law;organisational theory;tax regulations",
        "budgeting;financial reporting;negotiating;stakeholder communication;risk evaluation",
        "spreadsheet software;ERP system;accounting software;presentation software;financial calculator",
    ),
    "Engineering & IT": (
        "software engineering;computer networks;database systems;electrical circuits;information security",
        "programming;debugging;system configuration;requirements analysis;technical writing",
        "integrated development environment;version control system;oscilloscope;network analyser;"
        "CAD software",
    ),
    "Health & Medical": (
        "anatomy and physiology;pharmacology;infection control;medical terminology;patient safety standards",
        "patient assessment;clinical record keeping;administering medication;patient communication;"
        "emergency response",
        "stethoscope;blood pressure monitor;electronic health record system;infusion pump;"
        "sterilisation equipment",
    ),
    "Education & Research": (
        "learning theory;research methods;statistics;curriculum standards;child development",
        "lesson delivery;academic writing;data collection;mentoring;experiment design",
        "learning management system;statistical software;laboratory equipment;projector;reference manager",
    ),
    "Culture, Arts & Media": (
        "art history;copyright law;media production workflow;colour theory;storytelling",
        "sketching;video editing;copywriting;photography;audience analysis",
        "digital camera;video editing software;graphic design software;audio mixer;drawing tablet",
    ),
    "Sales & Customer Service": (
        "product knowledge;consumer protection law;marketing principles;pricing;customer psychology",
        "selling;handling complaints;active listening;upselling;point-of-sale handling",
        "CRM software;point-of-sale terminal;headset;barcode scanner;e-commerce platform",
    ),
    "Personal Services": (
        "hygiene standards;nutrition;cosmetology;care ethics;food safety",
        "customer care;hair styling;cooking;cleaning;elderly care",
        "hair dryer;commercial kitchen equipment;cleaning machine;beauty instruments;mobility aid",
    ),
    "Construction & Mining": (
        "building codes;structural mechanics;construction materials;surveying;geology",
        "reading blueprints;bricklaying;formwork;operating heavy equipment;site layout",
        "total station;concrete mixer;excavator;laser level;scaffolding",
    ),
    "Manufacturing & Machinery": (
        "mechanical engineering;materials science;production management;welding metallurgy;hydraulics",
        "machining;welding;machine setup;assembly;troubleshooting",
        "CNC machine;lathe;welding machine;micrometer;torque wrench",
    ),
    "Transport, Logistics & Agriculture": (
        "traffic regulations;logistics management;crop science;animal husbandry;warehouse management",
        "driving;route planning;loading and unloading;crop cultivation;inventory control",
        "forklift;GPS navigator;tractor;warehouse management system;pallet jack",
    ),
}
# per activity word of a synthetic unit's name: (knowledge, skill, tool), always part of the unit
_WORD_VOCAB = {
    "planning": ("project planning methods", "drafting a work plan", "scheduling software"),
    "analysis": ("analytical methods", "interpreting data", "data analysis software"),
    "operation": ("operating procedures", "running daily operations", "operations checklist"),
    "maintenance": ("maintenance standards", "preventive maintenance", "maintenance toolkit"),
    "design": ("design principles", "drafting designs", "design software"),
    "quality control": ("quality management systems", "statistical process control", "measuring instruments"),
    "safety": ("occupational safety law", "hazard identification", "personal protective equipment"),
    "documentation": ("documentation standards", "writing reports", "document management system"),
    "development": ("development life cycle", "prototyping", "prototyping kit"),
    "testing": ("testing standards", "executing test plans", "test equipment"),
    "consulting": ("consulting methodology", "advising clients", "client presentation materials"),
    "assessment": ("assessment criteria", "evaluating outcomes", "assessment forms"),
    "installation": ("installation specifications", "installing equipment", "installation tools"),
    "inspection": ("inspection regulations", "conducting inspections", "inspection checklist"),
    "coordination": ("organisational communication", "coordinating teams", "collaboration software"),
    "instruction": ("instructional design", "teaching others", "training materials"),
}


def empty_elements() -> pd.DataFrame:
    """An empty ``unit_elements`` table with the declared column types."""
    return _frame(np.zeros(0, np.int64), [], np.zeros(0, np.int64), [], np.zeros(0), np.zeros(0, np.int64))


def _frame(unit_id, kind, rank, name, weight, element_unit_id) -> pd.DataFrame:
    eu = np.asarray(element_unit_id, dtype=np.int64)
    return pd.DataFrame(
        {
            "unit_id": np.asarray(unit_id, dtype=np.int32),
            "kind": pd.Series(kind, dtype=object),
            "rank": np.asarray(rank, dtype=np.int16),
            "name": pd.Series(name, dtype=object),
            "weight": np.asarray(weight, dtype=np.float64).round(4),
            "element_unit_id": pd.Series(np.where(eu >= 0, eu, 0), dtype="Int32").mask(eu < 0),
        }
    )


def synthetic_unit_elements(group_names: list[str], words: list[str], seed: int) -> pd.DataFrame:
    """Knowledge, skills and tools of the synthetic NCS-style units (one unit per list position).

    Args:
        group_names: each unit's major-group name (a key of the group vocabulary).
        words: each unit's activity word (a key of the word vocabulary, e.g. "inspection").
        seed: the world's seed; the draw uses ``default_rng([seed, ELEMENTS_STREAM])`` only.

    Returns:
        the ``unit_elements`` table, sorted by unit, kind and rank.
    """
    rng = np.random.default_rng([seed, ELEMENTS_STREAM])
    n = len(group_names)
    parts = []
    for k, kind in enumerate(ELEMENT_KINDS):
        vocab = {g: v[k].split(";") for g, v in _GROUP_VOCAB.items()}
        pool = np.array([vocab[g] + [_WORD_VOCAB[w][k]] for g, w in zip(group_names, words)], dtype=object)
        lo, hi = _COUNTS[kind]
        count = rng.integers(lo, hi + 1, n)
        keys = rng.random(pool.shape)
        keys[:, -1] = -1.0  # the activity word's element is always kept
        order = np.argsort(keys, axis=1, kind="stable")
        weight = -np.sort(-rng.uniform(0.4, 1.0, pool.shape), axis=1)
        take = np.arange(pool.shape[1])[None, :] < count[:, None]
        rows, cols = np.nonzero(take)
        parts.append(
            _frame(
                rows,
                np.full(rows.size, kind, dtype=object),
                cols + 1,
                pool[rows, order[rows, cols]],
                weight[rows, cols],
                np.full(rows.size, -1),
            )
        )
    return _sorted(pd.concat(parts, ignore_index=True))


def co_required_elements(
    unit_kinds: pd.Series, unit_names: pd.Series, links: pd.DataFrame, k: int = CO_REQUIRED_K
) -> pd.DataFrame:
    """Skills and tools of O*NET units: the unit itself, then what occupations require along with it.

    Rule: a ``skill`` unit's rank-1 skill is itself, a ``technology`` or ``tool`` commodity's rank-1 tool
    is itself (weight 1). Then, over the occupations in ``links`` (O*NET's occupation-level links: skills
    with importance >= 3, technology and tool commodities, before the world's 15-unit cap), the ``k``
    skill units and the ``k`` tool units (technology + tool commodities) with the highest co-requirement
    weight ``n(u, v) / sqrt(n(u) n(v))`` (the Ochiai / cosine coefficient of the occupations requiring u
    and v; 1 when they always go together, small for skills every occupation needs), ties by unit id.
    No knowledge elements: the O*NET files at hand carry no Knowledge ratings.

    Args:
        unit_kinds: per unit id (position), ``skill`` / ``technology`` / ``tool``.
        unit_names: per unit id, its name.
        links: ``occupation, unit_id``: which occupation requires which unit (duplicates ignored).
        k: co-required skills and tools kept per unit.

    Returns:
        the ``unit_elements`` table, sorted by unit, kind and rank.
    """
    n = len(unit_kinds)
    elem_kind = np.where(unit_kinds.to_numpy() == "skill", "skill", "tool")
    occ = pd.factorize(links["occupation"], sort=True)[0]
    a = np.zeros((int(occ.max()) + 1 if len(occ) else 0, n), dtype=np.float64)
    a[occ, links["unit_id"].to_numpy()] = 1.0
    co = a.T @ a
    deg = np.diag(co).copy()
    norm = np.sqrt(np.outer(deg, deg))
    w = np.divide(co, norm, out=np.zeros_like(co), where=norm > 0)
    np.fill_diagonal(w, 0.0)
    names = unit_names.to_numpy(dtype=object)
    parts = [_frame(np.arange(n), elem_kind, np.ones(n), names, np.ones(n), np.arange(n))]
    for kind in ("skill", "tool"):
        cols = np.flatnonzero(elem_kind == kind)
        top = np.argsort(-w[:, cols], axis=1, kind="stable")[:, :k]
        wt = np.take_along_axis(w[:, cols], top, axis=1)
        rows, j = np.nonzero(wt > 0)
        v = cols[top[rows, j]]
        parts.append(_frame(rows, np.full(rows.size, kind), np.zeros(rows.size), names[v], wt[rows, j], v))
    df = pd.concat(parts, ignore_index=True)
    # the unit itself first in its own kind (rank 1), then the co-required ones by weight, ties by unit id
    df["self"] = df["element_unit_id"].to_numpy(dtype=np.int64) == df["unit_id"].to_numpy()
    df = df.sort_values(
        ["unit_id", "kind", "self", "weight", "element_unit_id"],
        ascending=[True, True, False, False, True],
        kind="stable",
        ignore_index=True,
    )
    df["rank"] = (df.groupby(["unit_id", "kind"], sort=False).cumcount() + 1).astype(np.int16)
    return _sorted(df.drop(columns="self"))


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    kind_pos = df["kind"].map({k: i for i, k in enumerate(ELEMENT_KINDS)})
    order = np.lexsort((df["rank"].to_numpy(), kind_pos.to_numpy(), df["unit_id"].to_numpy()))
    return df.iloc[order].reset_index(drop=True)
