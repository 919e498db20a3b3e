"""The repo-financed reference book (``REPO10Y``, :mod:`xmargin.validation.books`).

Checked against hand calculations from the real data files read here with :mod:`csv`:
the roll rule on the bond-market calendar, the repo interest over a 3-business-day horizon
(ACT/360 simple interest, the U.S. money-market convention of the SIFMA Master Repurchase
Agreement: "Price Differential ... calculated on the basis of a 360-day year and the actual
number of days"), and the engine's realised P&L and margin of the book against the outright
note's (the only difference is the cash leg, whose value is the repurchase price discounted).
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from xmargin.errors import InputError, MissingMarketDataError
from xmargin.margin.calculator import margins_for_positions
from xmargin.market.history import TENORS
from xmargin.market.snapshot import load_snapshot
from xmargin.portfolio.book import Account
from xmargin.scenarios.historical import filled_history
from xmargin.validation import Leg, instrument_on
from xmargin.validation.backtest import EngineSpec, _market, day_context
from xmargin.validation.books import RolledRepo, financing_accrual
from xmargin.workflow import Environment

D = date


def _rates(path: Path) -> dict[date, float]:
    with path.open() as fh:
        return {date.fromisoformat(r[0]): float(r[1]) for r in list(csv.reader(fh))[1:] if r and r[1]}


def _par10y(data_dir: Path, day: date) -> float:
    with (data_dir / "yields" / "par_yield_curve.csv").open() as fh:
        rows = csv.DictReader(fh)
        return next(float(r["10Y"]) for r in rows if r["date"] == day.isoformat())


def test_overnight_roll_rule_over_a_weekend_and_juneteenth(data_dir: Path) -> None:
    """Overnight: every business day is a roll date; 2022-06-20 (Juneteenth observed, bond market
    closed) is skipped, so the repo struck on Thursday 06-16 runs from its T+1 start, Friday
    06-17, to Tuesday 06-21 (4 nights).  The day's repo is on the day's 10-year par note (the
    ``OUT10Y`` leg's note) at the day's SOFR, cash 98% of about par."""
    book = RolledRepo(D(2022, 6, 13), haircut=0.02)
    assert book.roll_dates(D(2022, 6, 24)) == [D(2022, 6, d) for d in (13, 14, 15, 16, 17, 21, 22, 23, 24)]
    sofr = _rates(data_dir / "sofr" / "sofr.csv")
    for day, start, end in ((D(2022, 6, 16), D(2022, 6, 17), D(2022, 6, 21)),
                            (D(2022, 6, 17), D(2022, 6, 21), D(2022, 6, 22))):
        snap = load_snapshot(day, data_dir=data_dir)
        repo = instrument_on(Leg(0, 1e8, book), 0, snap, 3)
        note = instrument_on(Leg(0, 1e8, par_tenor_months=120), 0, snap, 3)
        assert (repo.start, repo.end) == (start, end)  # type: ignore[union-attr]
        assert repo.collateral == note  # type: ignore[union-attr]
        assert repo.collateral.coupon == pytest.approx(_par10y(data_dir, day) / 100.0)  # type: ignore[union-attr]
        assert repo.rate == pytest.approx(sofr[day] / 100.0)  # type: ignore[union-attr]
        assert repo.cash_per_100 == pytest.approx(98.0, abs=0.02)  # type: ignore[union-attr]


def test_weekly_term_repo_rolls_at_maturity(data_dir: Path) -> None:
    """A 7-day term from Monday 2022-06-13: the next roll falls on 06-20 (closed), so it is
    06-21; between rolls the book keeps the repo (and note, and rate) of 06-13; on 06-21 it
    holds a new repo on the new par note at 06-21's SOFR."""
    book = RolledRepo(D(2022, 6, 13), term_days=7)
    assert book.roll_dates(D(2022, 7, 5)) == [D(2022, 6, 13), D(2022, 6, 21), D(2022, 6, 28), D(2022, 7, 5)]
    sofr = _rates(data_dir / "sofr" / "sofr.csv")
    held = {d: book.repo_on(load_snapshot(d, data_dir=data_dir)) for d in (D(2022, 6, 13), D(2022, 6, 17), D(2022, 6, 21))}
    assert held[D(2022, 6, 17)] == held[D(2022, 6, 13)]
    assert (held[D(2022, 6, 13)].start, held[D(2022, 6, 13)].end) == (D(2022, 6, 14), D(2022, 6, 22))
    assert held[D(2022, 6, 13)].rate == pytest.approx(sofr[D(2022, 6, 13)] / 100.0)  # 0.73%
    new = held[D(2022, 6, 21)]
    assert new != held[D(2022, 6, 17)] and new.start == held[D(2022, 6, 17)].end  # no gap, no overlap
    assert new.rate == pytest.approx(sofr[D(2022, 6, 21)] / 100.0) and new.collateral.maturity == D(2032, 6, 21)


@pytest.mark.parametrize(("anchor", "day", "end", "legs", "series"), [
    # SOFR; the Fed's 75 bp rise of 2022-07-27 reaches SOFR on 07-28: three repos, the last over a weekend
    (D(2022, 7, 1), D(2022, 7, 26), D(2022, 7, 29),
     [(D(2022, 7, 26), 1), (D(2022, 7, 27), 1), (D(2022, 7, 28), 3)], "sofr/sofr.csv"),
    # before SOFR: the effective fed funds rate (documented proxy); Friday's repo runs 3 nights
    (D(2008, 12, 1), D(2008, 12, 11), D(2008, 12, 16),
     [(D(2008, 12, 11), 3), (D(2008, 12, 12), 1), (D(2008, 12, 15), 1)], "fedfunds/dff.csv"),
])
def test_repo_interest_over_3_days_by_hand(data_dir: Path, anchor: date, day: date, end: date,
                                           legs: list[tuple[date, int]], series: str) -> None:
    """Repo interest on $100m of collateral, 2% haircut, from settle(day) to settle(day + 3
    business days): ``sum cash x rate_k x nights_k / 360``, each overnight repo at its own
    roll date's fixing (read from the CSV here), cash = 98% of the par note (about $98m)."""
    rates = _rates(data_dir / series)
    hand = sum(0.98e8 * rates[r] / 100.0 * nights / 360.0 for r, nights in legs)
    book = RolledRepo(anchor, haircut=0.02)
    engine = 1e8 * financing_accrual(book, day, end, str(data_dir))
    assert engine == pytest.approx(hand, rel=3e-4)  # cash is par +- 2 cents per 100 (dirty, T+1)
    assert sum(n for _, n in legs) == 5


def test_repo_book_pnl_and_margin_against_the_outright_note(data_dir: Path) -> None:
    """The engine's realised 3-day P&L of the financed book is the note's plus the cash leg's,
    ``-R x [DF'(end)/DF'(settle) - DF(end)/DF(settle)]`` (R: repurchase amount, DF on the day's
    curve and on the curve 3 days later, same dates); and its FICC margin differs from the
    note's by at most the largest such cash-leg move over the day's scenarios (a VaR is a
    quantile, which moves by no more than the largest change of any scenario P&L).

    Why it is small, by hand: R = $98m, one night (tau = 1/365), a 25 bp move of the overnight
    rate: 98e6 x 0.0025 / 365 = $671, against a note VaR of about $2.7m."""
    day, anchor = D(2022, 7, 26), D(2022, 7, 1)
    env = Environment.load(day, data_dir=data_dir)
    accounts = (Account("OUT10Y", "REF", "house", True), Account("REPO10Y", "REF", "house", True))
    legs = (Leg(0, 1e8, par_tenor_months=120), Leg(1, 1e8, RolledRepo(anchor, haircut=0.02)))
    spec = EngineSpec(data_dir, env.params, env.eligibility, accounts, legs, anchor, 3, ("ficc",), "none", pnl="model")
    history, _ = _market(data_dir)
    row = int(np.searchsorted(history.dates, np.datetime64(day)))
    ctx = day_context(spec, row, [0, 0])
    snap, repo = ctx.context.snapshot, ctx.context.universe.instruments[1]
    dates = np.array([snap.settle, repo.end], dtype="datetime64[D]")  # type: ignore[union-attr]
    later = snap.curves_from_par(filled_history(history)[row + 3][[TENORS.index(t) for t in snap.tenors]][None, :] / 100.0)
    ratio = [float(df[0, 1] / df[0, 0]) for df in (snap.curve.discount_dates(dates), later.discount_dates(dates))]
    r_amount = 1e8 * repo.repurchase_per_100 / 100.0  # type: ignore[union-attr]
    pnl = np.asarray(ctx.positions @ ctx.realised).ravel()
    assert pnl[1] - pnl[0] == pytest.approx(-r_amount * (ratio[1] - ratio[0]), rel=1e-6, abs=0.01)
    assert abs(pnl[1] - pnl[0]) < 1e-3 * abs(pnl[0])

    scen = snap.curves_from_par(ctx.context.ficc_scenarios.par_yields)
    cash_moves = r_amount * np.abs(scen.discount_dates(dates)[:, 1] / scen.discount_dates(dates)[:, 0] - ratio[0])
    m = margins_for_positions(ctx.context, ctx.positions, np.zeros(2, bool)).ficc_standalone
    assert m[0] > 1e6
    assert abs(m[1] - m[0]) <= 1.05 * cash_moves.max()
    assert cash_moves.max() < 5e-3 * m[0]  # $5,002 against $2.75m on this day


def test_bad_repo_book_terms_are_named() -> None:
    with pytest.raises(InputError, match="beyond the 1-month collateral's maturity") as err:
        RolledRepo(D(2022, 6, 13), tenor_months=1, term_days=40)
    assert err.value.field == "term_days"
    for kwargs, field in (({"term_days": 0}, "term_days"), ({"haircut": 0.6}, "haircut"),
                          ({"haircut": -0.01}, "haircut"), ({"tenor_months": 0}, "tenor_months"),
                          ({"spread_bp": 900.0}, "spread_bp")):
        with pytest.raises(InputError) as err:
            RolledRepo(D(2022, 6, 13), **kwargs)  # type: ignore[arg-type]
        assert err.value.field == field
    with pytest.raises(InputError, match="before the repo book's first roll date"):
        RolledRepo(D(2022, 6, 13)).roll_date(D(2022, 6, 10))


def test_missing_or_stale_overnight_rate_is_an_error(data_dir: Path, tmp_path: Path) -> None:
    """A data directory with the real curves but no SOFR/EFFR files, then with an EFFR file
    (synthetic, two rows: the only way to make a fixing stale) that stops a month early."""
    (tmp_path / "yields").mkdir()
    (tmp_path / "yields" / "par_yield_curve.csv").symlink_to(data_dir / "yields" / "par_yield_curve.csv")
    book = RolledRepo(D(2008, 12, 1))
    with pytest.raises(MissingMarketDataError, match="no SOFR or EFFR history for the repo rate on 2008-12-01"):
        book.repo_on(load_snapshot(D(2008, 12, 1), data_dir=tmp_path))
    (tmp_path / "fedfunds").mkdir()
    (tmp_path / "fedfunds" / "dff.csv").write_text("date,dff_pct\n2008-10-30,1.00\n2008-10-31,0.90\n")
    with pytest.raises(MissingMarketDataError, match=r"dff.csv: the last EFFR fixing on or before 2008-12-02 is from 2008-10-31"):
        RolledRepo(D(2008, 12, 2)).repo_on(load_snapshot(D(2008, 12, 2), data_dir=tmp_path))
