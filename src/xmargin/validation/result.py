"""Backtest results: margin and realised P&L per account and day, and their components.

:func:`assemble` turns the daily engine's per-day ``(margin, P&L, components)`` into a
:class:`BacktestResult`, adding FICC's path-dependent Portfolio Differential and Backtesting
Charge (:mod:`xmargin.margin.ficc_addons`) to the FICC and combined models.  Dollars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.margin.ficc_addons import backtesting_charge, portfolio_differential
from xmargin.margin.params import MarginParams
from xmargin.portfolio.book import Account
from xmargin.validation import coverage_summary

FloatArray = npt.NDArray[np.float64]


#: Margin components recorded per account and day (``--daily``), from
#: :class:`~xmargin.margin.calculator.AccountMargins`.
DAILY_COMPONENTS = ("ficc_var", "ficc_floor_topup", "ficc_concentration", "span_scan_risk", "span_intra_spread_charge",
                    "span_inter_spread_credit", "cme_var", "applied_reduction_factor", "ficc_requirement",
                    "cme_requirement")


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Margin and realised P&L per account (rows) and day (columns), dollars."""

    model: str
    confidence: float
    horizon_days: int
    accounts: tuple[str, ...]
    dates: npt.NDArray[np.datetime64]
    margin: FloatArray
    pnl: FloatArray
    method: str
    notes: tuple[str, ...] = field(default=())
    #: name -> ``A x D`` dollars: the model's margin before FICC's path-dependent add-ons
    #: (``model_margin``), ``portfolio_differential``, ``backtesting_charge`` and
    #: :data:`DAILY_COMPONENTS`; ``margin`` is ``model_margin`` plus the two add-ons.
    components: dict[str, FloatArray] = field(default_factory=dict)
    #: per account: futures position-days, and those realised from actual futures prices
    futures_days: tuple[tuple[int, int], ...] = field(default=())
    #: the realised P&L's horizon per side (:class:`~xmargin.validation.backtest.SideHorizons`):
    #: ``{"ficc": ..., "cme": ..., "joint": ...}``; ``horizon_days`` is the longest
    side_horizons: dict[str, int] = field(default_factory=dict)

    def pnl_source(self, i: int) -> str:
        """``"actual"`` when every futures position-day of account ``i`` used actual prices."""
        if not self.futures_days:
            return "model"
        total, actual = self.futures_days[i]
        return "actual" if total > 0 and actual == total else "model"

    def daily_rows(self) -> list[dict[str, Any]]:
        """One record per account and day: date, account, P&L, margin, exception, components."""
        out = []
        for i, acc in enumerate(self.accounts):
            for j, d in enumerate(self.dates):
                rec: dict[str, Any] = {"date": str(d), "account": acc, "pnl": float(self.pnl[i, j]),
                                       "margin": float(self.margin[i, j]), "exception": bool(self.exceptions[i, j])}
                rec.update({k: float(v[i, j]) for k, v in self.components.items()})
                out.append(rec)
        return out

    @property
    def exceptions(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.margin) & np.isfinite(self.pnl) & (-self.pnl > self.margin)

    def summary(self, i: int) -> dict[str, Any]:
        out = coverage_summary(self.margin[i], self.pnl[i], self.confidence, self.horizon_days)
        for b in out["zones"]["blocks"]:  # type: ignore[index]
            b["start"], b["end"] = str(self.dates[b["start"]]), str(self.dates[b["end"]])
        fd = self.futures_days[i] if self.futures_days else (0, 0)
        return {"account": self.accounts[i], "pnl_source": self.pnl_source(i), "futures_position_days": fd[0],
                "futures_position_days_actual": fd[1], **out,
                "exception_dates": [str(d) for d in self.dates[self.exceptions[i]]]}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "confidence": self.confidence, "horizon_days": self.horizon_days,
                **({"side_horizons": dict(self.side_horizons)} if self.side_horizons else {}),
                "method": self.method, "from": str(self.dates[0]) if len(self.dates) else None,
                "to": str(self.dates[-1]) if len(self.dates) else None, "notes": list(self.notes),
                "accounts": [self.summary(i) for i in range(len(self.accounts))]}


def with_ficc_addons(model: str, params: MarginParams, h: int, base: FloatArray, pnl: FloatArray,
                     ficc_var: FloatArray, ficc_requirement: FloatArray) -> tuple[FloatArray, dict[str, FloatArray]]:
    """``(margin, add-ons)``: ``base`` (``A x D``, the model's margin) plus FICC's Portfolio
    Differential (on ``ficc_var``) and Backtesting Charge (against ``pnl``, known ``h`` days
    later; only on days with a ``ficc_requirement``) under the FICC and combined models."""
    margin = base.copy()
    addons: dict[str, FloatArray] = {}
    f = params.ficc
    if model != "cme" and f.portfolio_differential:
        addons["portfolio_differential"] = portfolio_differential(ficc_var, f.pd_decay)
        margin = margin + addons["portfolio_differential"]
    if model != "cme" and f.backtesting_charge:
        charge = backtesting_charge(margin, pnl, h, target=f.backtesting_target, window=f.backtesting_window_days)
        addons["backtesting_charge"] = np.where(ficc_requirement > 0, charge, 0.0)
        margin = margin + addons["backtesting_charge"]
    return margin, addons


def assemble(model: str, accounts: Sequence[Account], params: MarginParams, h: int, dates: npt.NDArray[np.datetime64],
             out: Sequence[tuple[FloatArray, FloatArray, FloatArray]], method: str,
             notes: tuple[str, ...], side_horizons: dict[str, int] | None = None) -> BacktestResult:
    """A :class:`BacktestResult` from the daily reducer outputs, with FICC's path-dependent
    add-ons (:mod:`xmargin.margin.ficc_addons`) on the FICC and combined models.  The
    Backtesting Charge is FICC's: it is charged only on days FICC has a requirement on the
    account (none on an account holding futures only, whose combined margin is CME's);
    ``h``: the longest realised-P&L horizon (a day's backtest is known ``h`` days later)."""
    n_acc = len(accounts)
    base = np.array([m for m, _, _ in out]).T.reshape(n_acc, len(dates))
    pnl = np.array([x for _, x, _ in out]).T.reshape(n_acc, len(dates))
    comps = np.stack([c for _, _, c in out], axis=2) if out else np.zeros((len(DAILY_COMPONENTS), n_acc, 0))
    components = {"model_margin": base, **{name: comps[k] for k, name in enumerate(DAILY_COMPONENTS)}}
    margin, addons = with_ficc_addons(model, params, h, base, pnl, components["ficc_var"],
                                      components["ficc_requirement"])
    components.update(addons)
    standalone_span = params.cme.standalone_model == "span"
    conf = params.ficc.confidence if model != "cme" else (params.cme.span_confidence if standalone_span else params.cme.var_confidence)
    return BacktestResult(model, conf, h, tuple(a.account for a in accounts), dates, margin, pnl, method, notes,
                          components, side_horizons=dict(side_horizons or {}))
