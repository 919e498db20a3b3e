"""Historical-simulation scenarios on the real Treasury par yield history (as of 2024-06-26).

Plain historical simulation (``mode="historical"``); the filtered mode is tested in
``test_filtered.py``.

The expected values are read from ``yields/par_yield_curve.csv`` in this file with the
standard library (``csv``, ``datetime``), independently of :mod:`xmargin.market.history`: every
scenario's par curve must be the as-of curve plus the change between the two history dates
the scenario records, gaps in the history filled by a linear interpolation in maturity
written out below.
"""

from __future__ import annotations

import csv
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from xmargin.errors import InputError
from xmargin.market.history import ParYieldHistory, load_par_yields
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.scenarios.historical import ScenarioSet, ScenarioSpec, build_scenarios

AS_OF = date(2024, 6, 26)
TENORS = ("1M", "2M", "3M", "4M", "6M", "1Y", "2Y", "3Y", "5Y", "7Y", "10Y", "20Y", "30Y")
MONTHS = (1, 2, 3, 4, 6, 12, 24, 36, 60, 84, 120, 240, 360)


# --- the history, read independently ----------------------------------------------------------

class Csv:
    """The par yield file as plain Python: published dates in order and yields in percent."""

    def __init__(self, path: Path) -> None:
        self.rows: dict[date, list[float | None]] = {}
        with path.open(newline="", encoding="utf-8-sig") as fh:
            for rec in csv.DictReader(fh):
                values = [float(rec[t]) if rec[t].strip() else None for t in TENORS]
                if any(v is not None for v in values):  # 2010-10-11 is listed with no rates
                    self.rows[date.fromisoformat(rec["date"])] = values
        self.dates = sorted(self.rows)
        self.position = {d: i for i, d in enumerate(self.dates)}

    def filled(self, d: date) -> list[float]:
        """Yields at all 13 tenors on ``d``: a missing tenor is the straight line in months
        between the nearest published tenors on either side, or the nearest one when it has
        a neighbour on one side only."""
        row = self.rows[d]
        out = []
        for k, v in enumerate(row):
            if v is not None:
                out.append(v)
                continue
            lo = next((j for j in range(k - 1, -1, -1) if row[j] is not None), None)
            hi = next((j for j in range(k + 1, len(row)) if row[j] is not None), None)
            if lo is None:
                out.append(row[hi])  # type: ignore[index, arg-type]
            elif hi is None:
                out.append(row[lo])  # type: ignore[arg-type]
            else:
                w = (MONTHS[k] - MONTHS[lo]) / (MONTHS[hi] - MONTHS[lo])
                out.append(row[lo] + w * (row[hi] - row[lo]))  # type: ignore[operator]
        return out


@pytest.fixture(scope="module")
def raw(data_dir: Path) -> Csv:
    return Csv(data_dir / "yields" / "par_yield_curve.csv")


@pytest.fixture(scope="module")
def history(data_dir: Path) -> ParYieldHistory:
    return load_par_yields(data_dir / "yields" / "par_yield_curve.csv")


@pytest.fixture(scope="module")
def snapshot(data_dir: Path) -> MarketSnapshot:
    return load_snapshot(AS_OF, data_dir=data_dir)


@pytest.fixture(scope="module")
def ficc_set(history: ParYieldHistory, snapshot: MarketSnapshot) -> ScenarioSet:
    """The FICC default: 3-day changes, 10-year look-back, absolute, automatic stress."""
    return build_scenarios(history, snapshot, ScenarioSpec(mode="historical", horizon_days=3))


def _day(value: np.datetime64) -> date:
    return date.fromisoformat(str(value))


def _as_of_par(raw: Csv) -> list[float]:
    return [v / 100.0 for v in raw.rows[AS_OF]]  # type: ignore[operator]


# --- windows ----------------------------------------------------------------------------------

def test_ten_year_lookback_window_count(ficc_set: ScenarioSet, raw: Csv) -> None:
    """One scenario per published start day ``d`` of the look-back whose window ``d`` -> ``d + 3``
    published days ends by the as-of date.

    Look-back: 10 years of 365.25 days, 3,652 calendar days (rounded), so the first start day
    is 2014-06-27 (the calendar anniversary 2014-06-26 is one day earlier because the decade
    holds three leap days).  Counted here from the CSV: 2,501 published days from 2014-06-27
    to 2024-06-26, of which the last three cannot start a 3-day window -> 2,498 (about 250 a
    year for ten years).
    """
    first = AS_OF - timedelta(days=3652)
    assert first == date(2014, 6, 27)
    starts = [d for d in raw.dates if first <= d <= AS_OF and raw.position[d] + 3 <= raw.position[AS_OF]]
    assert len(starts) == 2498
    base = ~ficc_set.is_stress
    assert int(base.sum()) == len(starts)
    assert [_day(d) for d in ficc_set.window_start[base]] == starts
    assert _day(ficc_set.window_end[base][-1]) == AS_OF


