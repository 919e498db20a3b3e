"""Vectorised pricing of Treasury bills, notes and bonds off zero curves.

Prices are per 100 face for settlement on ``CashflowSet.settle``.  Off a curve, the dirty
price is the present value of the flows after settlement carried forward to settlement:

    dirty[n, s] = sum_f amount[n, f] * DF_s(pay date f) / DF_s(settle)

computed as one sparse (securities x pay dates) by dense (pay dates x curves) product, so
``N`` securities under ``S`` curves cost one matrix multiplication, no Python loop.  The
quoting conventions (street yield, bill discount rate) live in
:mod:`xmargin.reference.conventions`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from xmargin.market import curve_kernel
from xmargin.market.curve import ZeroCurves
from xmargin.reference.cashflows import CashflowSet

FloatArray = npt.NDArray[np.float64]


#: ``N x K x S`` (securities x flows x curves) up to which :func:`dirty_prices` multiplies in
#: NumPy instead of SciPy's sparse product (same result bit for bit: same products summed in
#: the same order); small products -- ``xmargin price``, one new instrument's rows -- then
#: never import SciPy (about 0.3 s of a one-line command).
DENSE_MAX_WORK = 200_000


def dirty_prices(cf: CashflowSet, curves: ZeroCurves) -> FloatArray:
    """Dirty prices per 100 face, ``N x S`` (securities x curves)."""
    if curve_kernel.ENABLED:  # the backtest engine: one compiled loop, the same sums in the same order
        dates, amounts, cols = cf.flow_table
        _, settle_col = curves.discount_table(np.array([cf.settle], dtype="datetime64[D]"))
        table, date_cols = curves.discount_table(dates)  # after the settlement date: the memo may grow
        return curve_kernel.flow_values(amounts, cols, cf.n_flows, table, date_cols, int(settle_col[0]))
    k = int(cf.n_flows.max()) if cf.size else 0
    if cf.size * k * curves.n_curves <= DENSE_MAX_WORK:
        dates, inverse = np.unique(cf.flow_date, return_inverse=True)
    else:
        matrix, dates = cf.matrix_on_dates()
    df = curves.discount_dates(dates)  # S x U
    df_settle = curves.discount_dates(np.array([cf.settle], dtype="datetime64[D]"))  # S x 1
    weights = (df / df_settle).T  # U x S
    if cf.size * k * curves.n_curves > DENSE_MAX_WORK:
        return np.asarray(matrix @ weights)
    # the CSR product's arithmetic: each security's flows in pay-date order, y += amount * weight
    starts = np.concatenate([[0], np.cumsum(cf.n_flows)[:-1]]).astype(np.int64)
    col = np.arange(len(cf.flow_owner)) - np.repeat(starts, cf.n_flows)
    amounts = np.zeros((cf.size, k))
    rows = np.zeros((cf.size, k), dtype=np.int64)
    amounts[cf.flow_owner, col] = cf.flow_amount
    rows[cf.flow_owner, col] = inverse
    out = np.zeros((cf.size, weights.shape[1]))
    for f in range(k):
        out += amounts[:, f, None] * weights[rows[:, f]]
    return out


def clean_prices(cf: CashflowSet, curves: ZeroCurves) -> FloatArray:
    """Clean prices per 100 face (dirty less accrued), ``N x S``."""
    return dirty_prices(cf, curves) - cf.accrued[:, None]
