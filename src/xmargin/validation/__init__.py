"""Model validation: coverage statistics shared by the backtest, procyclicality and default runs.

An **exception** is a day whose realised loss exceeds the margin held (``-pnl > margin``).
With ``N`` observations, ``x`` exceptions and the model's tail probability ``p = 1 - confidence``:

* **Kupiec proportion-of-failures test** (Kupiec 1995, "Techniques for verifying the accuracy
  of risk measurement models", J. Derivatives 3(2)): ``LR_pof = -2 ln[(1-p)^(N-x) p^x] +
  2 ln[(1-x/N)^(N-x) (x/N)^x]``, asymptotically chi-square with 1 degree of freedom.
* **Christoffersen independence test** (Christoffersen 1998, "Evaluating interval forecasts",
  Int. Economic Review 39(4)): from the transition counts ``n_ij`` (state ``i`` followed by
  ``j``, 1 = exception), ``pi_01 = n01 / (n00 + n01)``, ``pi_11 = n11 / (n10 + n11)``,
  ``pi = (n01 + n11) / (n00 + n01 + n10 + n11)``:
  ``LR_ind = -2 ln[(1-pi)^(n00+n10) pi^(n01+n11)] + 2 ln[(1-pi_01)^n00 pi_01^n01 (1-pi_11)^n10
  pi_11^n11]``, chi-square(1); ``LR_cc = LR_pof + LR_ind`` is chi-square(2).  (``0 ln 0 = 0``.)
* **Basel traffic light** (Basel Committee on Banking Supervision, "Supervisory framework for
  the use of 'backtesting' in conjunction with the internal models approach to market risk
  capital requirements", January 1996, Table 2): for 250 observations at 99%, green 0-4,
  yellow 5-9, red 10 or more exceptions.  The zones are where the binomial cumulative
  probability ``P(X <= x)`` first reaches 95% (yellow) and 99.99% (red); other window lengths
  and confidence levels use the same rule.

p-values come from :func:`scipy.stats.chi2.sf`.  Overlapping multi-day horizons (a 3-day P&L
every day) make consecutive outcomes dependent, so the chi-square calibration is only
approximate for them; :class:`~xmargin.validation.backtest.BacktestResult` also reports the
tests on the non-overlapping subsample (every ``h``-th day).

**Positions through history** (:class:`Leg`): positions are held constant.  A futures position
keeps its place on the curve (its ``k``-th nearby contract on the start date) and rolls:
Treasury futures ``h + 2`` business days before the first day of the delivery month (the
``h``-day horizon ends before first intention day), SOFR and Fed Funds futures ``h`` business
days before their last trading day.  Cash securities and repos drop out of the book once they
mature (end) on or before a day's settlement date.  A constant-maturity leg is a par bond
re-struck every day.  A :class:`~xmargin.validation.books.RolledRepo` leg holds, each day,
the repo of its latest roll date (a par note repo'd out, the repo rolled at maturity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
from scipy.stats import binom, chi2

from xmargin.margin.calibration import QUARTERLY
from xmargin.market.curve import par_bond
from xmargin.market.snapshot import MarketSnapshot
from xmargin.portfolio.book import Book
from xmargin.reference.calendar import add_business_days
from xmargin.reference.futures import TREASURY_FUTURES, TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.repo import Repo
from xmargin.reference.stir import RateFuture
from xmargin.validation.books import RolledRepo

BoolArray = npt.NDArray[np.bool_]

#: Basel 1996 zone thresholds on the binomial cumulative probability of the exception count.
YELLOW_CUMULATIVE = 0.95
RED_CUMULATIVE = 0.9999
BASEL_WINDOW = 250


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """A likelihood-ratio statistic, its degrees of freedom and chi-square p-value."""

    statistic: float
    dof: int
    p_value: float

    def rejects(self, level: float = 0.05) -> bool:
        return self.p_value < level

    def to_dict(self) -> dict[str, float]:
        return {"statistic": self.statistic, "dof": float(self.dof), "p_value": self.p_value}


def _xlogy(x: float, y: float) -> float:
    """``x ln y`` with ``0 ln 0 = 0``."""
    return 0.0 if x == 0 else float(x * np.log(y))


def kupiec_pof(exceptions: int, observations: int, p: float) -> LikelihoodRatioTest:
    """Kupiec's proportion-of-failures test of ``exceptions`` in ``observations`` at tail ``p``."""
    if observations <= 0:
        return LikelihoodRatioTest(float("nan"), 1, float("nan"))
    x, n = int(exceptions), int(observations)
    phat = x / n
    null = _xlogy(n - x, 1.0 - p) + _xlogy(x, p)
    alt = _xlogy(n - x, 1.0 - phat) + _xlogy(x, phat)
    stat = max(-2.0 * (null - alt), 0.0)
    return LikelihoodRatioTest(stat, 1, float(chi2.sf(stat, 1)))