def test_every_window_spans_h_published_days(ficc_set: ScenarioSet, raw: Csv) -> None:
    """``window_end`` is the third published day after ``window_start`` (holidays skipped), for
    the look-back and the stressed scenarios alike."""
    for d0, d1 in zip(ficc_set.window_start, ficc_set.window_end, strict=True):
        assert raw.position[_day(d1)] - raw.position[_day(d0)] == 3


def test_each_scenario_is_the_as_of_curve_plus_its_recorded_change(
    ficc_set: ScenarioSet, snapshot: MarketSnapshot, raw: Csv
) -> None:
    """``par[s, k] = y_as_of[k] + (Y[end, k] - Y[start, k]) / 100`` for every scenario and all 13
    tenors, ``Y`` read from the CSV on the two recorded dates (filled where the history has a
    gap: 4M before 2022-10-19 and 2M before 2018-10-16 lie inside this look-back)."""
    as_of_par = _as_of_par(raw)
    assert snapshot.tenors == TENORS  # all 13 published on 2024-06-26
    assert np.array_equal(snapshot.par_yields, np.array(as_of_par))
    filled_some = 0
    for s in range(ficc_set.size):
        d0, d1 = _day(ficc_set.window_start[s]), _day(ficc_set.window_end[s])
        y0, y1 = raw.filled(d0), raw.filled(d1)
        filled_some += any(v is None for v in raw.rows[d0])
        expected = [as_of_par[k] + (y1[k] - y0[k]) / 100.0 for k in range(13)]
        assert ficc_set.par_yields[s] == pytest.approx(expected, abs=1e-12), ficc_set.label(s)
    assert filled_some > 500  # the fill really was exercised


def test_scenario_labels_keep_the_dates(ficc_set: ScenarioSet) -> None:
    """``label(s)`` names the two history dates, and marks the stressed scenarios."""
    assert ficc_set.label(0) == f"{ficc_set.window_start[0]}..{ficc_set.window_end[0]}"
    last = ficc_set.size - 1
    assert ficc_set.label(last) == f"{ficc_set.window_start[last]}..{ficc_set.window_end[last]} (stress)"


def test_curves_match_the_scenario_count(ficc_set: ScenarioSet) -> None:
    assert ficc_set.curves.n_curves == ficc_set.size == ficc_set.par_yields.shape[0]


# --- shift types ------------------------------------------------------------------------------

def test_relative_shifts(history: ParYieldHistory, snapshot: MarketSnapshot, raw: Csv) -> None:
    """Displaced relative change (displacement c = 1 percentage point by default)::

        par = (y_as_of + c) * (Y_end + c) / (Y_start + c) - c       (decimals)

    checked for every one-year-look-back scenario against the CSV; worked example on the
    first window: if the 10Y went 2.50% -> 2.60% with the as-of 10Y at 4.32%, the scenario is
    (5.32%) * (3.60 / 3.50) - 1% = 4.472% (a 15.2 bp move, not the 10 bp absolute one)."""
    assert math.isclose((0.0432 + 0.01) * (0.0360 / 0.0350) - 0.01, 0.04472, rel_tol=1e-12)
    spec = ScenarioSpec(mode="historical", horizon_days=3, lookback_years=1.0, shift="relative", stress="none")
    scen = build_scenarios(history, snapshot, spec)
    assert not scen.is_stress.any()
    c = 0.01
    as_of_par = _as_of_par(raw)
    for s in range(scen.size):
        y0 = raw.filled(_day(scen.window_start[s]))
        y1 = raw.filled(_day(scen.window_end[s]))
        expected = [(as_of_par[k] + c) * (y1[k] / 100 + c) / (y0[k] / 100 + c) - c for k in range(13)]
        assert scen.par_yields[s] == pytest.approx(expected, abs=1e-12)


def test_relative_and_absolute_differ_when_levels_differ(history: ParYieldHistory, snapshot: MarketSnapshot) -> None:
    """A relative shift scales a past move by (today's level + c) / (then level + c): with
    rates near 5% today and near zero in 2021 and early 2022, the relative moves of the last
    three years are larger on average at the short end (the 3M tenor)."""
    spec_a = ScenarioSpec(mode="historical", horizon_days=3, lookback_years=3.0, stress="none")
    spec_r = ScenarioSpec(mode="historical", horizon_days=3, lookback_years=3.0, shift="relative", stress="none")
    move_a = np.abs(build_scenarios(history, snapshot, spec_a).par_yields - snapshot.par_yields)
    move_r = np.abs(build_scenarios(history, snapshot, spec_r).par_yields - snapshot.par_yields)
    k3m = TENORS.index("3M")
    assert move_r[:, k3m].mean() > 1.5 * move_a[:, k3m].mean()


# --- stressed period --------------------------------------------------------------------------

