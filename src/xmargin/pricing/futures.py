"""Treasury futures fair value off the Treasury zero curve (cheapest to deliver).

For a contract with basket ``i = 1..N`` and conversion factors ``CF_i``, on each curve ``s``:

    forward_clean[i, s] = dirty_s(i, settle = T) - accrued_i(T)
    price[s]            = min_i forward_clean[i, s] / CF_i              (points per 100 face)

with ``T`` the contract's **last delivery day** and ``dirty_s(i, settle = T)`` the
curve-implied forward dirty price of security ``i`` for settlement on ``T`` (the present value
of its flows after ``T`` divided by the discount factor to ``T``,
:func:`xmargin.pricing.bonds.dirty_prices`).  The minimising security is the cheapest to
deliver (CTD).  All curves are priced in one sparse-by-dense product per contract; there is
no loop over scenarios.

What this fair value leaves out (so it differs from the exchange settlement):

* the short's **delivery options** (quality/switch option beyond the CTD on the base curve,
  timing within the delivery month, end-of-month and wild-card options), all of which lower
  the futures price; the timing choice matters with an inverted curve, when carry is
  negative and shorts deliver early in the month rather than on ``T``;
* the **repo / Treasury-curve basis**: the forward is financed at the Treasury zero curve's
  rates, not at the (special or general collateral) term repo rate of each security, and the
  curve fits the par curve, not each security's market price (off-the-run notes trade a few
  basis points off the fitted curve).

Together these are worth up to about a point on a 10-year contract, so the fair value is a
sanity bound and a risk-factor mapping, not a settlement price.

Implied repo (``treasury_future_details``): the money-market rate (ACT/360, simple) earned by
buying the security at its spot dirty price ``P`` on the snapshot's settlement date ``t0``,
receiving the coupons ``c_k`` paid at ``t_k`` in ``(t0, T]`` (reinvested at the same rate) and
delivering it at the invoice price ``F * CF + AI(T)`` on ``T``:

    P (1 + r D / 360) = F * CF + AI(T) + sum_k c_k (1 + r (T - t_k) / 360),  D = T - t0 days.

The CTD is the security with the highest implied repo.  On the curve it coincides with the
minimum of forward / CF: the CTD's invoice equals its forward dirty price, so its implied
repo is the curve's own term rate, and every other security delivers at less than its
forward, which lowers its implied repo by ``CF_i * gap_i / (P_i D / 360)`` where
``gap_i = forward_i / CF_i - F``.  The two rankings can disagree only when two securities tie
within that curve-versus-simple-interest difference of their "curve" implied repo rates (the
money-market formula compounds coupons linearly, the curve exponentially: well under 0.01 bp
over a delivery horizon), i.e. when the basket is degenerate; the details report both and
price off the minimum ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from xmargin.errors import ExpiredContractError, MissingMarketDataError
from xmargin.market.curve import ZeroCurves
from xmargin.market.snapshot import MarketSnapshot
from xmargin.pricing.bonds import dirty_prices
from xmargin.reference.cashflows import CashflowSet, resolve
from xmargin.reference.conventions import street_yield
from xmargin.reference.futures import Deliverable, TreasuryFuture, deliverable_basket
from xmargin.reference.securities import SecuritiesMaster

FloatArray = npt.NDArray[np.float64]


@lru_cache(maxsize=256)
def _basket(contract: TreasuryFuture, master: SecuritiesMaster, as_of: date) -> list[Deliverable]:
    """:func:`deliverable_basket`, cached per day (shared: read only)."""
    return deliverable_basket(contract, master, as_of)


def contract_basket(contract: TreasuryFuture, master: SecuritiesMaster, as_of: date) -> list[Deliverable]:
    """Deliverable basket as known on ``as_of``; raises if the contract cannot be priced.

    :class:`ExpiredContractError` when the last delivery day is not after ``as_of``;
    :class:`MissingMarketDataError` naming the contract when no security qualifies (a
    contract too far ahead of the master's last auction, or a master lacking the issues).
    """
    if contract.last_delivery_day <= as_of:
        raise ExpiredContractError(
            f"{contract.symbol} has expired: its last delivery day was {contract.last_delivery_day}, "
            f"not after the as-of date {as_of}",
            field="instrument",
        )
    basket = _basket(contract, master, as_of)
    if not basket:
        rule = contract.spec.rule_for(contract.year, contract.month)
        raise MissingMarketDataError(
            f"{contract.symbol}: no deliverable {rule.kind}s in the securities master issued by {as_of} "
            f"({contract.spec.name}: remaining term from {contract.first_delivery_day} of at least "
            f"{rule.min_remaining_months} months); the contract is too far ahead of the master's "
            "auctions or the master lacks these securities"
        )
    return basket


def forward_clean_prices(basket: Sequence[Deliverable], delivery: date, curves: ZeroCurves) -> FloatArray:
    """Curve-implied forward clean prices per 100 face for settlement on ``delivery``: N x S."""
    cf = resolve([d.bond for d in basket], delivery)
    return dirty_prices(cf, curves) - cf.accrued[:, None]


def treasury_future_prices(
    contracts: Sequence[TreasuryFuture],
    snapshot: MarketSnapshot,
    curves: ZeroCurves,
    master: SecuritiesMaster,
) -> FloatArray:
    """Fair futures prices in points per 100 face, ``(n_contracts, S)``, one column per curve.

    Each column is the cheapest-to-deliver forward clean price / conversion factor on that
    curve (the CTD may change across scenarios).  Multiply by ``contract.dollars_per_point``
    for dollars per contract.
    """
    out = np.empty((len(contracts), curves.n_curves))
    baskets = [contract_basket(contract, master, snapshot.as_of) for contract in contracts]
    # every basket's pay dates and delivery days interpolated in one pass (the curves' memo then
    # serves each contract; the same factors, each date's being independent of the others)
    dates = [np.array([c.last_delivery_day for c in contracts], dtype="datetime64[D]")]
    dates += [resolve([d.bond for d in b], c.last_delivery_day).flow_table[0] for b, c in zip(baskets, contracts, strict=True)]
    curves.discount_table(np.unique(np.concatenate(dates)))
    for k, (contract, basket) in enumerate(zip(contracts, baskets, strict=True)):
        factors = np.array([d.conversion_factor for d in basket])
        forward = forward_clean_prices(basket, contract.last_delivery_day, curves)
        out[k] = (forward / factors[:, None]).min(axis=0)
    return out


def implied_repo(
    spot_dirty: FloatArray, invoice: FloatArray, spot_cf: CashflowSet, delivery: date
) -> FloatArray:
    """Money-market implied repo rates (decimal, ACT/360) of ``N`` securities (module docstring).

    ``spot_cf`` is the securities resolved at the purchase date; coupons paid after it and on
    or before ``delivery`` are received by the holder.  NaN when ``delivery`` is not after the
    purchase date.
    """
    days = (delivery - spot_cf.settle).days
    if days <= 0:
        return np.full(len(spot_dirty), np.nan)
    paid = spot_cf.flow_date <= np.datetime64(delivery, "D")
    to_delivery = (np.datetime64(delivery, "D") - spot_cf.flow_date).astype(np.int64).astype(float)
    n = spot_cf.size
    coupons = np.bincount(spot_cf.flow_owner[paid], weights=spot_cf.flow_amount[paid], minlength=n)
    coupon_time = np.bincount(
        spot_cf.flow_owner[paid], weights=spot_cf.flow_amount[paid] * to_delivery[paid] / 360.0, minlength=n
    )
    return (invoice + coupons - spot_dirty) / (spot_dirty * days / 360.0 - coupon_time)


def treasury_future_details(
    contract: TreasuryFuture, snapshot: MarketSnapshot, master: SecuritiesMaster
) -> dict[str, Any]:
    """Fair value, CTD and basket analytics on the snapshot's base curve.

    Keys: ``symbol``, ``as_of``, ``settle``, ``last_delivery_day`` (ISO dates), ``price``
    (points per 100 face), ``ctd`` (CUSIP or ``UST:`` id of the highest implied repo),
    ``ctd_min_forward_ratio`` (the security minimising forward / CF; equal to ``ctd`` except
    in degenerate ties), ``conversion_factor`` and ``implied_repo_pct`` of the CTD,
    ``ctd_forward_yield_pct`` (street yield of the CTD at its forward price for settlement on
    the last delivery day), ``dollars_per_point``, and ``deliverables``: one dict per security
    with ``instrument``, ``coupon_pct``, ``maturity``, ``conversion_factor``, ``spot_clean``
    (curve, settlement ``snapshot.settle``), ``market_clean`` (FedInvest, when its price date is
    the as-of date, else None), ``forward_clean`` (curve, settlement on the last delivery
    day), ``forward_over_cf``, ``implied_repo_pct`` and ``is_ctd``.  Prices per 100 face.
    """
    basket = contract_basket(contract, master, snapshot.as_of)
    curve = snapshot.curve
    delivery = contract.last_delivery_day
    bonds = [d.bond for d in basket]
    factors = np.array([d.conversion_factor for d in basket])

    forward_cf = resolve(bonds, delivery)
    forward_dirty = dirty_prices(forward_cf, curve)[:, 0]
    forward_clean = forward_dirty - forward_cf.accrued
    ratio = forward_clean / factors
    cheapest = int(np.argmin(ratio))
    price = float(ratio[cheapest])

    spot_cf = resolve(bonds, snapshot.settle)
    spot_dirty = dirty_prices(spot_cf, curve)[:, 0]
    spot_clean = spot_dirty - spot_cf.accrued
    invoice = price * factors + forward_cf.accrued
    repo = implied_repo(spot_dirty, invoice, spot_cf, delivery)
    ctd = int(np.nanargmax(repo)) if np.isfinite(repo).any() else cheapest

    ctd_cf = resolve([bonds[ctd]], delivery)
    ctd_yield = float(street_yield(ctd_cf, forward_dirty[ctd : ctd + 1])[0]) * 100.0
    market = master.prices if master.price_date == snapshot.as_of else {}
    deliverables = [
        {
            "instrument": bond.identifier,
            "coupon_pct": bond.coupon * 100.0,
            "maturity": bond.maturity.isoformat(),
            "conversion_factor": float(factors[i]),
            "spot_clean": float(spot_clean[i]),
            "market_clean": market.get(bond.identifier),
            "forward_clean": float(forward_clean[i]),
            "forward_over_cf": float(ratio[i]),
            "implied_repo_pct": float(repo[i] * 100.0),
            "is_ctd": i == ctd,
        }
        for i, bond in enumerate(bonds)
    ]
    return {
        "symbol": contract.symbol,
        "as_of": snapshot.as_of.isoformat(),
        "settle": snapshot.settle.isoformat(),
        "last_delivery_day": delivery.isoformat(),
        "price": price,
        "ctd": bonds[ctd].identifier,
        "ctd_min_forward_ratio": bonds[cheapest].identifier,
        "conversion_factor": float(factors[ctd]),
        "implied_repo_pct": float(repo[ctd] * 100.0),
        "ctd_forward_yield_pct": ctd_yield,
        "dollars_per_point": contract.dollars_per_point,
        "deliverables": deliverables,
    }
