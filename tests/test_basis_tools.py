"""Basis tools of issue 12 (docs/methodology.md 15.2): the delivery-month proxy for windows without
the front contract, the residual FHS scale floor and the long-run volatility floor.

Hand references: basis changes from the shared ZN.csv closes minus the model fair value of the
named contract (``fair_value_on``, bounded against the full pricer in tests/test_residual.py);
scales worked by hand from their definitions; the long-run volatility as a root mean square
written out in the test.
"""

from __future__ import annotations

import csv
import math
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
from xmargin.scenarios.futures_basis import basis_changes, delivery_month_changes, fair_value_on
from xmargin.scenarios.residual import ResidualParams, long_run_volatility, residual_risk
from xmargin.scenarios.residual_filter import ResidualFilter, residual_scales

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def market(data_dir: Path):  # type: ignore[no-untyped-def]
    return load_par_yields(data_dir / PAR_YIELDS_FILE), load_master(data_dir), load_futures_history(data_dir / "futures")


def test_delivery_month_proxy_by_hand(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    """2020-03-09..12: ZNH20 is in its delivery month (no front-contract change); the proxy is
    ZNH20's own basis change from the CSV closes.  2020-02-03..06 (ZNH20 the front) is unchanged."""
    history, master, futures = market
    zn = futures.roots["ZN"]
    closes = {r["date"]: float(r["close"]) for r in csv.DictReader((data_dir / "futures" / "ZN.csv").open())}
    starts = np.array(["2020-03-09", "2020-02-03"], dtype="datetime64[D]")
    ends = np.array(["2020-03-12", "2020-02-06"], dtype="datetime64[D]")
    front = basis_changes(zn, history, master, starts, ends)
    assert np.isnan(front[0]) and np.isfinite(front[1])
    fv = fair_value_on("ZN", np.array([202003, 202003]), np.r_[starts[0], ends[0]], history, master)
    want = (closes["2020-03-12"] - fv[1]) - (closes["2020-03-09"] - fv[0])
    proxy = delivery_month_changes(zn, history, master, starts, ends)
    assert proxy[0] == pytest.approx(want, abs=1e-12) and np.isnan(proxy[1])
    snap = load_snapshot(date(2020, 4, 1), data_dir=data_dir)
    insts = [TreasuryFuture("ZN", 2020, 6)]
    on = residual_risk(insts, snap, master, history, ResidualParams(), [(starts, ends)])
    off = residual_risk(insts, snap, master, history,
                        ResidualParams(delivery_month_changes=False, roll_window_changes=False), [(starts, ends)])
    np.testing.assert_allclose(on.ficc_changes[0], [want, front[1]], atol=1e-12)
    np.testing.assert_allclose(off.ficc_changes[0], [0.0, front[1]], atol=1e-12)
    assert any("delivery-month basis change (proxy)" in n for n in on.notes)
    assert on.coverage["basis:ZN"] == 1.0 and off.coverage["basis:ZN"] == 0.5


def test_no_proxy_from_per_contract_settlements(tmp_path: Path, market) -> None:  # type: ignore[no-untyped-def]
    """A per-contract file names each contract: a delivery-month row is never a stand-in."""
    history, master, _ = market
    path = tmp_path / "settle.csv"
    path.write_text("date,symbol,settle\n2020-03-09,ZNH20,139.296875\n2020-03-12,ZNH20,136.5\n")
    zn = load_futures_history(path).roots["ZN"]
    got = delivery_month_changes(zn, history, master, np.array(["2020-03-09"], dtype="datetime64[D]"),
                                 np.array(["2020-03-12"], dtype="datetime64[D]"))
    assert np.isnan(got).all()


def test_scale_floor_and_volatility_floor_by_hand() -> None:
    dates = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-11"))
    vol = np.array([np.nan, 0.1, 0.1, 0.2, 0.2, 0.05, 0.05, 0.4, 0.4, 0.05])  # a calm today: 0.05
    ends = dates[[1, 3, 5, 7, 0]]
    rescale = np.array([True, True, True, True, True])
    plain = ResidualFilter(date(2020, 1, 10), 0.97, 5.0, rescale)
    # 0.05/0.1, 0.05/0.2, 0.05/0.05, 0.05/0.4, unknown at the end -> 1
    np.testing.assert_allclose(residual_scales(vol, dates, ends, plain), [0.5, 0.25, 1.0, 0.125, 1.0])
    floor1 = replace(plain, min_scale=1.0)  # never scaled down
    np.testing.assert_allclose(residual_scales(vol, dates, ends, floor1), [1.0, 1.0, 1.0, 1.0, 1.0])
    half = replace(plain, min_scale=0.3)
    np.testing.assert_allclose(residual_scales(vol, dates, ends, half), [0.5, 0.3, 1.0, 0.3, 1.0])
    # today's 0.05 raised to 0.8 x long-run 0.25 = 0.2: 0.2/0.1, 0.2/0.2, min(0.2/0.05, 5)=4, 0.2/0.4
    vf = replace(plain, vol_floor=0.8)
    np.testing.assert_allclose(residual_scales(vol, dates, ends, vf, 0.25), [2.0, 1.0, 4.0, 0.5, 1.0])
    np.testing.assert_allclose(residual_scales(vol, dates, ends, vf, float("nan")), [0.5, 0.25, 1.0, 0.125, 1.0])
    # a volatile today above the floor keeps its own volatility
    np.testing.assert_allclose(residual_scales(vol, dates, ends, vf, 0.01), [0.5, 0.25, 1.0, 0.125, 1.0])
    assert vol[-1] == 0.05  # the caller's series is not modified


def test_long_run_volatility_by_hand() -> None:
    dates = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-08"))
    daily = np.array([9.0, 0.1, np.nan, -0.2, 0.2, 0.1, 9.0])
    got = long_run_volatility(daily, dates, dates[[3, 1]], date(2020, 1, 6))  # rows 1..5, NaN left out
    assert got == pytest.approx(math.sqrt((0.01 + 0.04 + 0.04 + 0.01) / 4))
    assert math.isnan(long_run_volatility(daily, dates, dates[:0], date(2020, 1, 6)))


def test_basis_tool_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[residual]\nmin_scale = 1\nvol_floor = 0.5\ndelivery_month_changes = false\n"
                    "roll_window_changes = true\nvol_date = \"start\"\n")
    assert load_params(path).residual == replace(ResidualParams(), min_scale=1.0, vol_floor=0.5,
                                                 delivery_month_changes=False, roll_window_changes=True,
                                                 vol_date="start")
    for text, name in (("min_scale = 1.5", "min_scale"), ("vol_floor = -0.1", "vol_floor"),
                       ("delivery_month_changes = 1", "delivery_month_changes"),
                       ("roll_window_changes = 1", "roll_window_changes"), ('vol_date = "mid"', "vol_date")):
        path.write_text(f"[residual]\n{text}\n")
        with pytest.raises(InputError) as err:
            load_params(path)
        assert err.value.field == f"residual.{name}"


