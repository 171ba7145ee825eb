"""Labour-market information: exact counts on hand-built tables (the small-cell rule, the as_of cut, the
top-5 certificates' change, the hires' distributions, named errors) and, on the generated tiny world,
totals that agree with the raw tables counted another way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from jobcare.errors import JobcareError
from serving.labour_market import LabourMarket, LabourMarketError, UnknownIdError, suppress
from serving.labour_market_schemas import LabourMarketRequest

AS_OF = "2026-01-01"
SEOUL, BUSAN, DAEGU = 0, 1, 2
WELDER, NURSE, MACHINIST = 0, 1, 2  # welder and machinist: field 0 (engineering); nurse: field 1


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s, tz="UTC")


def hand_tables() -> dict[str, pd.DataFrame]:
    """A small world whose every count is known (see the comments; s = Seoul, b = Busan, d = Daegu)."""
    seekers = []

    def seeker(region, registered, age, edu, major, desired):
        seekers.append(
            dict(
                seeker_id=len(seekers),
                registered_at=ts(registered),
                region_id=region,
                age=age,
                education_level=edu,
                major_id=major,
                desired_occupation_ids=np.array(desired, np.int64),
            )
        )
        return len(seekers) - 1

    # s0..s11 Seoul: ages 24 x5, 29, 35 x6; college x5, bachelor x5, master x2; major 0 x6, major 2 x6
    ages = [24] * 5 + [29] + [35] * 6
    edus = [1] * 5 + [2] * 5 + [3] * 2
    s = [
        seeker(SEOUL, "2024-01-10", ages[i], edus[i], 0 if i < 6 else 2, [WELDER] if i < 10 else [NURSE])
        for i in range(12)
    ]
    s12 = seeker(SEOUL, "2024-01-10", 40, 2, 1, [NURSE])
    for _ in range(5):  # 2025: 5 new seekers in Seoul desire welding
        seeker(SEOUL, "2025-03-01", 30, 2, 1, [WELDER])
    b = [seeker(BUSAN, "2024-01-10", 45, 2, 0, [WELDER, MACHINIST]) for _ in range(6)]
    for _ in range(4):  # ... and 4 in Daegu
        seeker(DAEGU, "2025-02-01", 50, 0, 1, [WELDER])
    seeker(SEOUL, "2026-01-02", 30, 2, 1, [WELDER])  # registered after as_of

    postings = pd.DataFrame(
        [  # posting_id, occupation, region, headcount, open_at
            (0, WELDER, SEOUL, 3, "2024-02-01"),
            (1, WELDER, BUSAN, 6, "2025-03-01"),
            (2, WELDER, SEOUL, 10, "2025-01-15"),
            (3, NURSE, SEOUL, 2, "2025-05-01"),
            (4, WELDER, SEOUL, 2, "2026-02-01"),  # after as_of
            (5, WELDER, SEOUL, 1, "2024-06-01"),
            (6, MACHINIST, BUSAN, 1, "2025-02-01"),
        ],
        columns=["posting_id", "occupation_id", "region_id", "headcount", "open_at"],
    )
    postings["open_at"] = pd.to_datetime(postings["open_at"], utc=True)
    links = {2: [0, 1, 2, 3, 4, 5], 1: [0, 1, 6], 0: [0, 2, 6], 5: [2], 4: [3, 4, 5], 3: [2], 6: [0]}
    posting_certificates = pd.DataFrame(
        [(p, c) for p, cs in links.items() for c in cs], columns=["posting_id", "certificate_id"]
    )

    events = []

    def event(seeker_id, item_type, item_id, event_type, when):
        events.append((seeker_id, item_type, item_id, event_type, ts(when)))

    for i in range(4):  # 2024: 4 Seoul applicants (suppressed)
        event(s[i], "posting", 0, "apply", "2024-03-01")
    for i in range(5):  # 2025: 5 Seoul applicants (s4 in August), s0 twice
        event(s[i], "posting", 2, "apply", "2025-08-01" if i == 4 else "2025-03-01")
    event(s[0], "posting", 0, "apply", "2025-03-05")
    for x in b:  # 2025: 6 Busan applicants, hired
        event(x, "posting", 1, "apply", "2025-04-01")
        event(x, "posting", 1, "hire", "2025-05-01")
    event(s[5], "posting", 2, "apply", "2026-01-03")  # after as_of
    event(s12, "posting", 2, "view", "2025-03-01")  # a view is not an application
    event(s12, "posting", 2, "hire", "2026-01-05")  # after as_of
    for i in range(12):  # 2025: 12 Seoul hires; s5 (29 at registration) is 30 at hire on 2025-06-01
        event(s[i], "posting", 2, "hire", "2025-06-01" if i == 5 else "2025-05-01")
    event(s[6], "posting", 0, "hire", "2025-09-01")  # s6's second hire counts once
    # training, field 0: course 0 (ended) and course 1 (ends within the grace period: not in the cohort)
    for i in range(10):
        event(s[i], "course", 0, "enrol", "2024-12-01")
    for i in range(5):
        event(s[i], "course", 0, "complete", "2025-03-02")
    for x in b[:4]:
        event(x, "course", 0, "enrol", "2024-12-01")
    for x in b[:3]:
        event(x, "course", 0, "complete", "2025-03-02")
    for i in (10, 11):
        event(s[i], "course", 1, "enrol", "2025-09-01")
    events = pd.DataFrame(events, columns=["seeker_id", "item_type", "item_id", "event_type", "ts"])
    events.insert(0, "event_id", np.arange(len(events)))

    courses = pd.DataFrame(
        [  # course_id, target occupation, region, end_at, stated completion and employment rates
            (0, MACHINIST, SEOUL, "2025-03-01", 0.8, 0.6),
            (1, WELDER, SEOUL, "2025-12-28", 0.5, 0.5),
            (2, NURSE, BUSAN, "2025-01-01", 0.9, 0.9),
        ],
        columns=[
            "course_id",
            "target_occupation_id",
            "region_id",
            "end_at",
            "completion_rate",
            "employment_rate",
        ],
    )
    courses["end_at"] = pd.to_datetime(courses["end_at"], utc=True)
    return {
        "occupations": pd.DataFrame(
            {"occupation_id": [0, 1, 2], "title": ["Welder", "Nurse", "Machinist"], "group_id": [0, 1, 0]}
        ),
        "occupation_groups": pd.DataFrame({"group_id": [0, 1], "name": ["Engineering", "Health"]}),
        "regions": pd.DataFrame({"region_id": [0, 1, 2], "name": ["Seoul", "Busan", "Daegu"]}),
        "majors": pd.DataFrame({"major_id": [0, 1, 2], "name": ["Mechanics", "Nursing", "History"]}),
        "certificates": pd.DataFrame({"certificate_id": range(7), "name": [f"cert {c}" for c in range(7)]}),
        "postings": postings,
        "posting_certificates": posting_certificates,
        "courses": courses,
        "seekers": pd.DataFrame(seekers),
        "events": events,
    }


@pytest.fixture(scope="module")
def lm() -> LabourMarket:
    return LabourMarket(hand_tables(), AS_OF)


def rows(answer, region_id) -> dict[int, object]:
    return {r.year: r for r in answer.series if r.region_id == region_id}


def value(cell):
    return None if cell.suppressed else cell.value


# ---------------------------------------------------------------- the small-cell rule
def test_suppress_primary_and_secondary_on_a_hand_table():
    # regions x categories with margins; column margin last row, row totals last column
    x = np.array([[5, 4, 9], [6, 0, 6], [11, 4, 15]])
    m = suppress([x], 5)[0]
    # 4, 0 and the column total 4 are primary; row 0 shows 5 of 9 (remainder 4): 5 goes too; the
    # nation's row shows 11 of 15 (remainder 4): 11 goes too; column 0 then hides its total
    assert m.tolist() == [[True, True, False], [False, True, False], [True, True, False]]
    # every line: shown total minus shown cells is 0 or >= 5
    for line, mask in [(x[i], m[i]) for i in range(3)] + [(x[:, j], m[:, j]) for j in range(3)]:
        if not mask[-1]:
            rem = line[-1] - line[:-1][~mask[:-1]].sum()
            assert rem == 0 or rem >= 5


def test_suppress_threshold_is_a_parameter_and_shared_totals_agree():
    a = np.array([[3, 3], [3, 3]])  # one category: the total column is the category
    b = np.array([[1, 2, 3], [1, 2, 3]])
    assert not suppress([a], 3, rows=False)[0].any()
    ma, mb = suppress([a, b], 3)
    assert ma[:, -1].tolist() == mb[:, -1].tolist() == [False, False]
    assert mb[:, :2].all()  # 1 and 2 < 3


def test_a_cell_of_4_people_is_suppressed_and_one_of_5_shown(lm):
    a = lm.occupation(WELDER)
    seoul, busan, nation = rows(a, SEOUL), rows(a, BUSAN), rows(a, None)
    assert seoul[2024].applicants.model_dump() == {"value": None, "suppressed": True}  # 4 applicants
    assert nation[2024].applicants.suppressed
    assert seoul[2025].applicants.model_dump() == {"value": 5, "suppressed": False}  # s0 twice: once
    assert value(busan[2025].applicants) == 6 and value(nation[2025].applicants) == 11
    # posting counts are about postings, not people: never suppressed
    assert (seoul[2024].postings, seoul[2024].headcount, seoul[2025].postings, seoul[2025].headcount) == (
        2,
        4,
        1,
        10,
    )
    assert (nation[2025].postings, nation[2025].headcount, busan[2024].postings) == (2, 16, 0)


def test_threshold_is_a_constructor_argument():
    a = LabourMarket(hand_tables(), AS_OF, min_people=4).occupation(WELDER)
    assert value(rows(a, SEOUL)[2024].applicants) == 4 and value(rows(a, None)[2024].applicants) == 4
    a = LabourMarket(hand_tables(), AS_OF, min_people=6).occupation(WELDER)
    # Seoul's 5 < 6; Busan's 6 goes too, or 11 - 6 would give Seoul's 5 away
    assert rows(a, SEOUL)[2025].applicants.suppressed and rows(a, BUSAN)[2025].applicants.suppressed
    assert value(rows(a, None)[2025].applicants) == 11


def test_a_cell_recoverable_by_subtraction_is_suppressed_too(lm):
    # new seekers desiring welding, 2025: Seoul 5, Daegu 4, nation 9 -> Seoul would give Daegu away
    a = lm.occupation(WELDER)
    assert rows(a, DAEGU)[2025].new_seekers.suppressed
    assert rows(a, SEOUL)[2025].new_seekers.suppressed
    assert value(rows(a, None)[2025].new_seekers) == 9
    assert [value(rows(a, r)[2024].new_seekers) for r in (SEOUL, BUSAN, DAEGU, None)] == [10, 6, None, 16]


# ---------------------------------------------------------------- the as_of cut
def test_nothing_at_or_after_as_of_counts(lm):
    a = lm.occupation(WELDER)
    assert a.years == [2024, 2025]  # the 2026 apply, hire, posting and registration do not exist
    assert sum(r.postings for r in rows(a, None).values()) == 4  # posting 4 opens after as_of
    assert value(rows(a, SEOUL)[2025].hires) == 12  # s12's 2026 hire does not count


def test_an_earlier_as_of_drops_later_events_and_re_suppresses():
    a = LabourMarket(hand_tables(), "2025-07-01").occupation(WELDER)
    seoul, busan, nation = rows(a, SEOUL), rows(a, BUSAN), rows(a, None)
    # s4's August application is gone: Seoul 4 (suppressed), so Busan's 6 would give it away from 10
    assert seoul[2025].applicants.suppressed and busan[2025].applicants.suppressed
    assert value(nation[2025].applicants) == 10
    assert nation[2025].postings == 2 and value(nation[2025].hires) == 18
    # the cohort: courses that ended 7+ days before as_of; completers followed up 180 days (none yet)
    t = a.training
    assert value(t.enrolled) == 14 and value(t.completed) == 8
    assert t.followed_up.suppressed and t.employment_rate.suppressed


# ---------------------------------------------------------------- top certificates
def test_top_5_certificates_of_the_latest_year_with_their_change(lm):
    top = lm.occupation(WELDER).top_certificates
    assert (top.year, top.previous_year, top.postings) == (2025, 2024, 2)
    got = [(c.certificate_id, c.postings, c.previous_postings, c.change, c.share) for c in top.items]
    assert got == [
        (0, 2, 1, 1, 1.0),
        (1, 2, 0, 2, 1.0),
        (2, 1, 2, -1, 0.5),
        (3, 1, 0, 1, 0.5),
        (4, 1, 0, 1, 0.5),
    ]
    assert top.items[0].name == "cert 0"
    seoul = lm.occupation(WELDER, region_id=SEOUL).top_certificates
    got = [(c.certificate_id, c.postings, c.previous_postings, c.change) for c in seoul.items]
    assert seoul.postings == 1 and got == [
        (0, 1, 1, 0),
        (1, 1, 0, 1),
        (2, 1, 2, -1),
        (3, 1, 0, 1),
        (4, 1, 0, 1),
    ]


def test_occupations_that_ask_for_my_certificates(lm):
    a = lm.certificates([0])
    assert a.postings == 4  # postings 0, 1, 2 (welder) and 6 (machinist)
    assert [(o.occupation_id, o.postings, o.share, o.share_of_occupation) for o in a.items] == [
        (WELDER, 3, 0.75, 0.75),
        (MACHINIST, 1, 0.25, 1.0),
    ]
    b = lm.certificates([0, 2])  # a posting asking for both counts once
    assert b.postings == 6
    assert [(o.occupation, o.postings) for o in b.items] == [("Welder", 4), ("Nurse", 1), ("Machinist", 1)]
    assert lm.certificates([0], region_id=BUSAN).postings == 2
    assert lm.certificates([0], years=1).postings == 3 and lm.certificates([3]).postings == 1


# ---------------------------------------------------------------- hires' distributions
def test_education_of_hires_with_secondary_suppression(lm):
    (d2024, d2025) = lm.occupation(WELDER, region_id=SEOUL).hires_by_education
    assert d2024.total.suppressed  # nobody was hired in 2024
    assert value(d2025.total) == 12
    # college 5, bachelor 5, master 2: master is primary; college (the lower index of the two 5s)
    # goes too, or 12 - 5 - 5 would give the 2 masters away
    assert [value(c.count) for c in d2025.items] == [None, None, 5, None, None]
    assert [c.label for c in d2025.items][:3] == ["high_school", "college", "bachelor"]
    assert d2025.items[2].share == 5 / 12
    nation = lm.occupation(WELDER).hires_by_education[1]
    assert value(nation.total) == 18 and [value(c.count) for c in nation.items] == [
        None,
        None,
        11,
        None,
        None,
    ]


def test_age_bands_of_new_hires_use_the_age_at_hire(lm):
    seoul = lm.occupation(WELDER, region_id=SEOUL).hires_by_age[1]
    # 5 aged 25, s5 registered at 29 and hired 16 months later (30), 6 aged 36; s6 hired twice: once
    assert [(c.label, value(c.count)) for c in seoul.items] == [
        ("15-29", 5),
        ("30-39", 7),
        ("40-49", None),
        ("50-59", None),
        ("60+", None),
    ]
    nation = lm.occupation(WELDER).hires_by_age[1]
    assert [value(c.count) for c in nation.items] == [5, 7, 6, None, None]
    assert [c.share for c in nation.items][:3] == [5 / 18, 7 / 18, 6 / 18]


def test_majors_of_hires_are_named_and_the_rest_is_one_row(lm):
    d = lm.occupation(WELDER).hires_by_major[1]
    assert [(c.key, c.label, value(c.count)) for c in d.items] == [
        (0, "Mechanics", 12),
        (2, "History", 6),
        (None, "other majors", None),  # 0 people: below the threshold
    ]
    assert lm.occupation(WELDER, years=1).hires_by_major[0].year == 2025


def test_years_returns_the_latest_years(lm):
    a = lm.occupation(WELDER, region_id=BUSAN, years=1)
    assert a.years == [2025] and [(r.region, r.year) for r in a.series] == [("Busan", 2025)]
    assert len(lm.occupation(WELDER, years=10).years) == 2
    assert [r.region for r in lm.occupation(WELDER).series[-2:]] == ["All regions"] * 2


# ---------------------------------------------------------------- training
def test_course_completion_and_employment_rates_measured_from_events(lm):
    t = lm.occupation(WELDER).training  # field 0: the machinist course 0; course 1 is still finishing
    assert (t.group_id, t.field, t.n_courses) == (0, "Engineering", 1)
    assert (value(t.enrolled), value(t.completed), t.completion_rate.value) == (14, 8, 8 / 14)
    # every completer was hired 60 days after completing, within the 180-day window
    assert (value(t.followed_up), value(t.employed), t.employment_rate.value) == (8, 8, 1.0)
    assert (t.catalogue_completion_rate, t.catalogue_employment_rate) == (0.8, 0.6)
    # Seoul: 10 enrolled, 5 completed, but Busan's 4 enrolled and 3 completed are recoverable from the
    # nation, so Seoul's cells go too
    s = lm.occupation(WELDER, region_id=SEOUL).training
    assert s.enrolled.suppressed and s.completed.suppressed and s.completion_rate.suppressed
    assert lm.occupation(NURSE).training.enrolled.suppressed  # nobody enrolled in field 1


def test_employment_window_is_a_parameter():
    t = LabourMarket(hand_tables(), AS_OF, employment_window_days=30).occupation(WELDER).training
    assert value(t.followed_up) == 8 and t.employed.suppressed and t.employment_rate.suppressed


# ---------------------------------------------------------------- errors and requests
def test_unknown_ids_raise_a_named_error_with_field_and_value(lm):
    for call, field, v in [
        (lambda: lm.occupation(99), "occupation_id", 99),
        (lambda: lm.occupation(WELDER, region_id=17), "region_id", 17),
        (lambda: lm.certificates([0, 42]), "certificate_ids", 42),
        (lambda: lm.certificates([0], region_id=5), "region_id", 5),
    ]:
        with pytest.raises(UnknownIdError) as err:
            call()
        assert (err.value.field, err.value.value, err.value.status) == (field, v, 404)
        assert isinstance(err.value, JobcareError) and f"{field}: unknown id {v}" in str(err.value)
    with pytest.raises(LabourMarketError, match="years"):
        lm.occupation(WELDER, years=0)


def test_request_model_takes_one_question_and_forbids_unknown_fields(lm):
    r = LabourMarketRequest(occupation_id=0, region_id=1, years=1)
    assert lm.answer(r).occupation.series[0].region == "Busan" and lm.answer(r).certificates is None
    assert lm.answer(LabourMarketRequest(certificate_ids=[0])).certificates.postings == 4
    for bad in [
        {},
        {"occupation_id": 0, "certificate_ids": [1]},
        {"occupation_id": 0, "colour": "red"},
        {"certificate_ids": []},
        {"certificate_ids": list(range(51))},
        {"certificate_ids": [-1]},
        {"occupation_id": 0, "years": 0},
    ]:
        with pytest.raises(ValidationError):
            LabourMarketRequest(**bad)


# ---------------------------------------------------------------- the generated tiny world
@pytest.fixture(scope="module")
def tiny_lm(tiny_tables):
    end = tiny_tables["events"]["ts"].max()
    return LabourMarket(tiny_tables, end), end


def test_tiny_world_postings_agree_with_the_postings_table(tiny_lm, tiny_tables):
    lm, end = tiny_lm
    p = tiny_tables["postings"]
    p = p[p["open_at"] < end]
    by_year = p.groupby(["occupation_id", p["open_at"].dt.year]).agg(
        n=("posting_id", "size"), hc=("headcount", "sum")
    )
    busiest = p["occupation_id"].value_counts().index[:5]
    for o in busiest:
        a = lm.occupation(int(o))
        for year in a.years:
            regional = [r for r in a.series if r.year == year and r.region_id is not None]
            nation = rows(a, None)[year]
            want = by_year.loc[(o, year)] if (o, year) in by_year.index else {"n": 0, "hc": 0}
            assert sum(r.postings for r in regional) == nation.postings == want["n"]
            assert sum(r.headcount for r in regional) == nation.headcount == want["hc"]
    assert int(lm.postings_[..., -1].sum()) == len(p)


def test_tiny_world_people_counts_agree_and_respect_the_rule(tiny_lm, tiny_tables):
    lm, end = tiny_lm
    e, p = tiny_tables["events"], tiny_tables["postings"]
    e = e[(e["ts"] < end) & (e["item_type"] == "posting")].merge(
        p[["posting_id", "occupation_id"]], left_on="item_id", right_on="posting_id"
    )
    for kind, got in (("apply", lm.applicants_), ("hire", lm.hires_)):
        x = e[e["event_type"] == kind]
        want = x.groupby(["occupation_id", x["ts"].dt.year])["seeker_id"].nunique()
        arr = {
            (int(lm.occ_ids_[o]), lm.years_[y]): int(got[o, y, -1]) for o, y in zip(*np.nonzero(got[..., -1]))
        }
        assert arr == {k: int(v) for k, v in want.items()} and sum(arr.values()) > 0
    k = lm.min_people
    for o in lm.occ_ids_[:40]:
        a = lm.occupation(int(o))
        for year in a.years:
            for field in ("applicants", "hires", "new_seekers"):
                cells = [getattr(r, field) for r in a.series if r.year == year]
                shown = [c.value for c in cells if not c.suppressed]
                assert all(v >= k for v in shown)
                if not cells[-1].suppressed:  # the nation: what the suppressed regions add up to
                    rem = cells[-1].value - sum(c.value for c in cells[:-1] if not c.suppressed)
                    assert rem == 0 or rem >= k
        for dist in a.hires_by_education + a.hires_by_age:
            if not dist.total.suppressed:
                rem = dist.total.value - sum(c.count.value for c in dist.items if not c.count.suppressed)
                assert rem == 0 or rem >= k


def test_tiny_world_certificate_demand_agrees_with_the_links(tiny_lm, tiny_tables):
    lm, end = tiny_lm
    links = tiny_tables["posting_certificates"].merge(tiny_tables["postings"], on="posting_id")
    links = links[links["open_at"] < end]
    c = int(links["certificate_id"].value_counts().index[0])
    a = lm.certificates([c])
    mine = links[links["certificate_id"] == c]
    assert a.postings == len(mine)
    want = mine["occupation_id"].value_counts()
    assert a.items[0].postings == int(want.iloc[0]) and a.items[0].occupation_id in set(
        want[want == want.iloc[0]].index
    )
