"""Bootstrapping many curves that lie close to a known one (a backtest's exact VaR tail).

:func:`bootstrap_near` solves the same equations as :func:`xmargin.market.curve.bootstrap`
(each par bond prices to 100 within ``tol`` per 100 face on its own curve, bills exact) from
a starting point near the solution, e.g. the first-order curves of
:func:`~xmargin.pricing.revalue.linear_curves`, with a Newton step per curve whose Jacobian
is formed from that curve's own discounted flows:

``d res_b / d y_k = - sum_{f in bond b} a_f DF(t_f) dL(t_f)/dy_k``

(``a_f`` the par bond's flows per 100, ``L = -ln DF`` the monotone convex interpolation of
the node values ``y``).  The discounted flows ``a_f DF(t_f)`` are exact per curve (they are
the residual's own terms).  The first step takes the interpolation weights ``W[f, k] =
dL(t_f)/dy_k`` once, by +-``1e-6`` central differences at the mean starting curve; a curve
whose error a step reduced by less than ``SLOW_RATE`` gets its own weights (one-sided ``1e-6``
differences, one pass per bond node); in between each curve keeps its last Jacobian's inverse
(a chord per curve: from first-order curves the shared weights' chord mostly converges
as fast, and per-curve weights cost seven passes).
From first-order curves that is about four to six passes,
where the shared-Jacobian chord of ``bootstrap`` needs about ten plus finite-difference
Jacobians for its slow rows.  Rows still unsettled after ``max_iter`` steps raise, as
``bootstrap`` does.

In the backtest engine (:mod:`xmargin.market.curve_kernel` enabled) the same Newton runs as one
compiled loop per curve (:func:`~xmargin.market.curve_kernel.chord_newton`): each curve stops one
step after its own residual is below ``tol`` instead of stepping until the last curve settles, and
a per-curve Jacobian re-interpolates only the flows of the intervals the bumped node moves (the
same Jacobian); -ln DF within 1.4e-14 of the array loop on real tail sets.

The curves agree with a cold ``bootstrap`` to the tolerance (``tests/test_backtest_speed.py``
compares them on real scenario sets, crisis days included), not bit for bit.  Units: node
values ``-ln DF`` (dimensionless), par yields decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np
import numpy.typing as npt

from xmargin.errors import CalculationError
from xmargin.market import curve_kernel
from xmargin.market.curve import (
    ZeroCurves,
    _log_discount,
    _par_instruments,
    not_converged,
    solved_curves,
)

FloatArray = npt.NDArray[np.float64]
WEIGHT_BUMP = 1e-6
#: a curve whose error fell by less than this factor in a step gets its own Jacobian again
SLOW_RATE = 0.01


def bootstrap_near(
    as_of: date,
    tenors: Sequence[str],
    tenor_months: Sequence[int],
    par_yields: npt.ArrayLike,
    initial: npt.ArrayLike,
    *,
    tol: float = 1e-12,
    max_iter: int = 30,
) -> ZeroCurves:
    """``S`` zero curves for par yields ``par_yields`` (decimal, ``S x n``), starting from
    node values ``initial`` (``S x n``, ``-ln DF``); see the module docstring."""
    par = np.atleast_2d(np.asarray(par_yields, dtype=np.float64))
    if par.shape[1] != len(tenor_months) or np.isnan(par).any():
        raise CalculationError("par yields must be finite and match the tenors")
    inst = _par_instruments(as_of, tenor_months)
    times = inst.node_times
    s, n = par.shape
    logdf = np.array(np.broadcast_to(np.asarray(initial, dtype=np.float64), (s, n)))
    bills, bonds = inst.bill_cols, inst.bond_cols
    logdf[:, bills] = np.log1p(par[:, bills] * times[bills])  # closed form, as in bootstrap
    if len(bonds) == 0:
        return ZeroCurves(as_of, tuple(tenors), times, logdf)
    nb = len(bonds)
    # the par bonds share their coupon dates (each is priced at the unique times, then gathered:
    # the same values, interpolation being elementwise in time)
    flow_t, at_flow = np.unique(inst.flow_times, return_inverse=True)
    coupons = par[:, bonds][:, inst.flow_owner]
    amounts = np.where(inst.flow_is_coupon, inst.coupon_scale * coupons * 50.0, 100.0)  # S x F per 100 face
    starts = np.flatnonzero(np.r_[True, np.diff(inst.flow_owner) != 0])  # flows are grouped by bond
    # interpolation weights dL(t_f)/dy_k at the mean starting curve (central differences)
    mean = logdf.mean(axis=0, keepdims=True)
    bumped = np.repeat(mean, 2 * nb, axis=0)
    for j, col in enumerate(bonds):
        bumped[2 * j, col] -= WEIGHT_BUMP
        bumped[2 * j + 1, col] += WEIGHT_BUMP
    lv = _log_discount(times, bumped, flow_t)[:, at_flow]
    weights = ((lv[1::2] - lv[0::2]) / (2.0 * WEIGHT_BUMP)).T  # F x nb
    ends = np.r_[starts[1:], len(at_flow)]
    if curve_kernel.ENABLED:  # the backtest engine: the same passes in one compiled loop
        passes, res = curve_kernel.chord_newton(times, logdf, bonds, flow_t, at_flow, amounts, starts, ends, weights,
                                                tol, max_iter, SLOW_RATE, WEIGHT_BUMP)
        if passes < 0:
            not_converged(as_of, res)
        return solved_curves(as_of, tenors, times, logdf)
    res = np.zeros((s, nb))
    inverse = np.zeros((s, nb, nb))
    previous = np.full(s, np.inf)
    for iteration in range(max_iter):
        lv = _log_discount(times, logdf, flow_t)  # S x U (unique flow times)
        cash = np.exp(-lv)[:, at_flow] * amounts  # S x F
        res = np.add.reduceat(cash, starts, axis=1) - 100.0
        err = np.abs(res).max(axis=1)
        if float(err.max()) < tol:
            break
        if iteration == 0:  # shared interpolation weights, each curve's own discounted flows
            jac = np.empty((s, nb, nb))
            for b in range(nb):
                jac[:, b, :] = -cash[:, starts[b]:ends[b]] @ weights[starts[b]:ends[b]]
            inverse = curve_kernel.inverse(jac)
        else:  # a curve's own Jacobian whenever its error fell less than SLOW_RATE in a step
            rows = np.flatnonzero((err >= tol) & (err > SLOW_RATE * previous))
            if len(rows):
                jac = np.empty((len(rows), nb, nb))
                cash_rows, lv_rows = cash[rows], lv[rows]
                for j, col in enumerate(bonds):  # column j: the flows' response to node j (one-sided)
                    moved = logdf[rows]
                    moved[:, col] += WEIGHT_BUMP
                    dl = (_log_discount(times, moved, flow_t) - lv_rows)[:, at_flow]
                    jac[:, :, j] = np.add.reduceat(cash_rows * dl, starts, axis=1) / -WEIGHT_BUMP
                inverse[rows] = curve_kernel.inverse(jac)
        logdf[:, bonds] -= np.einsum("sbk,sk->sb", inverse, res)
        previous = err
    else:
        not_converged(as_of, res)
    return solved_curves(as_of, tenors, times, logdf)
