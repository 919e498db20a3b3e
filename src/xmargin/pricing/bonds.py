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

from xmargin.market.curve import ZeroCurves
from xmargin.reference.cashflows import CashflowSet

FloatArray = npt.NDArray[np.float64]


def dirty_prices(cf: CashflowSet, curves: ZeroCurves) -> FloatArray:
    """Dirty prices per 100 face, ``N x S`` (securities x curves)."""
    matrix, dates = cf.matrix_on_dates()
    df = curves.discount_dates(dates)  # S x U
    df_settle = curves.discount_dates(np.array([cf.settle], dtype="datetime64[D]"))  # S x 1
    return np.asarray(matrix @ (df / df_settle).T)


def clean_prices(cf: CashflowSet, curves: ZeroCurves) -> FloatArray:
    """Clean prices per 100 face (dirty less accrued), ``N x S``."""
    return dirty_prices(cf, curves) - cf.accrued[:, None]
