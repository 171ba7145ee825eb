"""The career development path (``POST /career-path``), precomputed once from a world's tables.

For a competency unit: the majors that teach it (``major_units``), the certificates that certify it
(``certificate_units``), the course runs that train it (``course_units``, read at ``as_of``), the
occupations that require it (``occupation_units``) and its knowledge, skills and tools
(``unit_elements``, see :mod:`jobcare.world.elements` for how each taxonomy fills it). For an
occupation: each required unit with its importance and level and the same path (shorter lists), and
the knowledge, skills and tools of its units merged by name.

:class:`CareerPath` sorts every link table once, in the order the answer lists it, into flat column
arrays with one offset per unit (or per occupation): a query slices them and builds the response. The
orders (ties always by id, so answers are deterministic):

- majors: affinity, highest first;
- certificates: attested level, lowest first (the path upward), then pass rate, highest first;
- courses: recruiting at ``as_of`` (``recruit_start_at <= as_of < start_at``, the simulator's rule for
  an open course) first, then upcoming (recruitment not yet open), both by start date, soonest first;
  then running and ended runs, by start date, latest first;
- occupations and an occupation's units: importance, then level, highest first;
- elements: the world's rank within (unit, kind); merged over an occupation's units, by
  ``max(importance / 5 x weight)``, then the number of its units linking the element, then name.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from jobcare.world.elements import ELEMENT_KINDS
from jobcare.world.io import read_tables
from serving.career_path_schemas import (
    MAX_ELEMENTS,
    MAX_ITEMS,
    MAX_NESTED,
    CareerPathRequest,
    CareerPathResponse,
)
from serving.errors import ServingError

TABLES = (
    "regions",
    "occupation_groups",
    "competency_units",
    "occupations",
    "occupation_units",
    "certificates",
    "certificate_units",
    "majors",
    "major_units",
    "courses",
    "course_units",
    "unit_elements",
)
STATUSES = ("recruiting", "upcoming", "running", "ended")
_ELEMENT_FIELDS = {"knowledge": "knowledge", "skill": "skills", "tool": "tools"}
NO_KNOWLEDGE_ONET = (
    "no knowledge elements: this world's taxonomy is built on O*NET files that hold no Knowledge ratings"
)


def tables_present(world: str | Path, names) -> list[str]:
    """``names`` without ``unit_elements`` when the world has no such file (generated before it existed)."""
    return [n for n in names if n != "unit_elements" or (Path(world) / f"{n}.parquet").is_file()]


class CareerPathError(ServingError):
    """A career-path question the service refuses (HTTP 400)."""


class CareerPathUnknownIdError(CareerPathError):
    """A unit or occupation id the world does not have (HTTP 404); the message gives the valid range."""

    status = 404

    def __init__(self, field: str, value: int, ids: np.ndarray):
        self.field, self.value = field, value
        valid = f"valid ids {int(ids.min())}-{int(ids.max())}" if len(ids) else "the world has none"
        super().__init__(f"{field}: unknown id {value} ({valid})")


def _utc(ts: str | datetime) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class _Links:
    """Rows of one link table sorted by (owner position, answer order): columns plus owner offsets."""

    def __init__(self, owner: np.ndarray, n_owners: int, cols: dict[str, np.ndarray], order: np.ndarray):
        self.cols = {k: np.asarray(v)[order] for k, v in cols.items()}
        self.offsets = np.searchsorted(owner[order], np.arange(n_owners + 1))

    def total(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def rows(self, i: int, cap: int) -> list[dict]:
        lo = self.offsets[i]
        hi = min(self.offsets[i + 1], lo + cap)
        lists = [v[lo:hi].tolist() for v in self.cols.values()]
        return [dict(zip(self.cols, vals)) for vals in zip(*lists)]


class CareerPath:
    """Answers ``POST /career-path`` from a world's taxonomy and catalog tables, as of one instant.

    Args:
        tables: the world's tables by name (:data:`TABLES`; ``unit_elements`` may be absent in a world
            generated before it existed: then no elements are listed and ``notes`` says so).
        as_of: the instant at which course runs are recruiting, upcoming, running or ended (naive: UTC).
    """

    def __init__(self, tables: dict[str, pd.DataFrame], as_of: str | datetime):
        self.as_of = _utc(as_of)
        units, occ = tables["competency_units"], tables["occupations"]
        self.unit_ids_ = units["unit_id"].to_numpy(np.int64)
        self.occ_ids_ = occ["occupation_id"].to_numpy(np.int64)
        self._unit_pos = pd.Index(self.unit_ids_)
        self._occ_pos = pd.Index(self.occ_ids_)
        group_name = tables["occupation_groups"].set_index("group_id")["name"]
        ucols = ["unit_id", "code", "name", "kind", "group_id", "middle_code", "minor_code"]
        self._units = (
            units[ucols]
            .assign(group=group_name.reindex(units["group_id"]).fillna("").to_numpy())
            .to_dict("records")
        )
        self._occs = (
            occ[["occupation_id", "code", "title", "group_id"]]
            .assign(group=group_name.reindex(occ["group_id"]).fillna("").to_numpy())
            .to_dict("records")
        )
        self.kinds_ = sorted(units["kind"].unique().tolist())
        self._build_links(tables, group_name)
        self._build_elements(tables.get("unit_elements"), tables["occupation_units"])

    @classmethod
    def from_world(cls, world: str | Path, as_of: str | datetime) -> CareerPath:
        """Read :data:`TABLES` from a world folder (``unit_elements`` only if the world has it)."""
        return cls(read_tables(world, tables_present(world, TABLES)), as_of)

    # ------------------------------------------------------------------ build
    def _build_links(self, t: dict[str, pd.DataFrame], group_name: pd.Series) -> None:
        n_units = len(self.unit_ids_)
        mu, majors = t["major_units"], t["majors"].set_index("major_id")
        u = self._unit_pos.get_indexer(mu["unit_id"])
        aff = mu["affinity"].to_numpy(np.float64)
        mid = mu["major_id"].to_numpy(np.int64)
        self._majors = _Links(
            u,
            n_units,
            {"major_id": mid, "name": majors["name"].reindex(mid).to_numpy(object), "affinity": aff},
            np.lexsort((mid, -aff, u)),
        )

        cu, certs = t["certificate_units"], t["certificates"].set_index("certificate_id")
        u = self._unit_pos.get_indexer(cu["unit_id"])
        cid = cu["certificate_id"].to_numpy(np.int64)
        lvl = cu["level"].to_numpy(np.int64)
        pr = certs["pass_rate"].reindex(cid).to_numpy(np.float64)
        cols = {
            "certificate_id": cid,
            "name": certs["name"].reindex(cid).to_numpy(object),
            "grade": certs["grade"].reindex(cid).to_numpy(object),
            "level": lvl,
            "pass_rate": pr,
        }
        self._certs = _Links(u, n_units, cols, np.lexsort((cid, -pr, lvl, u)))

        c = t["courses"].set_index("course_id")
        recruit, start, end = (
            pd.to_datetime(c[k], utc=True) for k in ("recruit_start_at", "start_at", "end_at")
        )
        status = np.select(
            [
                (recruit <= self.as_of).to_numpy() & (start > self.as_of).to_numpy(),
                (recruit > self.as_of).to_numpy(),
                (end > self.as_of).to_numpy(),
            ],
            [0, 1, 2],
            3,
        )
        start_us = start.dt.tz_convert(None).to_numpy("datetime64[us]").astype(np.int64)
        region = t["regions"].set_index("region_id")["name"]
        course = pd.DataFrame(
            {
                "title": c["title"].to_numpy(object),
                "region_id": c["region_id"].to_numpy(np.int64),
                "region": region.reindex(c["region_id"]).to_numpy(object),
                "status": np.array(STATUSES, dtype=object)[status],
                "recruit_start_date": recruit.dt.strftime("%Y-%m-%d").to_numpy(object),
                "start_date": start.dt.strftime("%Y-%m-%d").to_numpy(object),
                "end_date": end.dt.strftime("%Y-%m-%d").to_numpy(object),
                "rank": status,
                "key": np.where(status < 2, start_us, -start_us),
            },
            index=c.index,
        )
        kc = t["course_units"]
        u = self._unit_pos.get_indexer(kc["unit_id"])
        kid = kc["course_id"].to_numpy(np.int64)
        row = course.reindex(kid)
        shown = ("title", "region_id", "region", "status", "recruit_start_date", "start_date", "end_date")
        cols = {"course_id": kid, **{k: row[k].to_numpy() for k in shown}}
        cols["level"] = kc["level"].to_numpy(np.int64)
        rank = row["rank"].to_numpy(np.int64)
        self._courses = _Links(u, n_units, cols, np.lexsort((kid, row["key"].to_numpy(np.int64), rank, u)))
        self._recruiting = np.bincount(u[rank == 0], minlength=n_units)

        ou = t["occupation_units"]
        u = self._unit_pos.get_indexer(ou["unit_id"])
        o = self._occ_pos.get_indexer(ou["occupation_id"])
        oid, uid = ou["occupation_id"].to_numpy(np.int64), ou["unit_id"].to_numpy(np.int64)
        imp, lvl = ou["importance"].to_numpy(np.int64), ou["level"].to_numpy(np.int64)
        occ = t["occupations"].set_index("occupation_id")
        gid = occ["group_id"].reindex(oid).to_numpy(np.int64)
        cols = {
            "occupation_id": oid,
            "title": occ["title"].reindex(oid).to_numpy(object),
            "group_id": gid,
            "group": group_name.reindex(gid).to_numpy(object),
            "importance": imp,
            "level": lvl,
        }
        self._occupations = _Links(u, n_units, cols, np.lexsort((oid, -lvl, -imp, u)))
        self._required = _Links(
            o,
            len(self.occ_ids_),
            {"unit_pos": u, "importance": imp, "level": lvl},
            np.lexsort((uid, -lvl, -imp, o)),
        )

    def _build_elements(self, ue: pd.DataFrame | None, ou: pd.DataFrame) -> None:
        self.notes_: list[str] = []
        if ue is None:
            self.notes_.append(
                "no knowledge, skills or tools: the world has no unit_elements table (generated before it "
                "existed); regenerate the world"
            )
            ue = pd.DataFrame(
                {c: [] for c in ("unit_id", "kind", "rank", "name", "weight", "element_unit_id")}
            )
        else:
            present = set(ue["kind"].unique().tolist())
            for kind in ELEMENT_KINDS:
                if kind not in present:
                    onet = kind == "knowledge" and "ncs" not in self.kinds_
                    self.notes_.append(NO_KNOWLEDGE_ONET if onet else f"no {kind} elements in this world")
        kind_idx = {k: i for i, k in enumerate(ELEMENT_KINDS)}
        K = len(ELEMENT_KINDS)
        u = self._unit_pos.get_indexer(ue["unit_id"])
        k = ue["kind"].map(kind_idx).to_numpy(np.int64)
        ref = pd.array(ue["element_unit_id"], dtype="Int64")
        cols = {
            "name": ue["name"].to_numpy(object),
            "weight": ue["weight"].to_numpy(np.float64),
            "unit_id": ref.to_numpy(dtype=object, na_value=None),
        }
        key = u * K + k
        self._unit_elements = _Links(
            key, len(self.unit_ids_) * K, cols, np.lexsort((ue["rank"].to_numpy(), key))
        )

        # an occupation's elements: its units' elements merged by (kind, name)
        m = pd.DataFrame(
            {
                "o": self._occ_pos.get_indexer(ou["occupation_id"]),
                "u": self._unit_pos.get_indexer(ou["unit_id"]),
                "imp": ou["importance"].to_numpy(np.float64),
            }
        ).merge(
            pd.DataFrame({"u": u, "k": k, "name": cols["name"], "weight": cols["weight"], "ref": ref}),
            on="u",
        )
        m["score"] = m["imp"] / 5.0 * m["weight"]
        g = m.groupby(["o", "k", "name"], sort=False).agg(
            weight=("score", "max"), n=("u", "size"), ref=("ref", "min")
        )
        g = g.reset_index()
        okey = g["o"].to_numpy(np.int64) * K + g["k"].to_numpy(np.int64)
        name = g["name"].to_numpy(object)
        order = np.lexsort((name, -g["n"].to_numpy(np.int64), -g["weight"].to_numpy(np.float64), okey))
        ocols = {
            "name": name,
            "weight": g["weight"].to_numpy(np.float64).round(4),
            "unit_id": pd.array(g["ref"], dtype="Int64").to_numpy(dtype=object, na_value=None),
        }
        self._occ_elements = _Links(okey, len(self.occ_ids_) * K, ocols, order)

    # ------------------------------------------------------------------ queries
    def _elements(self, links: _Links, i: int) -> dict:
        K, out = len(ELEMENT_KINDS), {}
        for j, kind in enumerate(ELEMENT_KINDS):
            field = _ELEMENT_FIELDS[kind]
            out[field] = links.rows(i * K + j, MAX_ELEMENTS)
            out[f"{field}_total"] = links.total(i * K + j)
        return out

    def _unit_path(self, i: int, cap: int) -> dict:
        return {
            "unit": self._units[i],
            "majors": self._majors.rows(i, cap),
            "majors_total": self._majors.total(i),
            "certificates": self._certs.rows(i, cap),
            "certificates_total": self._certs.total(i),
            "courses": self._courses.rows(i, cap),
            "courses_total": self._courses.total(i),
            "courses_recruiting": int(self._recruiting[i]),
            "occupations": self._occupations.rows(i, cap),
            "occupations_total": self._occupations.total(i),
            "elements": self._elements(self._unit_elements, i),
        }

    def _position(self, index: pd.Index, field: str, value: int) -> int:
        pos = int(index.get_indexer([value])[0])
        if pos < 0:
            raise CareerPathUnknownIdError(field, value, index.to_numpy())
        return pos

    def answer(self, request: CareerPathRequest) -> CareerPathResponse:
        """The path of ``request.unit_id`` or ``request.occupation_id``.

        Raises:
            CareerPathUnknownIdError: the id is not in the world (HTTP 404).
        """
        out = {
            "as_of": self.as_of.isoformat(),
            "taxonomy_kinds": self.kinds_,
            "limits": {"items": MAX_ITEMS, "nested": MAX_NESTED, "elements": MAX_ELEMENTS},
            "notes": self.notes_,
        }
        if request.unit_id is not None:
            i = self._position(self._unit_pos, "unit_id", request.unit_id)
            out["unit"] = self._unit_path(i, MAX_ITEMS)
        else:
            o = self._position(self._occ_pos, "occupation_id", request.occupation_id)
            units = [
                {
                    "importance": r["importance"],
                    "level": r["level"],
                    "path": self._unit_path(r["unit_pos"], MAX_NESTED),
                }
                for r in self._required.rows(o, self._required.total(o))
            ]
            out["occupation"] = {
                "occupation": self._occs[o],
                "units": units,
                "units_total": len(units),
                "elements": self._elements(self._occ_elements, o),
            }
        return CareerPathResponse.model_validate(out)


__all__ = ["TABLES", "CareerPath", "CareerPathError", "CareerPathUnknownIdError", "tables_present"]
