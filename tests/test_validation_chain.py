"""The validation record runs FICC's path-dependent add-ons across calendar years.

Hand check (synthetic margins, so every number can be worked out on paper): one account, FICC
model, horizon 1 day, Backtesting Charge window 10 days at a 90% target (k = floor(0.1 n) + 1),
Portfolio Differential off.  Year A: 10 days of margin 10, losses of 12 (day 7) and 11 (day 8):
deficiencies 2 and 1.  Year B: 10 days of margin 10, no loss.

* Year A alone: on day 8 the known backtests are days 0..7 (n = 8, one miss: 87.5% < 90%),
  k = floor(0.8) + 1 = 1, charge = the largest deficiency = 2; on day 9, days 0..8 (n = 9,
  two misses), k = 1, charge 2.
* Year B's first day, chained: known days are year A's 0..9 (n = 10, two misses: 80% < 90%),
  k = floor(1.0) + 1 = 2, charge = the second largest deficiency = 1, and so on while both
  misses are among the last 10 known days: through B's day 7 (known: A's 7..9, B's 0..6).  On
  B's day 8 the window is A's 8..9 and B's 0..7: one miss, 90% is not below 90%: no charge.
* Year B run alone starts with no history: no charge.  A year not following the previous one
  (a gap) starts afresh too.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from xmargin.margin.params import MarginParams
from xmargin.portfolio.book import Account
from xmargin.validation.report import YearRun, chain_addons
from xmargin.validation.result import assemble

PARAMS = MarginParams()
PARAMS = replace(PARAMS, ficc=replace(PARAMS.ficc, portfolio_differential=False, backtesting_window_days=10,
                                      backtesting_target=0.9))
ACCOUNTS = (Account("A", "M", "house", False),)


def _run(year: int, pnl: list[float]) -> YearRun:
    n = len(pnl)
    dates = np.arange(np.datetime64(f"{year}-01-02"), np.datetime64(f"{year}-01-02") + n)
    comps = np.zeros((10, 1))  # DAILY_COMPONENTS x accounts per day; ficc_requirement set below
    out = []
    for x in pnl:
        c = comps.copy()
        c[8] = 10.0  # ficc_requirement
        out.append((np.array([10.0]), np.array([x]), c))
    res = assemble("ficc", ACCOUNTS, PARAMS, 1, dates, out, "synthetic", ())
    return YearRun(year, {"ficc": res}, 0.0)


def test_backtesting_charge_runs_across_years() -> None:
    a = _run(2021, [0.0] * 7 + [-12.0, -11.0, 0.0])
    b = _run(2022, [0.0] * 10)
    np.testing.assert_allclose(a.results["ficc"].components["backtesting_charge"][0], [0] * 8 + [2.0, 2.0])
    np.testing.assert_allclose(b.results["ficc"].components["backtesting_charge"][0], 0.0)
    chained = chain_addons([b, a], PARAMS)  # any order in, calendar order out
    assert [r.year for r in chained] == [2021, 2022]
    np.testing.assert_allclose(chained[0].results["ficc"].margin[0], a.results["ficc"].margin[0])
    np.testing.assert_allclose(chained[1].results["ficc"].components["backtesting_charge"][0], [1.0] * 8 + [0.0] * 2)
    np.testing.assert_allclose(chained[1].results["ficc"].margin[0], [11.0] * 8 + [10.0] * 2)
    gap = chain_addons([a, _run(2023, [0.0, 0.0, 0.0])], PARAMS)
    np.testing.assert_allclose(gap[1].results["ficc"].components["backtesting_charge"][0], 0.0)


def test_runs_without_components_are_kept() -> None:
    a = _run(2021, [0.0] * 3)
    bare = replace(a.results["ficc"], components={})
    out = chain_addons([YearRun(2021, {"ficc": bare}, 0.0)], PARAMS)
    assert out[0].results["ficc"] is bare
    with pytest.raises(KeyError):
        _ = out[0].results["cme"]
