"""Price reports for the ``price`` command and the API: one record per instrument.

Fields (fixed; external tools read them): ``instrument``, ``kind``, ``clean_price``,
``accrued``, ``dirty_price`` (per 100 face; futures: the quoted price in points),
``yield_pct`` (street yield; bills: bond-equivalent; Treasury futures: the CTD's forward
yield at the last delivery day; SOFR/Fed Funds futures: the implied rate), ``dv01``
(dollars per $100 face for cash, per contract for futures, for a 1 bp fall in the par curve),
``key_rate_dv01`` (same units, by tenor); futures add ``ctd``, ``conversion_factor`` and
``implied_repo_pct``; bills add ``discount_rate_pct``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np

from xmargin.market.snapshot import MarketSnapshot
from xmargin.pricing.futures import treasury_future_details
from xmargin.pricing.revalue import InstrumentUniverse, sensitivities, unit_values
from xmargin.reference.cashflows import resolve
from xmargin.reference.conventions import (
    bill_discount_rate,
    bill_price_from_discount,
    dirty_from_yield,
    street_yield,
    yield_dv01,
)
from xmargin.reference.futures import TreasuryFuture
from xmargin.reference.lookup import Instrument
from xmargin.reference.securities import SecuritiesMaster
from xmargin.reference.stir import RateFuture
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond


def _per_quote_unit(inst: Instrument) -> float:
    """Units of quantity behind one quote: 100 face for cash, one contract for futures."""
    return 1.0 if isinstance(inst, TreasuryFuture | RateFuture) else 100.0


def price_report(
    instruments: Sequence[Instrument], snapshot: MarketSnapshot, master: SecuritiesMaster
) -> list[dict[str, Any]]:
    """Price, yield and risk of each instrument off the snapshot's curve."""
    universe = InstrumentUniverse.of(instruments)
    values = unit_values(universe, snapshot, snapshot.curve, master)[:, 0]
    dv01, krd = sensitivities(universe, snapshot, master)
    settle = snapshot.settle
    rows: list[dict[str, Any]] = []
    for i, inst in enumerate(universe.instruments):
        scale = _per_quote_unit(inst)
        row: dict[str, Any] = {"instrument": universe.ids[i], "as_of": snapshot.as_of.isoformat()}
        if isinstance(inst, TreasuryBill | TreasuryBond):
            cf = resolve([inst], settle)
            dirty = values[i] * 100.0
            y = float(street_yield(cf, [dirty])[0])
            row |= {
                "kind": "bill" if isinstance(inst, TreasuryBill) else "note/bond",
                "settle": settle.isoformat(),
                "coupon_pct": getattr(inst, "coupon", 0.0) * 100.0,
                "maturity": inst.maturity.isoformat(),
                "clean_price": dirty - float(cf.accrued[0]),
                "accrued": float(cf.accrued[0]),
                "dirty_price": dirty,
                "yield_pct": y * 100.0,
                "yield_dv01": float(yield_dv01(cf, [y])[0]),
            }
            if isinstance(inst, TreasuryBill):
                days = (inst.maturity - settle).days
                row["discount_rate_pct"] = float(bill_discount_rate(dirty, days)) * 100.0
        elif isinstance(inst, TreasuryFuture):
            details = treasury_future_details(inst, snapshot, master)
            row |= {
                "kind": "treasury future",
                "clean_price": details["price"],
                "accrued": 0.0,
                "dirty_price": details["price"],
                "yield_pct": details.get("ctd_forward_yield_pct"),
                "ctd": details["ctd"],
                "conversion_factor": details["conversion_factor"],
                "implied_repo_pct": details["implied_repo_pct"],
                "last_delivery_day": details.get("last_delivery_day"),
            }
        else:
            assert isinstance(inst, RateFuture)
            price = values[i] / inst.dollars_per_point
            row |= {
                "kind": "rate future",
                "clean_price": price,
                "accrued": 0.0,
                "dirty_price": price,
                "yield_pct": 100.0 - price,
                "reference_start": inst.reference_start.isoformat(),
                "reference_end": inst.reference_end.isoformat(),
            }
        row["dv01"] = float(dv01[i] * scale)
        row["key_rate_dv01"] = {t: float(v * scale) for t, v in zip(snapshot.tenors, krd[i], strict=True)}
        rows.append(row)
    return rows


def price_from_yield(
    instrument: TreasuryBill | TreasuryBond, *, yield_pct: float, settle: date, discount_rate: bool = False
) -> dict[str, Any]:
    """Clean price per 100 from a street yield (bills: bond-equivalent yield, or with
    ``discount_rate`` the bill discount rate) for settlement on ``settle``; no curve needed."""
    cf = resolve([instrument], settle)
    y = yield_pct / 100.0
    if isinstance(instrument, TreasuryBill) and discount_rate:
        days = (instrument.maturity - settle).days
        dirty = float(bill_price_from_discount(y, days))
    else:
        dirty = float(dirty_from_yield(cf, [y])[0])
    accrued = float(cf.accrued[0])
    out: dict[str, Any] = {
        "instrument": instrument.identifier,
        "settle": settle.isoformat(),
        "yield_pct": yield_pct if not discount_rate else float(street_yield(cf, [dirty])[0]) * 100.0,
        "clean_price": dirty - accrued,
        "accrued": accrued,
        "dirty_price": dirty,
        "yield_dv01": float(yield_dv01(cf, [float(street_yield(cf, [dirty])[0])])[0]),
    }
    if isinstance(instrument, TreasuryBill):
        days = (instrument.maturity - settle).days
        out["discount_rate_pct"] = float(bill_discount_rate(dirty, days)) * 100.0
    return out


def curve_report(snapshot: MarketSnapshot) -> dict[str, Any]:
    """The par curve as published and the zero rates and discount factors at its tenors.

    ``zero_rate_pct`` is bond-equivalent (semiannual compounding, ACT/365F from the as-of
    date); ``discount_factor`` the price today of $1 paid at the tenor date.
    """
    curve = snapshot.curve
    t = curve.node_times
    return {
        "as_of": snapshot.as_of.isoformat(),
        "tenors": list(snapshot.tenors),
        "par_yield_pct": [float(v) for v in snapshot.par_yields * 100.0],
        "zero_rate_pct": [float(v) for v in curve.zero_rates_bey(t)[0] * 100.0],
        "discount_factor": [float(v) for v in np.exp(-curve.node_logdf[0])],
        "zero_rate_convention": "bond-equivalent (semiannual), ACT/365F",
        "interpolation": "monotone convex (Hagan-West 2006) on forwards",
    }
