"""SPAN parameters calibrated from the real history with the engine's own revaluation.

For each futures root, its two nearest contracts not yet in their delivery month (Treasury
futures) or reference period (SOFR, Fed Funds) are fully revalued under every one-day
historical curve change of the look-back (no stress overlay).  Contracts already in delivery
or partly fixed converge to the cash market: real SPAN charges them a spot-month charge,
which is not modelled here (**choice**), and pairing one with the next contract would make
the calendar "spread" an outright.  Then:

* scanning range = the 99% one-day loss of one contract, long or short, the larger, over
  both contracts (SPAN: the range covers at least 99% of one-day moves);
* intra-commodity charge = the same for the calendar spread (long the first, short the
  second contract);
* inter-commodity credit rate for roots ``p`` and ``q`` = the share of the two outright
  risks that a DV01-neutral spread removes,
  ``1 - VaR(x_p - x_q) / (VaR(x_p) + VaR(x_q))`` with ``x = P&L / DV01`` of each front
  contract, clipped to ``[0, max_inter_credit]``.  Pairs are formed highest rate first.

Two windows (CME reviews its margins against short- and long-term volatility; **choice** of
the lengths): every figure above is computed over the last ``span_short_lookback_years``
(1 year) and over the whole ``span_lookback_years`` (10 years) of one-day changes, and the
larger is kept (for a credit rate, the smaller), so a volatile year raises the ranges
without waiting for the 10-year quantile to move.  ``curves="linear"`` prices the one-day
scenarios on first-order curves (the backtest's fast path; about 0.5% from the exact
bootstrap on a few scenarios) instead of bootstrapping each one.

Quantiles use the VaR convention of :mod:`xmargin.margin.var`.  A root whose contracts cannot
be priced at the as-of date (e.g. no deliverable securities in the master) is left out and
positions in it fail explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from itertools import combinations

import numpy as np

from xmargin.errors import XMarginError
from xmargin.margin.params import CmeParams
from xmargin.margin.span import SpanParameters
from xmargin.margin.var import historical_var
from xmargin.market.history import ParYieldHistory
from xmargin.market.snapshot import MarketSnapshot
from xmargin.pricing.revalue import InstrumentUniverse, linear_curves, sensitivities
from xmargin.pricing.scenario_pnl import instrument_pnl
from xmargin.reference.futures import TREASURY_FUTURES, TreasuryFuture
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.scenarios.historical import ScenarioSpec, scenario_par
from xmargin.scenarios.residual import ResidualParams, residual_risk

QUARTERLY = (3, 6, 9, 12)
RATE_ROOTS = ("SR3", "SR1", "ZQ")


def listed_contracts(root: str, as_of: date, count: int = 2) -> list[TreasuryFuture | RateFuture]:
    """The ``count`` nearest contracts of ``root`` still trading on ``as_of``."""
    months = QUARTERLY if root in TREASURY_FUTURES or root == "SR3" else tuple(range(1, 13))
    out: list[TreasuryFuture | RateFuture] = []
    year = as_of.year
    while len(out) < count:
        for m in months:
            contract: TreasuryFuture | RateFuture = (
                TreasuryFuture(root, year, m) if root in TREASURY_FUTURES else RateFuture(root, year, m)
            )
            if contract.last_trading_day >= as_of and len(out) < count:
                out.append(contract)
        year += 1
    return out


def _in_delivery(contract: TreasuryFuture | RateFuture, as_of: date) -> bool:
    """In its delivery month (Treasury futures) or reference period (rate futures)."""
    if isinstance(contract, TreasuryFuture):
        return contract.first_delivery_day <= as_of
    return contract.reference_start <= as_of


def _two_sided_var(pnl: np.ndarray, confidence: float) -> float:
    """Larger of the long and the short VaR of one P&L series."""
    return float(max(historical_var(pnl[None, :], confidence)[0], historical_var(-pnl[None, :], confidence)[0]))


def _two_window_var(pnl: np.ndarray, confidence: float, short: int) -> float:
    """The larger of the two-sided VaR over all columns and over the last ``short`` ones."""
    full = _two_sided_var(pnl, confidence)
    return max(full, _two_sided_var(pnl[-short:], confidence)) if 0 < short < len(pnl) else full


def calibrate_span(
    snapshot: MarketSnapshot, master: SecuritiesMaster, history: ParYieldHistory, cme: CmeParams,
    residual: ResidualParams | None = None,
    *, curves: str = "exact", roots: Sequence[str] | None = None,
) -> SpanParameters:
    """Calibrate SPAN parameters on the snapshot's date (see the module docstring); with
    ``residual`` the one-day P&L includes the residual factors (futures basis, SOFR-EFFR,
    SOFR-Treasury) over the same days, so e.g. the SR1/ZQ credit comes from the data.

    ``roots``: calibrate only these (a backtest of a book holding a few roots).  Each root's
    scanning range and spread charge and each pair's credit depend on that root's or pair's
    own contracts only, so they equal the full calibration's (its pair order too)."""
    roots = [r for r in (*TREASURY_FUTURES, *RATE_ROOTS) if roots is None or r in roots]
    contracts: dict[str, list[TreasuryFuture | RateFuture]] = {}
    skipped: dict[str, str] = {}
    for root in roots:
        try:
            listed = [c for c in listed_contracts(root, snapshot.as_of, count=4)
                      if not _in_delivery(c, snapshot.as_of)][:2]
            sensitivities(InstrumentUniverse.of(listed), snapshot, master)  # priceable?
            contracts[root] = listed
        except XMarginError as exc:
            skipped[root] = str(exc)
    universe = InstrumentUniverse.of([c for cs in contracts.values() for c in cs])
    spec = ScenarioSpec(horizon_days=1, lookback_years=cme.span_lookback_years, stress="none")
    built = scenario_par(history, snapshot, spec)
    if curves == "linear":
        scenario_curves = linear_curves(snapshot, built.par)
    else:
        scenario_curves = snapshot.curves_from_par(built.par)
    pnl = instrument_pnl(universe, snapshot, master, scenario_curves).pnl
    residual_factors: tuple[str, ...] = ()
    if residual is not None and residual.any:
        window = (history.dates[built.rows], history.dates[built.rows + spec.horizon_days])
        risk = residual_risk(universe.instruments, snapshot, master, history, residual, [window])
        pnl = pnl + risk.pnl(risk.ficc_changes)
        residual_factors = risk.factors
    start_day = np.datetime64(snapshot.as_of, "D") - np.timedelta64(int(round(cme.span_short_lookback_years * 365.25)), "D")
    short = int((history.dates[built.rows] >= start_day).sum()) if cme.span_short_lookback_years > 0 else 0
    dv01, _ = sensitivities(universe, snapshot, master)
    conf = cme.span_confidence
    kept = list(contracts)
    scan = np.zeros(len(kept))
    intra = np.zeros(len(kept))
    normalised: list[np.ndarray] = []
    for p, root in enumerate(kept):
        rows = [universe.index(c) for c in contracts[root]]
        scan[p] = max(_two_window_var(pnl[i], conf, short) for i in rows)
        overrides = dict(cme.scan_range_override)
        if root in overrides:
            scan[p] = float(overrides[root])
        intra[p] = _two_window_var(pnl[rows[0]] - pnl[rows[1]], conf, short) if len(rows) > 1 else 0.0
        normalised.append(pnl[rows[0]] / dv01[rows[0]])
    pairs: list[tuple[int, int, float]] = []
    for p, q in combinations(range(len(kept)), 2):
        rate = cme.max_inter_credit
        for cols in (slice(None), slice(-short, None)) if 0 < short < pnl.shape[1] else (slice(None),):
            x, y = normalised[p][cols], normalised[q][cols]
            outright = _two_sided_var(x, conf) + _two_sided_var(y, conf)
            hedged = _two_sided_var(x - y, conf)
            rate = min(rate, float(np.clip(1.0 - hedged / outright, 0.0, cme.max_inter_credit)) if outright > 0 else 0.0)
        if rate > 0:
            pairs.append((p, q, round(rate, 4)))
    pairs.sort(key=lambda t: -t[2])
    info = {
        "as_of": snapshot.as_of.isoformat(),
        "confidence": conf,
        "scenarios": len(built.rows),
        "short_window_scenarios": short,
        "history": f"{history.dates[built.rows[0]]}..{history.dates[built.rows[-1] + 1]}",
        "curves": curves,
        "contracts": {root: [c.symbol for c in cs] for root, cs in contracts.items()},
        "dv01_per_contract": {universe.ids[i]: float(dv01[i]) for i in range(len(universe))},
        "skipped": skipped,
        "residual_factors": list(residual_factors),
    }
    return SpanParameters(
        roots=tuple(kept),
        scan_range=scan,
        intra_charge=intra,
        inter_pairs=tuple(pairs),
        extreme_multiple=cme.extreme_multiple,
        extreme_cover=cme.extreme_cover,
        info=info,
    )
