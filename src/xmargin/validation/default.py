"""Joint default simulation: liquidating a defaulted member's cross-margined portfolio.

Under the enhanced arrangement FICC and CME liquidate a defaulted member's cross-margining
portfolio together and share the losses (methodology brief, section 2).  This module replays
that liquidation under every historical scenario of the as-of date:

* **Liquidation period** (**choice**, ``period_days``, default 3): one joint period for both
  clearinghouses, the longer of FICC's 3-day and CME's 2-day horizons, because the two legs of
  a hedged book must be closed together (closing the futures first would leave the cash leg
  unhedged).  Positions are held to the end of the period and closed at its prices (no
  partial unwinding, no bid-ask or market-impact cost): the scenario is the ``period``-day
  par-curve change of the look-back (10 years) plus the stressed year, as the FICC model
  builds them (:func:`~xmargin.scenarios.historical.build_scenarios`).
* **What is liquidated** (**choice**): the member's **house** accounts, all of their
  positions (cross-margined and not), pooled.  Customer positions are **ported** to another
  clearing member with their margin (CFTC exemptive order: porting of a defaulted member's
  customers must be possible), so by default they neither add losses nor bring margin.
  With ``include_customers`` (porting failed) each customer account is liquidated against its
  own margin only (customer gross margining; customer collateral never covers house losses);
  the defaulter's excess house margin (house margin minus the house loss, when positive)
  covers customer deficits (the defaulter's own property).
* **Margin held**: each account's cross-margined requirement (``total_after``, FICC plus CME,
  both houses), as computed by :func:`~xmargin.margin.calculator.compute_margins`.
* **Shortfall** per scenario: ``max(loss - margin, 0)`` on the pooled house portfolio (joint
  liquidation).  For comparison, ``separate``: each house closes only its own leg against
  only its own margin, ``max(loss_FICC - margin_FICC, 0) + max(loss_CME - margin_CME, 0)``.
  A joint shortfall is shared in proportion to the margin each house held (**choice**: the
  agreement's loss-sharing formula is not public).

Losses in dollars, positive = loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.config import PAR_YIELDS_FILE
from xmargin.errors import InputError
from xmargin.margin.calculator import compute_margins
from xmargin.margin.context import MarginContext
from xmargin.market.history import load_par_yields
from xmargin.portfolio.book import Book
from xmargin.pricing.scenario_pnl import InstrumentPnL, instrument_pnl
from xmargin.scenarios.historical import ScenarioSet, build_scenarios

FloatArray = npt.NDArray[np.float64]
QUANTILES = (0.5, 0.95, 0.99, 0.995, 0.999)


@dataclass(frozen=True, eq=False)
class DefaultSimulation:
    """Scenario losses of the liquidated portfolio against the margin held (dollars)."""

    member: str
    as_of: str
    period_days: int
    scenarios: ScenarioSet
    house_accounts: tuple[str, ...]
    loss_ficc: FloatArray  # S: house FICC positions
    loss_cme: FloatArray  # S: house CME positions
    margin_ficc: float
    margin_cme: float
    customer_accounts: tuple[str, ...]
    customer_loss: FloatArray  # C x S (empty without include_customers)
    customer_margin: FloatArray  # C

    @property
    def loss(self) -> FloatArray:
        return self.loss_ficc + self.loss_cme

    @property
    def margin(self) -> float:
        return self.margin_ficc + self.margin_cme

    @property
    def shortfall(self) -> FloatArray:
        """Joint liquidation shortfall per scenario, customers' residual deficits included."""
        excess = np.maximum(self.margin - self.loss, 0.0)
        customers = np.maximum(self.customer_loss - self.customer_margin[:, None], 0.0).sum(axis=0)
        return np.maximum(self.loss - self.margin, 0.0) + np.maximum(customers - excess, 0.0)

    @property
    def separate_shortfall(self) -> FloatArray:
        """Each house alone, its own leg against its own margin (house only)."""
        return np.maximum(self.loss_ficc - self.margin_ficc, 0.0) + np.maximum(self.loss_cme - self.margin_cme, 0.0)

    def summary(self, top: int = 10) -> dict[str, Any]:
        loss, short = self.loss, self.shortfall
        s = len(loss)
        k = max(1, int(np.ceil(0.01 * s)))
        worst = np.argsort(-loss, kind="stable")[:top]
        total_margin = self.margin
        share_f = self.margin_ficc / total_margin if total_margin > 0 else 0.5
        return {
            "member": self.member,
            "as_of": self.as_of,
            "liquidation_period_days": self.period_days,
            "scenarios": s,
            "stress_period": [str(d) for d in self.scenarios.stress_period or ()],
            "house_accounts": list(self.house_accounts),
            "customer_accounts_liquidated": list(self.customer_accounts),
            "margin_held": {"ficc": self.margin_ficc, "cme": self.margin_cme, "total": total_margin,
                            "customers": float(self.customer_margin.sum())},
            "loss_quantiles": {f"{q:.1%}": float(np.quantile(loss, q)) for q in QUANTILES},
            "max_loss": float(loss.max()),
            "expected_shortfall_99": float(np.sort(loss)[-k:].mean()),
            "scenarios_with_shortfall": int((short > 0).sum()),
            "coverage": 1.0 - float((short > 0).mean()),
            "max_shortfall": float(short.max()),
            "max_shortfall_separate_liquidation": float(self.separate_shortfall.max()),
            "scenarios_with_shortfall_separate": int((self.separate_shortfall > 0).sum()),
            "worst": [
                {"window": self.scenarios.label(int(j)), "loss": float(loss[j]), "loss_ficc": float(self.loss_ficc[j]),
                 "loss_cme": float(self.loss_cme[j]), "shortfall": float(short[j]),
                 "shortfall_ficc_share": float(short[j] * share_f), "shortfall_cme_share": float(short[j] * (1 - share_f)),
                 "shortfall_separate": float(self.separate_shortfall[j])}
                for j in worst
            ],
        }