def test_named_stress_month_gives_exactly_that_months_windows(
    history: ParYieldHistory, snapshot: MarketSnapshot, raw: Csv
) -> None:
    """``stress="2020-03"``: one stressed scenario per published day of March 2020 (22 days,
    2020-03-02 .. 2020-03-31), appended after the base scenarios, each starting on that day."""
    spec = ScenarioSpec(mode="historical", horizon_days=3, lookback_years=1.0, stress="2020-03")
    scen = build_scenarios(history, snapshot, spec)
    march = [d for d in raw.dates if (d.year, d.month) == (2020, 3)]
    assert len(march) == 22
    n = len(march)
    assert scen.is_stress[-n:].all() and not scen.is_stress[:-n].any()
    assert [_day(d) for d in scen.window_start[scen.is_stress]] == march
    assert scen.stress_period == (date(2020, 3, 2), date(2020, 3, 31))
    as_of_par = _as_of_par(raw)
    for s in np.flatnonzero(scen.is_stress):
        y0, y1 = raw.filled(_day(scen.window_start[s])), raw.filled(_day(scen.window_end[s]))
        expected = [as_of_par[k] + (y1[k] - y0[k]) / 100.0 for k in range(13)]
        assert scen.par_yields[s] == pytest.approx(expected, abs=1e-12)


def test_named_stress_range_and_year(history: ParYieldHistory, snapshot: MarketSnapshot, raw: Csv) -> None:
    """``"2008-09-15:2008-10-15"`` (a range) and ``"2008"`` (a year) select the published days in
    them."""
    for text, lo, hi in (("2008-09-15:2008-10-15", date(2008, 9, 15), date(2008, 10, 15)),
                         ("2008", date(2008, 1, 1), date(2008, 12, 31))):
        spec = ScenarioSpec(mode="historical", horizon_days=3, lookback_years=1.0, stress=text)
        scen = build_scenarios(history, snapshot, spec)
        days = [d for d in raw.dates if lo <= d <= hi]
        assert [_day(d) for d in scen.window_start[scen.is_stress]] == days


def test_auto_stress_window_is_the_most_severe_year(ficc_set: ScenarioSet, raw: Csv) -> None:
    """Automatic stress: the 250 consecutive start days, anywhere in the history up to the
    as-of date, with the largest mean squared 3-day change over the 13 (filled) tenors.

    Recomputed here with plain Python sums over the CSV; for 3-day changes it is the year
    from July 2007 to July 2008 (the credit crisis before Lehman), flagged and appended after
    the 2,498 look-back scenarios.
    """
    days = [d for d in raw.dates if d <= AS_OF]
    filled = [raw.filled(d) for d in days]
    h, w = 3, 250
    score = [math.fsum((filled[i + h][k] - filled[i][k]) ** 2 for k in range(13)) for i in range(len(days) - h)]
    window = math.fsum(score[:w])
    best, best_start = window, 0
    for i in range(1, len(score) - w + 1):
        window += score[i + w - 1] - score[i - 1]
        if window > best + 1e-9:
            best, best_start = window, i
    expected = days[best_start: best_start + w]
    stressed = ficc_set.is_stress
    assert int(stressed.sum()) == w
    assert stressed[-w:].all() and not stressed[:-w].any()
    assert [_day(d) for d in ficc_set.window_start[stressed]] == expected
    assert ficc_set.stress_period == (expected[0], expected[-1])
    assert (expected[0].year, expected[0].month) == (2007, 7)
    assert (expected[-1].year, expected[-1].month) == (2008, 7)


def test_no_stress(history: ParYieldHistory, snapshot: MarketSnapshot) -> None:
    scen = build_scenarios(history, snapshot, ScenarioSpec(mode="historical", horizon_days=2, lookback_years=1.0, stress="none"))
    assert not scen.is_stress.any()
    assert scen.stress_period is None


@pytest.mark.parametrize(
    "text",
    [
        "2020-13",  # no 13th month
        "2020-00",
        "2020-3",  # month needs two digits
        "March 2020",
        "2009-03-31:2008-09-01",  # reversed range
        "2008-02-30:2008-03-31",  # no such day
        "2030",  # after the as-of date: no history
        "1980-01",  # before the history starts
    ],
)
def test_bad_stress_periods_raise_input_error(text: str, history: ParYieldHistory, snapshot: MarketSnapshot) -> None:
    with pytest.raises(InputError) as err:
        build_scenarios(history, snapshot, ScenarioSpec(mode="historical", horizon_days=3, lookback_years=1.0, stress=text))
    assert err.value.field == "stress"
    assert text in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"horizon_days": 0}, "horizon_days"), ({"lookback_years": 0.0}, "lookback_years"), ({"shift": "log"}, "shift")],
)
def test_bad_specs_raise_input_error(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError) as err:
        ScenarioSpec(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_lookback_longer_than_the_history(history: ParYieldHistory, snapshot: MarketSnapshot, raw: Csv) -> None:
    """A 50-year look-back from 2024 reaches before 1990: it uses every published day from the
    first one (1990-01-02) instead of failing; the count is all days up to the as-of minus 3."""
    scen = build_scenarios(history, snapshot, ScenarioSpec(mode="historical", horizon_days=3, lookback_years=50.0, stress="none"))
    assert _day(scen.window_start[0]) == raw.dates[0] == date(1990, 1, 2)
    assert scen.size == raw.position[AS_OF] + 1 - 3
