"""FHS of the residual factors (scenarios/residual_filter.py), checked by hand.

The EWMA is recomputed here with a plain Python loop (RiskMetrics recursion, skipping the
unobserved days) and the window scales from it; the delivery-month basis change is rebuilt
from the shared ZN.csv closes and the fair value of the same contract.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.config import PAR_YIELDS_FILE
from xmargin.errors import InputError
from xmargin.margin.params import load_params
from xmargin.market.futures_history import load_futures_history
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import load_snapshot
from xmargin.masterdata import load_master
from xmargin.reference.futures import TreasuryFuture
from xmargin.scenarios.residual import (
    ResidualParams,
    daily_basis_changes,
    ewma_start_year,
    fair_value_on,
    residual_risk,
)
from xmargin.scenarios.residual_filter import (
    ResidualFilter,
    observed_ewma_volatility,
    residual_scales,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _loop_ewma(x: list[float], decay: float, seed_days: int) -> list[float]:
    """sigma after each row, skipping NaN (variance carried), NaN before the first observation."""
    seen = [v for v in x if v == v]
    seed = sum(v * v for v in seen[:seed_days]) / len(seen[:seed_days])
    var, out, started = seed, [], False
    for v in x:
        if v == v:
            var = decay * var + (1 - decay) * v * v
            started = True
        out.append(var ** 0.5 if started else float("nan"))
    return out


def test_observed_ewma_matches_a_plain_loop() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 0.1, 400)
    x[[0, 1, 50, 51, 52, 300]] = np.nan
    x[200:230] *= 4.0  # a volatile month
    got = observed_ewma_volatility(x, 0.97, seed_days=20)
    want = _loop_ewma(list(x), 0.97, 20)
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[:2]).all() and got[52] == got[49]  # carried over the gap, unchanged
    assert got[229] > 2.0 * got[199]  # the volatile month raises it


def test_scales_by_hand() -> None:
    dates = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-11"))
    vol = np.array([np.nan, 0.1, 0.1, 0.2, 0.2, 0.05, 0.05, 0.4, 0.4, 0.3])
    ends = dates[[1, 3, 5, 0, 7]]
    flt = ResidualFilter(date(2020, 1, 10), 0.97, 5.0, np.array([True, True, True, True, False]))
    got = residual_scales(vol, dates, ends, flt)
    # today 0.3: 0.3/0.1, 0.3/0.2, min(0.3/0.05, 5), unknown vol at the end -> 1, stress -> 1
    np.testing.assert_allclose(got, [3.0, 1.5, 5.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def market(data_dir: Path):  # type: ignore[no-untyped-def]
    return load_par_yields(data_dir / PAR_YIELDS_FILE), load_master(data_dir), load_futures_history(data_dir / "futures")


def test_delivery_month_changes_only_feed_the_volatility(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    """2020-03-13: ZNH20 is in its delivery month; the shared series still quotes it (SOURCE.md)."""
    history, master, futures = market
    zn = futures.roots["ZN"]
    closes = {r["date"]: float(r["close"]) for r in csv.DictReader((data_dir / "futures" / "ZN.csv").open())}
    days = np.array(["2020-03-12", "2020-03-13"], dtype="datetime64[D]")
    fv = fair_value_on("ZN", np.array([202003, 202003]), days, history, master)
    want = (closes["2020-03-13"] - fv[1]) - (closes["2020-03-12"] - fv[0])
    row = int(np.searchsorted(history.dates, days[1]))
    assert np.isnan(daily_basis_changes(zn, history, master, False)[row])  # never a scenario change
    assert daily_basis_changes(zn, history, master, True)[row] == pytest.approx(want, abs=1e-12)
    assert abs(want) > 0.3  # the March 2020 dislocation: half a point in a day


def test_filtered_changes_are_the_raw_ones_times_the_volatility_ratio(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    history, master, futures = market
    snap = load_snapshot(date(2020, 3, 20), data_dir=data_dir)
    starts = np.array(["2013-06-03", "2019-01-02", "2008-10-01"], dtype="datetime64[D]")
    ends = np.array(["2013-06-06", "2019-01-07", "2008-10-06"], dtype="datetime64[D]")
    insts = [TreasuryFuture("ZN", 2020, 6)]
    flt = ResidualFilter(snap.as_of, 0.97, 5.0, np.array([True, True, False]))  # the 2008 window: stress
    raw = residual_risk(insts, snap, master, history, ResidualParams(), [(starts, ends)])
    fil = residual_risk(insts, snap, master, history, ResidualParams(), [(starts, ends)], [flt])
    daily = daily_basis_changes(futures.roots["ZN"], history, master, True, ewma_start_year(ends))
    assert ewma_start_year(ends) == 2006 and np.isnan(daily[: int(np.searchsorted(history.dates, np.datetime64("2006-01-03")))]).all()
    sigma = _loop_ewma(list(daily), 0.97, 250)
    full = _loop_ewma(list(daily_basis_changes(futures.roots["ZN"], history, master, True)), 0.97, 250)
    assert sigma[-1] == pytest.approx(full[-1], rel=1e-5)  # the warm-up start is forgotten
    row = {str(d): k for k, d in enumerate(history.dates)}
    today = sigma[row["2020-03-20"]]
    want = [min(today / sigma[row[str(e)]], 5.0) for e in ends[:2]] + [1.0]
    f = raw.factors.index("basis:ZN")
    np.testing.assert_allclose(fil.ficc_changes[f], raw.ficc_changes[f] * np.array(want), rtol=1e-9)
    assert want[1] > 1.5  # March 2020's basis is replayed well above early 2019's
    off = residual_risk(insts, snap, master, history, ResidualParams(delivery_month_volatility=False),
                        [(starts, ends)], [flt])
    assert not np.allclose(off.ficc_changes[f], fil.ficc_changes[f])  # the switch is read


def test_filter_toml(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[residual]\nfiltered = false\ndecay = 0.94\nmax_scale = 3\n")
    assert load_params(path).residual == replace(ResidualParams(), filtered=False, decay=0.94, max_scale=3.0)
    path.write_text("[residual]\ndecay = 1.0\n")
    with pytest.raises(InputError, match="outside") as err:
        load_params(path)
    assert err.value.field == "residual.decay"
