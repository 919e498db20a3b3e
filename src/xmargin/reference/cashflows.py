"""Resolve Treasury definitions into cash-flow arrays for one settlement date.

This is the "resolved" form (after Strata's ``ResolvedFixedCouponBond``): dates fixed,
irregular periods expanded, ready for vectorised pricing.  All amounts are per 100 face.

For each security the resolution gives the flows paid strictly after settlement, the
accrued interest at settlement (ACT/ACT ICMA) and, for the street yield, the number of
coupon periods from settlement to each flow (``w, w + 1, ...``), where ``w`` is the
ICMA fraction of the current (reference) period still to run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from xmargin.errors import InputError
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

if TYPE_CHECKING:
    import scipy.sparse as sp

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Cash = TreasuryBill | TreasuryBond


@dataclass(frozen=True, slots=True)
class _Resolved:
    pay_dates: list[date]
    amounts: list[float]
    accrued: float
    first_fraction: float  # w: coupon periods from settlement to the first flow
    prev_coupon: date | None
    next_coupon: date | None


def _overlap_fraction(a: date, b: date, bond: TreasuryBond, first_index: int) -> float:
    """ICMA fraction of [a, b] inside the first period, in notional regular periods.

    The first period ends on ``regular_date(first_index)``; notional periods step back from
    there until they cover ``a``.
    """
    total = 0.0
    m = first_index
    end = bond.regular_date(m)
    while end > a:
        start = bond.regular_date(m + 1)
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total += (hi - lo).days / (end - start).days
        end = start
        m += 1
    return total


@lru_cache(maxsize=65536)
def resolve_one(security: Cash, settle: date) -> _Resolved:
    """Cash flows after ``settle``, accrued and first-period fraction of one security.

    Cached (securities are frozen; the same bonds and delivery dates recur day after day in
    backtests): the result is shared, read it only."""
    if settle >= security.maturity:
        raise InputError(
            f"{security.identifier} matures on {security.maturity}, not after settlement {settle}",
            field="instrument",
        )
    if isinstance(security, TreasuryBill):
        return _Resolved([security.maturity], [100.0], 0.0, float("nan"), None, None)
    bond = security
    per_period = bond.coupon * 100.0 / 2.0
    first = bond.first_coupon_date()
    if bond.dated_date is not None and settle < bond.dated_date:
        raise InputError(
            f"{bond.identifier} starts accruing on {bond.dated_date}, after settlement {settle}",
            field="instrument",
        )
    k = bond.periods_before(settle)  # regular_date(k) <= settle < regular_date(k - 1)
    if first is None or settle >= first:
        prev, nxt = bond.regular_date(k), bond.regular_date(k - 1)
        length = (nxt - prev).days
        accrued = per_period * (settle - prev).days / length
        w = (nxt - settle).days / length
        dates = [bond.regular_date(j) for j in range(k - 1, -1, -1)]
        amounts = [per_period] * len(dates)
    else:
        assert bond.dated_date is not None
        fi = bond.periods_before(first)
        dated = bond.dated_date
        first_amount = per_period * _overlap_fraction(dated, first, bond, fi)
        accrued = per_period * _overlap_fraction(dated, settle, bond, fi)
        w = _overlap_fraction(settle, first, bond, fi)
        prev, nxt = dated, first
        dates = [bond.regular_date(j) for j in range(fi, -1, -1)]
        amounts = [first_amount] + [per_period] * (len(dates) - 1)
    amounts[-1] += 100.0
    return _Resolved(dates, amounts, accrued, w, prev, nxt)


@dataclass(frozen=True)
class CashflowSet:
    """Flows of ``N`` securities after one settlement date, flattened.

    ``flow_owner[f]`` is the security of flow ``f``; ``flow_date`` its pay date as
    ``datetime64[D]``; ``flow_amount`` per 100 face; ``flow_periods`` the coupon periods from
    settlement (``w + j``).  ``accrued`` per 100 face at settlement.
    """

    settle: date
    securities: tuple[Cash, ...]
    flow_owner: IntArray
    flow_date: npt.NDArray[np.datetime64]
    flow_amount: FloatArray
    flow_periods: FloatArray
    accrued: FloatArray
    n_flows: IntArray
    is_bill: npt.NDArray[np.bool_]

    @property
    def size(self) -> int:
        return len(self.securities)

    def padded(self) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """``(amounts, periods, mask)`` as ``N x K`` arrays padded with zeros."""
        k = int(self.n_flows.max()) if self.size else 0
        amounts = np.zeros((self.size, k))
        periods = np.zeros((self.size, k))
        mask = np.zeros((self.size, k), dtype=bool)
        starts = np.concatenate([[0], np.cumsum(self.n_flows)[:-1]])
        col = np.arange(len(self.flow_owner)) - np.repeat(starts, self.n_flows)
        amounts[self.flow_owner, col] = self.flow_amount
        periods[self.flow_owner, col] = self.flow_periods
        mask[self.flow_owner, col] = True
        return amounts, periods, mask

    @cached_property
    def flow_table(self) -> tuple[npt.NDArray[np.datetime64], FloatArray, IntArray]:
        """``(dates, amounts, cols)``: the ``U`` distinct pay dates and, per security, its flows'
        amounts and date columns in pay order (``N x K``, zero padded; ``n_flows`` say how many
        are real); built once per set, read-only."""
        dates, inverse = np.unique(self.flow_date, return_inverse=True)
        k = int(self.n_flows.max()) if self.size else 0
        starts = np.concatenate([[0], np.cumsum(self.n_flows)[:-1]]).astype(np.int64)
        col = np.arange(len(self.flow_owner)) - np.repeat(starts, self.n_flows)
        amounts = np.zeros((self.size, k))
        cols = np.zeros((self.size, k), dtype=np.int64)
        amounts[self.flow_owner, col] = self.flow_amount
        cols[self.flow_owner, col] = inverse
        for a in (dates, amounts, cols):
            a.flags.writeable = False
        return dates, amounts, cols

    def matrix_on_dates(self) -> tuple[sp.csr_matrix, npt.NDArray[np.datetime64]]:
        """Sparse ``N x U`` flow matrix over the ``U`` distinct pay dates, and those dates
        (built once per set; treat as read-only)."""
        return self._matrix_on_dates

    @cached_property
    def _matrix_on_dates(self) -> tuple[sp.csr_matrix, npt.NDArray[np.datetime64]]:
        import scipy.sparse as sp  # here, not at the top: scipy takes ~0.4 s to import (xmargin price)

        dates, inverse = np.unique(self.flow_date, return_inverse=True)
        matrix = sp.csr_matrix(
            (self.flow_amount, (self.flow_owner, inverse)), shape=(self.size, len(dates))
        )
        return matrix, dates


def resolve(securities: Sequence[Cash], settle: date) -> CashflowSet:
    """Resolve many securities at one settlement date into a :class:`CashflowSet`.

    Memoised per ``(securities, settle)`` (the pricers ask for the same basket or book on
    every curve set of a day, and for a futures basket at its delivery date all quarter);
    the arrays of a returned set are read-only."""
    return _resolve_tuple(tuple(securities), settle)


@lru_cache(maxsize=4096)
def _resolve_tuple(securities: tuple[Cash, ...], settle: date) -> CashflowSet:
    out = _resolve(securities, settle)
    for name in ("flow_owner", "flow_date", "flow_amount", "flow_periods", "accrued", "n_flows", "is_bill"):
        getattr(out, name).flags.writeable = False
    return out


def _resolve(securities: Sequence[Cash], settle: date) -> CashflowSet:
    owners: list[int] = []
    dates: list[date] = []
    amounts: list[float] = []
    periods: list[float] = []
    accrued = np.zeros(len(securities))
    n_flows = np.zeros(len(securities), dtype=np.int64)
    is_bill = np.zeros(len(securities), dtype=bool)
    for i, sec in enumerate(securities):
        r = resolve_one(sec, settle)
        owners.extend([i] * len(r.pay_dates))
        dates.extend(r.pay_dates)
        amounts.extend(r.amounts)
        periods.extend(r.first_fraction + j for j in range(len(r.pay_dates)))
        accrued[i] = r.accrued
        n_flows[i] = len(r.pay_dates)
        is_bill[i] = isinstance(sec, TreasuryBill)
    return CashflowSet(
        settle=settle,
        securities=tuple(securities),
        flow_owner=np.array(owners, dtype=np.int64),
        flow_date=np.array(dates, dtype="datetime64[D]"),
        flow_amount=np.array(amounts, dtype=np.float64),
        flow_periods=np.array(periods, dtype=np.float64),
        accrued=accrued,
        n_flows=n_flows,
        is_bill=is_bill,
    )
