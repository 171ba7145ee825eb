"""Labour-market information (``POST /labour-market``), precomputed once per refresh from a world's tables.

:class:`LabourMarket` cuts the tables at ``as_of`` (only postings opened, events stamped and seekers
registered strictly before it count), aggregates them with vectorised pandas/numpy into dense arrays
indexed ``[occupation, year, region]`` (region ``R`` = the nation) and applies the small-cell rule once,
over every published cell, so that no query, and no combination of queries, shows a protected cell.
A query only slices those arrays: it never scans events.

Where people are counted: every person is counted in their home region (``seekers.region_id``), once
per cell, so a year's nation row is exactly the sum of its regions; postings in the posting's region.
Years are calendar years (UTC) of the timestamps. A hire is a seeker's first ``hire`` event of the year
into the occupation; the age at hire is the age at registration plus the whole years since. New seekers
are those registered in the year whose desired occupations include it (a flow, like postings opened).
Training is measured from events: of the seekers enrolled in an ended course of the field, those who
completed one; of those followed up ``employment_window_days``, those with a ``hire`` (any posting) in
that window after their first completion. The courses table's stated rates are given beside, labelled.

Small-cell rule (``min_people`` = k, default 5), applied to every count of people:

1. primary: a cell with fewer than k people (0 included) is suppressed;
2. secondary: every published total (a year's nation row over the regions, a region's or the nation's
   hires over the categories of a distribution) is checked: when the total is shown, the total minus
   the shown cells it adds up must be 0 or at least k, otherwise the smallest shown cell (ties: lowest
   index) is suppressed too; repeated over every line until nothing changes, so no suppressed cell can
   be recovered by subtraction to a value of 1..k-1;
3. a rate is shown only when its numerator and its denominator are shown cells. The complement (e.g.
   enrolled but not completed) is a cell of the same table, checked by rules 1-2 against the
   denominator, so a shown rate never rests on 1..k-1 people on either side ("98 of 100").

Posting counts and headcounts describe employers' postings, not people: never suppressed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from jobcare.world.taxonomy import EDUCATION
from serving.errors import ServingError
from serving.labour_market_schemas import (
    CertificatesAnswer,
    LabourMarketRequest,
    LabourMarketResponse,
    OccupationAnswer,
)

AGE_EDGES = (30, 40, 50, 60)
AGE_LABELS = ("15-29", "30-39", "40-49", "50-59", "60+")
NATION = "All regions"
TOP = 5


class LabourMarketError(ServingError):
    """A labour-market question the service refuses (HTTP 400)."""


class UnknownIdError(LabourMarketError):
    """An occupation, region or certificate id the world does not have (HTTP 404)."""

    status = 404

    def __init__(self, field: str, value: int):
        self.field, self.value = field, value
        super().__init__(f"{field}: unknown id {value}")


def suppress(tables: list[np.ndarray], k: int, rows: bool = True) -> list[np.ndarray]:
    """The small-cell masks (True: suppressed) of count tables with margins.

    Args:
        tables: arrays of shape ``(..., A + 1, B + 1)``: the last index of axis -2 holds the totals over
            the first A (the nation over regions), the last index of axis -1 the totals over the first B
            (a row's total over categories). Every table must carry the same last column (shared totals).
        k: the smallest number of people a shown cell may hold.
        rows: also check each row against its total (False: tables whose columns have no total).

    Returns:
        one boolean mask per table, primary and secondary suppression (see the module docstring).
    """
    masks = [t < k for t in tables]
    changed = True
    while changed:
        changed = False
        for t, m in zip(tables, masks):
            changed |= _line_pass(t, m, k, axis=-2)
            if rows:
                changed |= _line_pass(t, m, k, axis=-1)
        shared = np.logical_or.reduce([m[..., -1] for m in masks])
        for m in masks:
            if (m[..., -1] != shared).any():
                m[..., -1] = shared
                changed = True
    return masks


def _line_pass(x: np.ndarray, m: np.ndarray, k: int, axis: int) -> bool:
    """Suppress the smallest shown cell of each line (along ``axis``, total last) whose shown total minus
    its shown cells is between 1 and k-1. Returns whether anything changed."""
    xv, mv = np.moveaxis(x, axis, -1), np.moveaxis(m, axis, -1)
    inner, im = xv[..., :-1], mv[..., :-1]
    rem = xv[..., -1] - np.where(im, 0, inner).sum(-1)
    bad = ~mv[..., -1] & (rem > 0) & (rem < k)
    if not bad.any():
        return False
    j = np.where(im, np.iinfo(np.int64).max, inner).argmin(-1)
    idx = np.nonzero(bad)
    mv[idx + (j[idx],)] = True
    return True


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _cell(v: int, m: bool) -> dict:
    return {"value": None if m else int(v), "suppressed": bool(m)}


def _rate(num: int, den: int, m: bool) -> dict:
    return {"value": None if m else num / den, "suppressed": bool(m)}


class LabourMarket:
    """Labour-market information of one world as of one instant, built once (see the module docstring).

    Args:
        tables: the world's tables (:func:`jobcare.world.io.read_tables`): ``occupations``,
            ``occupation_groups``, ``regions``, ``majors``, ``certificates``, ``postings``,
            ``posting_certificates``, ``courses``, ``seekers``, ``events``.
        as_of: the cut; naive timestamps are UTC.
        min_people: cells of fewer people are suppressed (k of the rule).
        employment_window_days: a completer counts as employed when hired within this many days after
            their first completion in the field; only completers followed up that long count.
        completion_grace_days: a course enters the completion cohort when it ended at least this many
            days before ``as_of`` (completion events follow the end by up to a day or two).
    """

    def __init__(
        self,
        tables: dict[str, pd.DataFrame],
        as_of,
        min_people: int = 5,
        employment_window_days: int = 180,
        completion_grace_days: int = 7,
    ):
        if min_people < 1 or employment_window_days < 1 or completion_grace_days < 0:
            raise LabourMarketError("min_people and employment_window_days must be >= 1, grace >= 0")
        self.as_of = _utc(as_of)
        self.min_people = int(min_people)
        self.employment_window_days = int(employment_window_days)
        self.completion_grace_days = int(completion_grace_days)
        self._names(tables)
        self._cut(tables)
        self._series()
        self._hires()
        self._certificates(tables["posting_certificates"])
        self._training(tables["courses"])
        del self._posts, self._seekers, self._applies, self._hire_events, self._course_events  # build only

    # ------------------------------------------------------------------ build
    def _names(self, t: dict[str, pd.DataFrame]) -> None:
        occ = t["occupations"].sort_values("occupation_id")
        self.occ_ids_ = occ["occupation_id"].to_numpy(np.int64)
        self.occ_titles_ = occ["title"].astype(str).tolist()
        groups = t["occupation_groups"].sort_values("group_id")
        self.group_ids_ = groups["group_id"].to_numpy(np.int64)
        self.group_names_ = groups["name"].astype(str).tolist()
        self.occ_group_ = np.searchsorted(self.group_ids_, occ["group_id"].to_numpy())
        reg = t["regions"].sort_values("region_id")
        self.region_ids_ = reg["region_id"].to_numpy(np.int64)
        self.region_names_ = reg["name"].astype(str).tolist() + [NATION]
        maj = t["majors"].sort_values("major_id")
        self.major_ids_ = maj["major_id"].to_numpy(np.int64)
        self.major_names_ = maj["name"].astype(str).tolist()
        cert = t["certificates"].sort_values("certificate_id")
        self.cert_ids_ = cert["certificate_id"].to_numpy(np.int64)
        self.cert_names_ = cert["name"].astype(str).tolist()
        self._occ_pos = {int(v): i for i, v in enumerate(self.occ_ids_)}
        self._reg_pos = {int(v): i for i, v in enumerate(self.region_ids_)}
        self._cert_pos = {int(v): i for i, v in enumerate(self.cert_ids_)}
        self.R = len(self.region_ids_)

    def _cut(self, t: dict[str, pd.DataFrame]) -> None:
        """Everything strictly before ``as_of``, ids turned into positions, years into indices."""
        p = t["postings"]
        p = p[p["open_at"] < self.as_of]
        s = t["seekers"]
        s = s[s["registered_at"] < self.as_of].set_index("seeker_id")
        e = t["events"]
        e = e[e["ts"] < self.as_of]
        last = (self.as_of - pd.Timedelta(1, "us")).year
        firsts = [x.dt.year.min() for x in (p["open_at"], e["ts"], s["registered_at"]) if len(x)]
        first = int(min(firsts)) if firsts else last
        self.years_ = list(range(first, last + 1))
        self.Y = len(self.years_)
        self._posts = pd.DataFrame(
            {
                "posting_id": p["posting_id"].to_numpy(np.int64),
                "o": np.searchsorted(self.occ_ids_, p["occupation_id"].to_numpy()),
                "r": np.searchsorted(self.region_ids_, p["region_id"].to_numpy()),
                "y": p["open_at"].dt.year.to_numpy() - first,
                "headcount": p["headcount"].to_numpy(np.int64),
            }
        )
        self._seekers = pd.DataFrame(
            {
                "r": np.searchsorted(self.region_ids_, s["region_id"].to_numpy()),
                "edu": s["education_level"].to_numpy(np.int64),
                "major": np.searchsorted(self.major_ids_, s["major_id"].to_numpy()),
                "age": s["age"].to_numpy(np.int64),
                "registered_at": s["registered_at"],
                "y": s["registered_at"].dt.year.to_numpy() - first,
                "desired": s["desired_occupation_ids"].to_numpy(),
            },
            index=s.index,
        )
        on_posting = e[e["item_type"] == "posting"].merge(
            self._posts[["posting_id", "o"]], left_on="item_id", right_on="posting_id"
        )
        on_posting = on_posting.join(self._seekers[["r"]], on="seeker_id", how="inner")
        on_posting["y"] = on_posting["ts"].dt.year.to_numpy() - first
        self._applies = on_posting[on_posting["event_type"] == "apply"]
        self._hire_events = on_posting[on_posting["event_type"] == "hire"]
        self._course_events = e[e["item_type"] == "course"]

    def _count(self, df: pd.DataFrame, cols: list[str], shape: tuple[int, ...]) -> np.ndarray:
        """Rows of ``df`` counted into a dense int64 array indexed by ``cols``."""
        flat = np.ravel_multi_index(tuple(df[c].to_numpy(np.int64) for c in cols), shape)
        return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape)

    def _with_nation(self, x: np.ndarray) -> np.ndarray:
        """``x`` indexed ``[..., region]`` with the nation (sum over regions) appended."""
        return np.concatenate([x, x.sum(-1, keepdims=True)], axis=-1)

    def _series(self) -> None:
        n_occ, Y, R, k = len(self.occ_ids_), self.Y, self.R, self.min_people
        shape = (n_occ, Y, R)
        p = self._posts
        self.postings_ = self._with_nation(self._count(p, ["o", "y", "r"], shape))
        flat = np.ravel_multi_index((p["o"], p["y"], p["r"]), shape)
        hc = np.bincount(flat, weights=p["headcount"], minlength=n_occ * Y * R).reshape(shape)
        self.headcount_ = self._with_nation(hc.astype(np.int64))
        applicants = self._applies.drop_duplicates(["seeker_id", "o", "y"])
        self.applicants_ = self._with_nation(self._count(applicants, ["o", "y", "r"], shape))
        s = self._seekers
        desired = s[["desired", "r", "y"]].explode("desired").dropna(subset=["desired"])
        desired = desired.reset_index().drop_duplicates(["seeker_id", "desired"])
        desired = desired[np.isin(desired["desired"].to_numpy(np.int64), self.occ_ids_)]
        desired["o"] = np.searchsorted(self.occ_ids_, desired["desired"].to_numpy(np.int64))
        self.new_seekers_ = self._with_nation(self._count(desired, ["o", "y", "r"], shape))
        self.applicants_mask_, self.new_seekers_mask_ = (
            suppress([x[..., None]], k, rows=False)[0][..., 0] for x in (self.applicants_, self.new_seekers_)
        )

    def _hires(self) -> None:
        """Distinct seekers hired into each occupation each year (first hire of the year), with their
        education, major and age at that hire; the distributions and the hires series share totals."""
        h = self._hire_events.sort_values("ts").drop_duplicates(["seeker_id", "o", "y"])
        h = h.join(self._seekers[["edu", "major", "age", "registered_at"]], on="seeker_id")
        years_since = (h["ts"] - h["registered_at"]).dt.days.to_numpy() // 365.25
        h["band"] = np.digitize(h["age"].to_numpy() + years_since, AGE_EDGES)
        n_occ, Y, R = len(self.occ_ids_), self.Y, self.R
        self.dist_ = {}
        for name, col, n in (
            ("education", "edu", len(EDUCATION)),
            ("major", "major", len(self.major_ids_)),
            ("age", "band", len(AGE_LABELS)),
        ):
            x = self._count(h, ["o", "y", "r", col], (n_occ, Y, R, n))
            x = np.concatenate([x, x.sum(-2, keepdims=True)], axis=-2)  # nation row
            self.dist_[name] = np.concatenate([x, x.sum(-1, keepdims=True)], axis=-1)  # total column
        masks = suppress(list(self.dist_.values()), self.min_people)
        self.dist_mask_ = dict(zip(self.dist_, masks))
        self.hires_ = self.dist_["education"][..., -1]
        self.hires_mask_ = masks[0][..., -1]

    def _certificates(self, links: pd.DataFrame) -> None:
        """Per (occupation, region or nation): certificates required by postings opened in the latest and
        previous years, top 5 by the latest count; and, per certificate, the postings asking for it."""
        lk = links.merge(self._posts, on="posting_id")
        lk["c"] = np.searchsorted(self.cert_ids_, lk["certificate_id"].to_numpy())
        order = np.argsort(lk["c"].to_numpy(), kind="stable")
        self._link_c = lk["c"].to_numpy()[order]
        self._link_o, self._link_r, self._link_y = (lk[c].to_numpy()[order] for c in ("o", "r", "y"))
        self._link_p = lk["posting_id"].to_numpy()[order]
        latest = self.Y - 1
        lk = lk[lk["y"] >= latest - 1]
        both = pd.concat([lk, lk.assign(r=self.R)])  # the nation: every region's postings
        both = both.assign(latest=both["y"] == latest, prev=both["y"] == latest - 1)
        top = both.groupby(["o", "r", "c"], as_index=False)[["latest", "prev"]].sum()
        top = top[top["latest"] > 0].sort_values(
            ["o", "r", "latest", "c"], ascending=[True, True, False, True]
        )
        top = top.groupby(["o", "r"]).head(TOP)
        self._top_key = (top["o"] * (self.R + 1) + top["r"]).to_numpy()
        self._top = top[["c", "latest", "prev"]].to_numpy(np.int64)

    def _training(self, courses: pd.DataFrame) -> None:
        """Enrolled, completed, followed-up and employed seekers of each field by home region."""
        G, R, k = len(self.group_ids_), self.R, self.min_people
        w = pd.Timedelta(self.employment_window_days, "D")
        c = courses[courses["end_at"] + pd.Timedelta(self.completion_grace_days, "D") <= self.as_of]
        occ_pos = np.searchsorted(self.occ_ids_, c["target_occupation_id"].to_numpy())
        g = pd.Series(self.occ_group_[occ_pos], index=c["course_id"].to_numpy())
        cr = np.searchsorted(self.region_ids_, c["region_id"].to_numpy())
        self.n_courses_ = self._with_nation(np.bincount(g.to_numpy() * R + cr, minlength=G * R).reshape(G, R))
        rates = c[["completion_rate", "employment_rate"]].assign(g=g.to_numpy(), r=cr)
        cols = ["completion_rate", "employment_rate"]
        self.catalogue_ = {R: rates.groupby("g")[cols].mean()}  # the courses table's stated rates
        for r, part in rates.groupby("r"):
            self.catalogue_[int(r)] = part.groupby("g")[cols].mean()
        ev = self._course_events[self._course_events["item_id"].isin(g.index)]
        ev = ev.assign(g=g.reindex(ev["item_id"]).to_numpy()).join(
            self._seekers[["r"]], on="seeker_id", how="inner"
        )
        enrol = ev[ev["event_type"] == "enrol"]
        done = ev[ev["event_type"] == "complete"].merge(
            enrol[["seeker_id", "item_id"]], on=["seeker_id", "item_id"]
        )
        enrolled = enrol.drop_duplicates(["seeker_id", "g"])
        first = done.sort_values("ts").drop_duplicates(["seeker_id", "g"])
        followed = first[first["ts"] + w <= self.as_of]
        hires = self._hire_events[["seeker_id", "ts"]].rename(columns={"ts": "hired_at"})
        pairs = followed.merge(hires, on="seeker_id")
        pairs = pairs[(pairs["hired_at"] > pairs["ts"]) & (pairs["hired_at"] <= pairs["ts"] + w)]
        employed = pairs.drop_duplicates(["seeker_id", "g"])
        n = {
            name: self._with_nation(self._count(df, ["g", "r"], (G, R)))
            for name, df in (
                ("enrolled", enrolled),
                ("completed", first),
                ("followed", followed),
                ("employed", employed),
            )
        }
        comp = np.stack([n["completed"], n["enrolled"] - n["completed"], n["enrolled"]], -1)
        emp = np.stack([n["employed"], n["followed"] - n["employed"], n["followed"]], -1)
        (mc,), (me,) = suppress([comp], k), suppress([emp], k)
        self.training_ = n
        self.training_mask_ = {
            "enrolled": mc[..., 2],
            "completed": mc[..., 0],
            "followed": me[..., 2],
            "employed": me[..., 0],
        }

    # ------------------------------------------------------------------ queries
    def _window(self, years: int | None) -> range:
        if years is not None and not 1 <= years:
            raise LabourMarketError(f"years: must be >= 1, got {years}")
        n = self.Y if years is None else min(years, self.Y)
        return range(self.Y - n, self.Y)

    def _region(self, region_id: int | None) -> int:
        if region_id is None:
            return self.R
        if region_id not in self._reg_pos:
            raise UnknownIdError("region_id", region_id)
        return self._reg_pos[region_id]

    def occupation(
        self, occupation_id: int, region_id: int | None = None, years: int | None = None
    ) -> OccupationAnswer:
        """Labour-market information of one occupation, for one region or every region and the nation."""
        if occupation_id not in self._occ_pos:
            raise UnknownIdError("occupation_id", occupation_id)
        o, r, ys = self._occ_pos[occupation_id], self._region(region_id), self._window(years)
        regions = [r] if region_id is not None else list(range(self.R + 1))
        series = []
        for ri in regions:
            for yi in ys:
                series.append(
                    {
                        "region_id": None if ri == self.R else int(self.region_ids_[ri]),
                        "region": self.region_names_[ri],
                        "year": self.years_[yi],
                        "postings": int(self.postings_[o, yi, ri]),
                        "headcount": int(self.headcount_[o, yi, ri]),
                        "applicants": _cell(self.applicants_[o, yi, ri], self.applicants_mask_[o, yi, ri]),
                        "hires": _cell(self.hires_[o, yi, ri], self.hires_mask_[o, yi, ri]),
                        "new_seekers": _cell(self.new_seekers_[o, yi, ri], self.new_seekers_mask_[o, yi, ri]),
                    }
                )
        g = int(self.occ_group_[o])
        return OccupationAnswer.model_validate(
            {
                "occupation_id": occupation_id,
                "occupation": self.occ_titles_[o],
                "group_id": int(self.group_ids_[g]),
                "field": self.group_names_[g],
                "region_id": region_id,
                "region": self.region_names_[r],
                "as_of": self.as_of.isoformat(),
                "min_people": self.min_people,
                "years": [self.years_[y] for y in ys],
                "series": series,
                "top_certificates": self._top_certificates(o, r),
                "training": self._training_answer(g, r),
                "hires_by_education": self._distribution("education", o, r, ys, EDUCATION, keys=True),
                "hires_by_major": self._distribution("major", o, r, ys, self.major_names_, keys=True),
                "hires_by_age": self._distribution("age", o, r, ys, AGE_LABELS, keys=False),
            }
        )

    def _top_certificates(self, o: int, r: int) -> dict:
        key = o * (self.R + 1) + r
        lo, hi = np.searchsorted(self._top_key, [key, key + 1])
        latest = self.Y - 1
        n = int(self.postings_[o, latest, r])
        items = [
            {
                "certificate_id": int(self.cert_ids_[c]),
                "name": self.cert_names_[c],
                "postings": int(cur),
                "share": cur / n,
                "previous_postings": int(prev),
                "change": int(cur - prev),
            }
            for c, cur, prev in self._top[lo:hi].tolist()
        ]
        return {
            "year": self.years_[latest],
            "previous_year": self.years_[latest] - 1,
            "postings": n,
            "items": items,
        }

    def _training_answer(self, g: int, r: int) -> dict:
        n, m = self.training_, self.training_mask_
        cat = self.catalogue_.get(r)
        has = cat is not None and g in cat.index
        return {
            "group_id": int(self.group_ids_[g]),
            "field": self.group_names_[g],
            "n_courses": int(self.n_courses_[g, r]),
            "enrolled": _cell(n["enrolled"][g, r], m["enrolled"][g, r]),
            "completed": _cell(n["completed"][g, r], m["completed"][g, r]),
            "completion_rate": _rate(
                n["completed"][g, r], n["enrolled"][g, r], m["completed"][g, r] | m["enrolled"][g, r]
            ),
            "followed_up": _cell(n["followed"][g, r], m["followed"][g, r]),
            "employed": _cell(n["employed"][g, r], m["employed"][g, r]),
            "employment_rate": _rate(
                n["employed"][g, r], n["followed"][g, r], m["employed"][g, r] | m["followed"][g, r]
            ),
            "employment_window_days": self.employment_window_days,
            "catalogue_completion_rate": float(cat.at[g, "completion_rate"]) if has else None,
            "catalogue_employment_rate": float(cat.at[g, "employment_rate"]) if has else None,
        }

    def _distribution(self, name: str, o: int, r: int, ys: range, labels, keys: bool) -> list[dict]:
        x, m = self.dist_[name][o, :, r], self.dist_mask_[name][o, :, r]
        out = []
        for yi in ys:
            counts, mask = x[yi].tolist(), m[yi].tolist()
            total, tm = counts[-1], mask[-1]
            cells = [
                {
                    "key": (int(self.major_ids_[i]) if name == "major" else i) if keys else None,
                    "label": str(labels[i]),
                    "count": _cell(v, s),
                    "share": None if s or tm else v / total,
                }
                for i, (v, s) in enumerate(zip(counts[:-1], mask[:-1]))
            ]
            if name == "major":  # majors with a published count, most first, then the rest as one row
                shown = sorted(
                    (c for c in cells if not c["count"]["suppressed"]), key=lambda c: -c["count"]["value"]
                )
                rest = total - sum(c["count"]["value"] for c in shown)
                rest_m = tm or rest < self.min_people
                other = {"key": None, "label": "other majors", "count": _cell(rest, rest_m)}
                cells = shown + [{**other, "share": None if rest_m else rest / total}]
            out.append({"year": self.years_[yi], "total": _cell(total, tm), "items": cells})
        return out

    def certificates(
        self, certificate_ids: list[int], region_id: int | None = None, years: int | None = None
    ) -> CertificatesAnswer:
        """The top 5 occupations whose postings (opened in the window, in the region) ask for at least one
        of ``certificate_ids``: "occupations that ask for my certificates"."""
        if not certificate_ids:
            raise LabourMarketError("certificate_ids: at least one is required")
        for c in certificate_ids:
            if c not in self._cert_pos:
                raise UnknownIdError("certificate_ids", c)
        r, ys = self._region(region_id), self._window(years)
        pos = sorted({self._cert_pos[c] for c in certificate_ids})
        bounds = np.searchsorted(self._link_c, [(c, c + 1) for c in pos])
        idx = np.concatenate([np.arange(lo, hi) for lo, hi in bounds])
        keep = self._link_y[idx] >= ys.start
        if region_id is not None:
            keep &= self._link_r[idx] == r
        _, first = np.unique(self._link_p[idx[keep]], return_index=True)
        occ = self._link_o[idx[keep]][first]  # one row per posting
        counts = np.bincount(occ, minlength=len(self.occ_ids_))
        order = np.lexsort((self.occ_ids_, -counts))[:TOP]
        total = int(len(occ))
        of_occ = self.postings_[:, ys.start :, r].sum(1)
        items = [
            {
                "occupation_id": int(self.occ_ids_[o]),
                "occupation": self.occ_titles_[o],
                "postings": int(counts[o]),
                "share": counts[o] / total,
                "share_of_occupation": counts[o] / of_occ[o],
            }
            for o in order.tolist()
            if counts[o] > 0
        ]
        return CertificatesAnswer.model_validate(
            {
                "certificates": [
                    {"certificate_id": int(self.cert_ids_[c]), "name": self.cert_names_[c]} for c in pos
                ],
                "region_id": region_id,
                "region": self.region_names_[r],
                "as_of": self.as_of.isoformat(),
                "years": [self.years_[y] for y in ys],
                "postings": total,
                "items": items,
            }
        )

    def answer(self, request: LabourMarketRequest) -> LabourMarketResponse:
        """The answer to one validated request (the endpoint's whole logic)."""
        if request.occupation_id is not None:
            occ = self.occupation(request.occupation_id, request.region_id, request.years)
            return LabourMarketResponse(occupation=occ)
        certs = self.certificates(request.certificate_ids, request.region_id, request.years)
        return LabourMarketResponse(certificates=certs)


__all__ = ["LabourMarket", "LabourMarketError", "UnknownIdError", "suppress"]