def test_volatility_floor_in_the_scenarios(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    """2021-02-24 (a calm basis: EWMA 0.062 point a day against 0.091 over the decade): the filtered ZN basis changes with ``vol_floor = 1`` are the raw ones
    times ``min(max(sigma_today, RMS of the daily changes since the first window) / sigma_end, 5)``,
    sigma the EWMA written out as a loop here."""
    from xmargin.scenarios.futures_basis import daily_basis_changes, ewma_start_year

    history, master, futures = market
    snap = load_snapshot(date(2021, 2, 24), data_dir=data_dir)
    starts = np.array(["2013-06-03", "2016-11-09", "2018-02-05"], dtype="datetime64[D]")
    ends = np.array(["2013-06-06", "2016-11-14", "2018-02-08"], dtype="datetime64[D]")
    insts = [TreasuryFuture("ZN", 2021, 3)]
    flt = ResidualFilter(snap.as_of, 0.97, 5.0, np.ones(3, bool), vol_floor=1.0)
    params = ResidualParams(delivery_month_changes=False)
    raw = residual_risk(insts, snap, master, history, params, [(starts, ends)])
    fil = residual_risk(insts, snap, master, history, params, [(starts, ends)], [flt])
    daily = daily_basis_changes(futures.roots["ZN"], history, master, True, ewma_start_year(ends))
    var, sigma, seen = 0.0, [], [x for x in daily if x == x]
    var = sum(x * x for x in seen[:250]) / 250
    for x in daily:
        if x == x:
            var = 0.97 * var + 0.03 * x * x
        sigma.append(var ** 0.5)
    row = {str(d): k for k, d in enumerate(history.dates)}
    window = [x for x in daily[row["2013-06-03"]: row["2021-02-24"] + 1] if x == x]
    long_run = (sum(x * x for x in window) / len(window)) ** 0.5
    today = sigma[row["2021-02-24"]]
    assert today < long_run  # calm: the floor binds
    want = [min(max(today, long_run) / sigma[row[str(e)]], 5.0) for e in ends]
    np.testing.assert_allclose(fil.ficc_changes[0], raw.ficc_changes[0] * np.array(want), rtol=1e-9)
    # vol_date = "start": each change divided by the estimate at its window's start instead
    at_start = residual_risk(insts, snap, master, history, replace(params, vol_date="start"), [(starts, ends)],
                             [replace(flt, vol_date="start")])
    want = [min(max(today, long_run) / sigma[row[str(s)]], 5.0) for s in starts]
    np.testing.assert_allclose(at_start.ficc_changes[0], raw.ficc_changes[0] * np.array(want), rtol=1e-9)
    assert not np.allclose(at_start.ficc_changes[0], fil.ficc_changes[0])


def test_roll_window_proxy_by_hand(data_dir: Path, market) -> None:  # type: ignore[no-untyped-def]
    """2019-06-18..21: the continuous ZN series holds ZNM19 to its last trading day (06-19) and ZNU19
    from 06-20, so no contract has a price at both ends and the delivery-month proxy has none
    either.  ``roll_window_changes``: the sum of the window's one-contract days, ZNM19's 06-18..19
    and ZNU19's 06-20..21 basis changes from the CSV closes (the roll day 06-19..20 is missing);
    off (``roll_window_changes = false``; on is the default): no change.  A window with the front at both ends (2019-07-01..03) is unchanged."""
    from xmargin.scenarios.futures_basis import chained_basis_changes

    history, master, _ = market
    closes = {r["date"]: float(r["close"]) for r in csv.DictReader((data_dir / "futures" / "ZN.csv").open())}
    days = np.array(["2019-06-18", "2019-06-19", "2019-06-20", "2019-06-21"], dtype="datetime64[D]")
    fv_m = fair_value_on("ZN", np.full(2, 201906), days[:2], history, master)
    fv_u = fair_value_on("ZN", np.full(2, 201909), days[2:], history, master)
    want = ((closes["2019-06-19"] - fv_m[1]) - (closes["2019-06-18"] - fv_m[0])
            + (closes["2019-06-21"] - fv_u[1]) - (closes["2019-06-20"] - fv_u[0]))
    starts = np.array(["2019-06-18", "2019-07-01"], dtype="datetime64[D]")
    ends = np.array(["2019-06-21", "2019-07-03"], dtype="datetime64[D]")
    snap = load_snapshot(date(2020, 4, 1), data_dir=data_dir)
    insts = [TreasuryFuture("ZN", 2020, 6)]
    on = residual_risk(insts, snap, master, history, ResidualParams(roll_window_changes=True), [(starts, ends)])
    off = residual_risk(insts, snap, master, history, ResidualParams(roll_window_changes=False), [(starts, ends)])
    assert ResidualParams().roll_window_changes  # the default since session 6
    front = basis_changes(market[2].roots["ZN"], history, master, starts, ends)
    assert np.isnan(front[0]) and np.isfinite(front[1])
    np.testing.assert_allclose(on.ficc_changes[0], [want, front[1]], atol=1e-12)
    np.testing.assert_allclose(off.ficc_changes[0], [0.0, front[1]], atol=1e-12)
    assert any("windows that no contract spans" in n for n in on.notes)
    assert not any("windows that no contract spans" in n for n in off.notes)
    # the arithmetic: rows first + 1 .. last, NaN left out, none observed -> NaN
    daily = np.array([9.0, 0.1, np.nan, -0.2, 0.3, np.nan, np.nan])
    got = chained_basis_changes(daily, np.array([0, 1, 4]), np.array([3, 4, 6]))
    np.testing.assert_allclose(got[:2], [0.1 - 0.2, -0.2 + 0.3])
    assert np.isnan(got[2])


def test_residual_filter_takes_vol_date_from_the_parameters() -> None:
    """``[residual] vol_date`` reaches the filter of a filtered set (rescaling the look-back scenarios only)."""
    from types import SimpleNamespace

    from xmargin.pricing.residual_pnl import residual_filter

    spec = SimpleNamespace(mode="filtered")
    sset = SimpleNamespace(as_of=date(2021, 2, 24), spec=spec, is_stress=np.array([False, True, False]),
                           floor_mask=np.array([False, False, True]))
    flt = residual_filter(sset, replace(ResidualParams(), vol_date="start"))  # type: ignore[arg-type]
    assert flt is not None and flt.vol_date == "start" and flt.rescale.tolist() == [True, False, False]
    assert residual_filter(sset, ResidualParams()).vol_date == "start"  # the default  # type: ignore[arg-type, union-attr]
    assert residual_filter(sset, replace(ResidualParams(), vol_date="end")).vol_date == "end"  # type: ignore[arg-type, union-attr]