def transition_counts(hits: npt.ArrayLike) -> tuple[int, int, int, int]:
    """``(n00, n01, n10, n11)``: day-to-day transitions of the exception indicator."""
    h = np.asarray(hits, dtype=bool)
    prev, nxt = h[:-1], h[1:]
    return (
        int(np.sum(~prev & ~nxt)),
        int(np.sum(~prev & nxt)),
        int(np.sum(prev & ~nxt)),
        int(np.sum(prev & nxt)),
    )


def christoffersen_independence(hits: npt.ArrayLike) -> LikelihoodRatioTest:
    """Christoffersen's Markov independence test of an exception sequence."""
    n00, n01, n10, n11 = transition_counts(hits)
    total = n00 + n01 + n10 + n11
    if total == 0 or n01 + n11 == 0 or n00 + n10 == 0:
        return LikelihoodRatioTest(0.0, 1, 1.0)  # no exceptions (or only exceptions): nothing to test
    pi = (n01 + n11) / total
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    null = _xlogy(n00 + n10, 1.0 - pi) + _xlogy(n01 + n11, pi)
    alt = _xlogy(n00, 1.0 - pi01) + _xlogy(n01, pi01) + _xlogy(n10, 1.0 - pi11) + _xlogy(n11, pi11)
    stat = max(-2.0 * (null - alt), 0.0)
    return LikelihoodRatioTest(stat, 1, float(chi2.sf(stat, 1)))


def conditional_coverage(hits: npt.ArrayLike, p: float) -> LikelihoodRatioTest:
    """Christoffersen's joint test ``LR_cc = LR_pof + LR_ind`` (chi-square, 2 dof)."""
    h = np.asarray(hits, dtype=bool)
    stat = kupiec_pof(int(h.sum()), len(h), p).statistic + christoffersen_independence(h).statistic
    return LikelihoodRatioTest(stat, 2, float(chi2.sf(stat, 2)))


def zone_boundaries(observations: int = BASEL_WINDOW, p: float = 0.01) -> tuple[int, int]:
    """``(yellow_from, red_from)``: the smallest exception counts in the yellow and red zones.

    ``(5, 10)`` for 250 observations at 99% (Basel Committee 1996, Table 2).
    """
    x = np.arange(observations + 1)
    cdf = binom.cdf(x, observations, p)
    tol = 1e-12  # the published table rounds to 0.01%; compare the exact cumulative probability
    yellow = int(np.argmax(cdf >= YELLOW_CUMULATIVE - tol))
    red = int(np.argmax(cdf >= RED_CUMULATIVE - tol))
    return yellow, red


def traffic_light(exceptions: int, observations: int = BASEL_WINDOW, p: float = 0.01) -> str:
    """``"green"``, ``"yellow"`` or ``"red"`` for ``exceptions`` in ``observations``."""
    yellow, red = zone_boundaries(observations, p)
    return "red" if exceptions >= red else "yellow" if exceptions >= yellow else "green"


def rolling_exceptions(hits: npt.ArrayLike, window: int = BASEL_WINDOW) -> npt.NDArray[np.int64]:
    """Exceptions in each trailing window of ``window`` days (one value per window end)."""
    h = np.asarray(hits, dtype=np.int64)
    if len(h) < window:
        return np.zeros(0, dtype=np.int64)
    c = np.concatenate([[0], np.cumsum(h)])
    return c[window:] - c[:-window]


def window_zones(hits: npt.ArrayLike, p: float, window: int = BASEL_WINDOW) -> dict[str, object]:
    """Basel zones per 250-day window: consecutive blocks and every trailing (rolling) window.

    Keys: ``blocks`` (list of ``{"start", "end" (indices), "exceptions", "zone"}``),
    ``rolling_days`` (count of window ends in each zone) and ``worst_rolling``.
    """
    h = np.asarray(hits, dtype=bool)
    blocks = []
    for start in range(0, len(h) - window + 1, window):
        x = int(h[start : start + window].sum())
        blocks.append({"start": start, "end": start + window - 1, "exceptions": x, "zone": traffic_light(x, window, p)})
    rolling = rolling_exceptions(h, window)
    yellow, red = zone_boundaries(window, p)
    counts = {
        "green": int(np.sum(rolling < yellow)),
        "yellow": int(np.sum((rolling >= yellow) & (rolling < red))),
        "red": int(np.sum(rolling >= red)),
    }
    worst = "red" if counts["red"] else "yellow" if counts["yellow"] else "green" if len(rolling) else None
    return {"window": window, "blocks": blocks, "rolling_days": counts, "worst_rolling": worst,
            "max_rolling_exceptions": int(rolling.max()) if len(rolling) else None}