def _scenario_pnl(context: MarginContext, period_days: int) -> tuple[ScenarioSet, InstrumentPnL]:
    spec = context.params.ficc.scenarios
    if period_days == spec.horizon_days:
        return context.ficc_scenarios, context.ficc_pnl
    snap = context.snapshot
    history = load_par_yields(snap.data_dir / PAR_YIELDS_FILE)
    scenarios = build_scenarios(history, snap, replace(spec, horizon_days=period_days))
    return scenarios, instrument_pnl(context.universe, snap, context.master, scenarios.curves)


def simulate_default(
    context: MarginContext,
    book: Book,
    member: str,
    *,
    period_days: int = 3,
    include_customers: bool = False,
) -> DefaultSimulation:
    """Liquidate ``member``'s house (and, optionally, customer) accounts under every scenario."""
    rows = [i for i, a in enumerate(book.accounts) if a.member == member]
    if not rows:
        raise InputError(f"member '{member}' has no accounts in the portfolio (members: {book.members()})",
                         source=book.source or "portfolio", field="member")
    house = [i for i in rows if book.accounts[i].account_type == "house"]
    customers = [i for i in rows if book.accounts[i].account_type == "customer"] if include_customers else []
    margins = compute_margins(context, book)
    scenarios, pnl = _scenario_pnl(context, period_days)
    used = np.asarray(abs(book.positions[house + customers]).sum(axis=0)).ravel() > 0
    unpriced = [context.universe.ids[j] for j in np.flatnonzero(used & ~pnl.priced)]
    if unpriced:
        raise InputError(f"cannot liquidate: no scenario prices for {unpriced}", source=book.source or "portfolio")
    held = np.concatenate([margins.total_after[house], margins.total_after[customers]])
    if not np.isfinite(held).all():
        raise InputError("cannot margin every liquidated account (see xmargin margin); no simulation",
                         source=book.source or "portfolio")
    is_cme = context.attributes.is_cme.astype(float)
    q_house = book.positions[house]
    loss_f = -np.asarray(q_house @ (pnl.pnl * (1.0 - is_cme)[:, None])).sum(axis=0)
    loss_c = -np.asarray(q_house @ (pnl.pnl * is_cme[:, None])).sum(axis=0)
    if customers:
        cust_loss = -np.asarray(book.positions[customers] @ pnl.pnl)
    else:
        cust_loss = np.zeros((0, scenarios.size))
    return DefaultSimulation(
        member=member,
        as_of=context.snapshot.as_of.isoformat(),
        period_days=period_days,
        scenarios=scenarios,
        house_accounts=tuple(book.accounts[i].account for i in house),
        loss_ficc=loss_f,
        loss_cme=loss_c,
        margin_ficc=float(margins.ficc_requirement[house].sum()),
        margin_cme=float(margins.cme_requirement[house].sum()),
        customer_accounts=tuple(book.accounts[i].account for i in customers),
        customer_loss=cust_loss,
        customer_margin=margins.total_after[customers],
    )