def coverage_summary(margin: npt.ArrayLike, pnl: npt.ArrayLike, confidence: float, horizon_days: int) -> dict[str, object]:
    """Exceptions, coverage and the three tests for one margin / realised P&L series (dollars).

    Days with a non-finite margin or P&L are left out (counted in ``skipped``).  The same
    statistics on the non-overlapping subsample (every ``horizon_days``-th day) are under
    ``non_overlapping``.
    """
    m = np.asarray(margin, dtype=float)
    x = np.asarray(pnl, dtype=float)
    ok = np.isfinite(m) & np.isfinite(x)
    hits = (-x[ok]) > m[ok]
    p = 1.0 - confidence

    def stats(h: BoolArray) -> dict[str, object]:
        n, k = len(h), int(h.sum())
        return {
            "observations": n,
            "exceptions": k,
            "expected_exceptions": n * p,
            "coverage": 1.0 - k / n if n else float("nan"),
            "kupiec": kupiec_pof(k, n, p).to_dict(),
            "christoffersen": christoffersen_independence(h).to_dict(),
            "conditional_coverage": conditional_coverage(h, p).to_dict(),
        }

    out = stats(hits)
    out["skipped"] = int((~ok).sum())
    out["non_overlapping"] = stats(hits[:: max(horizon_days, 1)])
    out["zones"] = window_zones(hits, p)
    return out


# ---------------------------------------------------------------- positions through history


@dataclass(frozen=True)
class Leg:
    """One position replayed through history: ``instrument`` held (futures: rolled at the same
    nearby index), or with ``par_tenor_months > 0`` a constant-maturity par bond re-struck
    every day (coupon = that day's par yield).  ``quantity`` as in portfolio files."""

    account: int
    quantity: float
    instrument: Instrument | RolledRepo | None = None
    par_tenor_months: int = 0


def _live(contract: TreasuryFuture | RateFuture, day: date, h: int) -> bool:
    if isinstance(contract, TreasuryFuture):
        return add_business_days(day, h + 2) < contract.first_delivery_day
    return add_business_days(day, h) <= contract.last_trading_day


def live_contracts(root: str, day: date, h: int, count: int) -> list[TreasuryFuture | RateFuture]:
    """The ``count`` nearest contracts of ``root`` a position may hold on ``day`` (roll rule)."""
    months = QUARTERLY if root in TREASURY_FUTURES or root == "SR3" else tuple(range(1, 13))
    make = TreasuryFuture if root in TREASURY_FUTURES else RateFuture
    out: list[TreasuryFuture | RateFuture] = []
    year = day.year
    while len(out) < count:
        out += [c for m in months if _live(c := make(root, year, m), day, h)]  # type: ignore[operator]
        year += 1
    return out[:count]


def nearby_index(contract: TreasuryFuture | RateFuture, start: date, h: int) -> int:
    """Place of ``contract`` among the contracts live on ``start`` (0: front; an expiring one: 0)."""
    key = (contract.year, contract.month)
    live = live_contracts(contract.root, start, h, 48)
    return sum((c.year, c.month) < key for c in live)


def instrument_on(leg: Leg, nearby: int, snapshot: MarketSnapshot, h: int) -> Instrument | None:
    """The instrument ``leg`` holds on the snapshot's day, or ``None`` once matured."""
    if leg.par_tenor_months:
        coupon = float(np.interp(leg.par_tenor_months, snapshot.tenor_months, snapshot.par_yields))
        return par_bond(snapshot.as_of, leg.par_tenor_months, round(coupon, 8))
    inst = leg.instrument
    if isinstance(inst, TreasuryFuture | RateFuture):
        return live_contracts(inst.root, snapshot.as_of, h, nearby + 1)[nearby]
    if isinstance(inst, RolledRepo):  # the repo of the latest roll date (xmargin.validation.books)
        return inst.repo_on(snapshot)
    if isinstance(inst, Repo):
        return inst if inst.end > snapshot.settle else None
    return inst if inst is not None and inst.maturity > snapshot.settle else None


def legs_of(book: Book) -> tuple[Leg, ...]:
    """Every position of ``book`` as a held leg (account row, quantity, instrument)."""
    coo = book.positions.tocoo()
    return tuple(Leg(int(a), float(x), book.universe.instruments[int(j)]) for a, j, x in zip(coo.row, coo.col, coo.data, strict=True))


def roll_notes(legs: Sequence[Leg], start: date, h: int, dates: npt.NDArray[np.datetime64]) -> list[str]:
    """Futures rolls and maturities of ``legs`` over ``dates`` (ISO strings)."""
    notes: list[str] = []
    for leg in legs:
        inst = leg.instrument
        if isinstance(inst, TreasuryFuture | RateFuture):
            k = nearby_index(inst, start, h)
            held = [live_contracts(inst.root, d.astype(date), h, k + 1)[k].symbol for d in dates]
            notes += [f"{dates[i]}: {held[i - 1]} rolled to {held[i]}" for i in range(1, len(held)) if held[i] != held[i - 1]]
        elif isinstance(inst, RolledRepo):
            if len(dates):
                rolls = inst.roll_dates(dates[-1].astype(date))
                notes.append(f"{inst.identifier}: repo re-opened on {len(rolls)} roll dates from {rolls[0]} to {rolls[-1]}")
        elif inst is not None:
            mat = inst.end if isinstance(inst, Repo) else inst.maturity
            if len(dates) and mat <= dates[-1].astype(date):
                notes.append(f"{inst.identifier if not isinstance(inst, Repo) else 'repo'} matures {mat}: dropped from then on")
    return notes
