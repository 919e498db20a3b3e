"""Par yield curves to zero curves: bootstrapping with monotone convex forwards.

Interpolation: the monotone convex method of Hagan and West ("Interpolation methods for
curve construction", Applied Mathematical Finance 13(2), 2006), without the optional
positivity amelioration (rates may be negative).  It is the choice of the South African and
several central-bank curve builders because it

* reproduces the bootstrapped discount factors at the nodes exactly,
* gives continuous instantaneous forwards (so discount factors are C1 and prices of
  coupons between nodes move smoothly when a node moves) -- except in the method's
  degenerate case of equal consecutive par yields, where the change of forward is squeezed
  into a sliver of the interval (numerically a jump; QuantLib's basic Hagan-West does the
  same; 38 of the 8,965 real curves, all before 2001),
* keeps the forwards local and free of the overshoots of cubic splines, and
* preserves monotonicity of the discrete forwards (no spurious forward oscillation, hence
  no arbitrage between adjacent periods beyond what the inputs imply).

Nodes sit at the published tenors (``as_of`` plus 1M ... 30Y, calendar months, ACT/365F
year fractions from the as-of date).  Instruments, one per published tenor (documented
choice, see ``docs/curves.md``):

* tenors up to 6 months are Treasury bills: discount factor ``1 / (1 + y * days / 365)``
  (the bond-equivalent yield of a bill of up to half a year);
* tenors from 1 year are par bonds: semiannual coupons at the par yield, issued on the
  as-of date, pricing to exactly 100 (the definition of a par yield).

Everything is vectorised over ``S`` curves (scenarios): node values are an ``S x n`` array
and one Newton iteration solves all curves at once.  Beyond the 30-year node the last
instantaneous forward is held flat.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from xmargin.errors import CalculationError
from xmargin.market import curve_kernel
from xmargin.reference.calendar import add_months
from xmargin.reference.treasuries import TreasuryBond

FloatArray = npt.NDArray[np.float64]
DAYS_PER_YEAR = 365.0
#: Tenors at or below this many months are bootstrapped as bills, longer ones as par bonds.
BILL_MAX_MONTHS = 6


def year_fractions(as_of: date, dates: npt.ArrayLike) -> FloatArray:
    """ACT/365F year fractions from ``as_of`` to each date (``datetime64[D]`` or dates)."""
    days = (np.asarray(dates, dtype="datetime64[D]") - np.datetime64(as_of, "D")).astype(np.int64)
    return days / DAYS_PER_YEAR


def _node_forwards(times: FloatArray, logdf: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Discrete forwards ``fd`` (S x n) and instantaneous node forwards ``f`` (S x n+1)."""
    t_ext = np.concatenate([[0.0], times])
    y_ext = np.concatenate([np.zeros((logdf.shape[0], 1)), logdf], axis=1)
    h = np.diff(t_ext)
    fd = np.diff(y_ext, axis=1) / h
    n = len(times)
    f = np.empty((logdf.shape[0], n + 1))
    if n == 1:
        f[:, :] = fd[:, :1]
        return fd, f
    w_left = h[:-1] / (h[:-1] + h[1:])  # weight of fd[i+1] at node i (1-based interior)
    f[:, 1:n] = w_left * fd[:, 1:] + (1.0 - w_left) * fd[:, :-1]
    f[:, 0] = fd[:, 0] - 0.5 * (f[:, 1] - fd[:, 0])
    f[:, n] = fd[:, -1] - 0.5 * (f[:, n - 1] - fd[:, -1])
    return fd, f


def _g_coefficients(g0: FloatArray, g1: FloatArray) -> tuple[FloatArray, ...]:
    """Coefficients of the integral of the Hagan-West correction ``g`` on one interval.

    Every region of the (g0, g1) plane (paper, section 4) integrates to one form,

        G(x) = a1 x + a2 x^2 + a3 x^3 + b (1 - (1 - x / e1)_+^3) + c (x - e2)_+^3,

    region (i) (quadratic): ``a1 = g0, a2 = -2 g0 - g1, a3 = g0 + g1``;
    region (ii) (flat, then quadratic from ``eta = (g1 + 2 g0) / (g1 - g0)``):
    ``a1 = g0, c = (g1 - g0) / (3 (1 - eta)^2), e2 = eta``;
    region (iii) (quadratic until ``eta = 3 g1 / (g1 - g0)``, then flat):
    ``a1 = g1, b = (g0 - g1) eta / 3, e1 = eta``;
    region (iv) (two quadratics meeting at ``A = -g0 g1 / (g0 + g1)`` at ``eta = g1 / (g0 + g1)``):
    ``a1 = A, b = (g0 - A) eta / 3, e1 = eta, c = (g1 - A) / (3 (1 - eta)^2), e2 = eta``.
    Returned as ``(a1, a2, a3, b, 1 / e1, c, e2)``; computed once per interval so the work
    per date is one polynomial.
    """
    zeros = np.zeros_like(g0)
    region1 = ((g0 > 0) & (g1 <= -0.5 * g0) & (g1 >= -2 * g0)) | ((g0 < 0) & (g1 >= -0.5 * g0) & (g1 <= -2 * g0))
    region2 = ~region1 & (((g0 < 0) & (g1 > -2 * g0)) | ((g0 > 0) & (g1 < -2 * g0)))
    region3 = ((g0 > 0) & (g1 < 0) & (g1 > -0.5 * g0)) | ((g0 < 0) & (g1 > 0) & (g1 < -0.5 * g0))
    region4 = ~(region1 | region2 | region3) & ((g0 != 0) | (g1 != 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(g1 != g0, g1 - g0, 1.0)
        total = np.where(g0 + g1 != 0, g0 + g1, 1.0)
        eta2 = (g1 + 2 * g0) / diff
        eta3 = 3 * g1 / diff
        eta4 = g1 / total
        big_a = -g0 * g1 / total
        a1 = np.select([region1, region2, region3, region4], [g0, g0, g1, big_a], zeros)
        a2 = np.where(region1, -2 * g0 - g1, zeros)
        a3 = np.where(region1, g0 + g1, zeros)
        e1 = np.select([region3, region4], [eta3, eta4], zeros)
        b = np.select([region3, region4], [(g0 - g1) * eta3 / 3.0, (g0 - big_a) * eta4 / 3.0], zeros)
        e2 = np.select([region2, region4], [eta2, eta4], np.ones_like(g0))
        c = np.select(
            [region2, region4], [(g1 - g0) / (3 * (1 - eta2) ** 2), (g1 - big_a) / (3 * (1 - eta4) ** 2)], zeros
        )
        inv_e1 = np.where(e1 > 0, 1.0 / np.where(e1 > 0, e1, 1.0), 0.0)
    # degenerate kinks (eta at an end of the interval): the term they scale vanishes on [0, 1]
    b = np.where(e1 > 0, b, 0.0)
    c = np.where(e2 < 1, np.nan_to_num(c), 0.0)
    return a1, a2, a3, b, inv_e1, c, e2


def _g_from_coefficients(x: FloatArray, coeffs: Sequence[FloatArray]) -> FloatArray:
    a1, a2, a3, b, inv_e1, c, e2 = coeffs
    head = np.maximum(1.0 - x * inv_e1, 0.0)
    tail = np.maximum(x - e2, 0.0)
    return x * (a1 + x * (a2 + x * a3)) + b * (1.0 - head**3) + c * tail**3


def _g_integral(x: FloatArray, g0: FloatArray, g1: FloatArray) -> FloatArray:
    """Integral over [0, x] of the Hagan-West correction ``g`` on one interval (x in [0, 1]).

    ``x``, ``g0 = f(left) - fd`` and ``g1 = f(right) - fd`` are arrays of one shape.
    """
    x, g0, g1 = np.broadcast_arrays(x, g0, g1)
    return _g_from_coefficients(x, _g_coefficients(g0, g1))


#: Curves are interpolated in blocks of this many rows (keeps the working set in cache).
_BLOCK = 128


def _log_discount(times: FloatArray, logdf: FloatArray, t: FloatArray) -> FloatArray:
    """``-ln DF(t)`` (S x M) for node values ``logdf`` (S x n) at ``times`` (n): the compiled
    loop of :mod:`xmargin.market.curve_kernel` once it is enabled (the same formulas), else
    :func:`_log_discount_array`."""
    if curve_kernel.ENABLED:
        return curve_kernel.log_discount(times, logdf, np.asarray(t, dtype=np.float64))
    return _log_discount_array(times, logdf, t)


def _log_discount_array(times: FloatArray, logdf: FloatArray, t: FloatArray) -> FloatArray:
    """Array version of :func:`_log_discount` (the reference for the compiled loop)."""
    t = np.asarray(t, dtype=np.float64)
    t_ext = np.concatenate([[0.0], times])
    i = np.clip(np.searchsorted(t_ext, t, side="left"), 1, len(times))  # interval (t[i-1], t[i]]
    lo, hi = t_ext[i - 1], t_ext[i]
    h = hi - lo
    x = np.clip((t - lo) / h, 0.0, 1.0)
    beyond = t > times[-1]
    out = np.empty((logdf.shape[0], len(t)))
    for start in range(0, logdf.shape[0], _BLOCK):
        rows = logdf[start : start + _BLOCK]
        fd, f = _node_forwards(times, rows)
        y_ext = np.concatenate([np.zeros((rows.shape[0], 1)), rows], axis=1)
        coeffs = [k[:, i - 1] for k in _g_coefficients(f[:, :-1] - fd, f[:, 1:] - fd)]
        block = y_ext[:, i - 1] + h * (fd[:, i - 1] * x + _g_from_coefficients(x, coeffs))
        if beyond.any():  # flat instantaneous forward beyond the last node
            block = np.where(beyond, rows[:, -1:] + f[:, -1:] * (t - times[-1]), block)
        out[start : start + _BLOCK] = block
    out[:, t <= 0.0] = 0.0
    return out


@dataclass(frozen=True, eq=False)
class ZeroCurves:
    """``S`` zero curves on common nodes (monotone convex forwards), from one as-of date.

    ``node_times`` in years (ACT/365F from ``as_of``); ``node_logdf[s, k] = -ln DF`` of curve
    ``s`` at node ``k``.  ``tenors`` labels the nodes.  Discount factors by date are memoised
    per instance: pricers of cash, repo and futures ask for largely the same coupon dates,
    and each date is interpolated once for all ``S`` curves.
    """

    as_of: date
    tenors: tuple[str, ...]
    node_times: FloatArray
    node_logdf: FloatArray
    _memo: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # the memo and its lock belong to one process: pickle (Dask, multiprocessing) the curves only
        return {"as_of": self.as_of, "tenors": self.tenors, "node_times": self.node_times,
                "node_logdf": self.node_logdf}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_memo", {})
        object.__setattr__(self, "_lock", threading.Lock())

    @property
    def n_curves(self) -> int:
        return int(self.node_logdf.shape[0])

    def log_discount(self, t: npt.ArrayLike) -> FloatArray:
        """``-ln DF`` at year fractions ``t``: an ``S x M`` array."""
        return _log_discount(self.node_times, self.node_logdf, np.atleast_1d(np.asarray(t, dtype=float)))

    def discount(self, t: npt.ArrayLike) -> FloatArray:
        """Discount factors at year fractions ``t``: an ``S x M`` array."""
        return np.exp(-self.log_discount(t))

    def discount_dates(self, dates: npt.ArrayLike) -> FloatArray:
        """Discount factors at dates (``datetime64[D]``): an ``S x M`` array (memoised)."""
        table, columns = self.discount_table(dates)
        return table[:, columns]  # type: ignore[no-any-return]

    def discount_table(self, dates: npt.ArrayLike) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """``(table, columns)``: the memo's ``S x C`` discount factors (read-only) and the column
        of each date, so a compiled loop reads the factors in place instead of a gathered copy."""
        days = np.atleast_1d(np.asarray(dates, dtype="datetime64[D]")).astype(np.int64)
        with self._lock:
            # known days (sorted) and their buffer columns; new days are interpolated in date order
            known: npt.NDArray[np.int64] = self._memo.get("days", np.zeros(0, np.int64))
            columns: npt.NDArray[np.int64] = self._memo.get("columns", np.zeros(0, np.int64))
            pos = np.searchsorted(known, days)
            hit = pos < len(known)
            hit[hit] = known[pos[hit]] == days[hit]
            if not hit.all():
                missing = np.unique(days[~hit])
                fresh = self.discount(year_fractions(self.as_of, missing.astype("datetime64[D]")))
                buf = self._memo.get("buf")
                used = len(known)
                if buf is None or used + len(missing) > buf.shape[1]:
                    grown = np.empty((self.n_curves, max(2 * (used + len(missing)), 64)))
                    if buf is not None:
                        grown[:, :used] = buf[:, :used]
                    buf = self._memo["buf"] = grown
                buf[:, used : used + len(missing)] = fresh
                every = np.concatenate([known, missing])
                order = np.argsort(every, kind="stable")
                known = self._memo["days"] = every[order]
                columns = self._memo["columns"] = np.concatenate(
                    [columns, np.arange(used, used + len(missing), dtype=np.int64)])[order]
                pos = np.searchsorted(known, days)
            return self._memo["buf"], columns[pos]

    def zero_rates_bey(self, t: npt.ArrayLike) -> FloatArray:
        """Zero rates, bond-equivalent (semiannual compounding, ACT/365F), decimal."""
        t = np.atleast_1d(np.asarray(t, dtype=float))
        return 2.0 * (np.exp(self.log_discount(t) / (2.0 * t)) - 1.0)

    def select(self, rows: npt.ArrayLike) -> ZeroCurves:
        """A subset of the curves (e.g. one scenario)."""
        return ZeroCurves(self.as_of, self.tenors, self.node_times, self.node_logdf[np.atleast_1d(rows)])


#: Projection curve for overnight-rate futures (documented choice): a Nelson-Siegel fit with
#: a fixed decay, least squares on the node zero rates up to ``PROJECTION_MAX_YEARS``.
PROJECTION_DECAY_YEARS = 1.5
PROJECTION_MAX_YEARS = 10.0


def projection_curves(curves: ZeroCurves) -> ZeroCurves:
    """Smoothed curves for projecting overnight rates (SOFR, fed funds), one per input curve.

    The exact curve fits every bill to the basis point, and day-to-day noise in single bill
    yields then shows up, through the interpolated forwards, as implausible moves between
    adjacent quarters (one-day P&L correlations of 0.3-0.6 between neighbouring SOFR
    contracts, negative between neighbouring Fed Funds months).  Futures on overnight rates
    price off a smooth projection curve instead: Nelson-Siegel (level, slope, curvature) with
    the decay fixed at 1.5 years, fitted by least squares to the continuously compounded zero
    rates of the nodes up to 10 years, evaluated at the same nodes.  With the decay fixed the
    fit is linear, one matrix product for all ``S`` curves; a parallel shift of the input
    shifts the output by exactly the same amount.  On the 2024-06-26 curve the largest node
    misfit is about 10 bp; the overnight spread to SOFR is measured against this curve, so
    the front end stays anchored to the fixings.
    """
    t = curves.node_times
    use = t <= PROJECTION_MAX_YEARS + 1e-9
    x = t / PROJECTION_DECAY_YEARS
    slope = (1.0 - np.exp(-x)) / x
    basis = np.stack([np.ones_like(t), slope, slope - np.exp(-x)], axis=1)  # n x 3
    zero = curves.node_logdf / t
    beta = zero[:, use] @ np.linalg.pinv(basis[use]).T  # S x 3
    return ZeroCurves(curves.as_of, curves.tenors, t, (beta @ basis.T) * t)


@dataclass(frozen=True)
class _ParInstruments:
    node_times: FloatArray
    bill_cols: npt.NDArray[np.int64]
    bond_cols: npt.NDArray[np.int64]
    flow_times: FloatArray  # F
    flow_owner: npt.NDArray[np.int64]  # F, index into bond_cols
    flow_is_coupon: npt.NDArray[np.bool_]  # F: coupon (scaled by c/2) vs principal
    coupon_scale: FloatArray  # F: coupon period fraction (1 for regular periods)


def par_bond(as_of: date, months: int, coupon: float) -> TreasuryBond:
    """The par bond of a tenor: issued on ``as_of``, maturing ``months`` later."""
    return TreasuryBond(coupon=coupon, maturity=add_months(as_of, months), dated_date=as_of)


def _par_instruments(as_of: date, tenor_months: Sequence[int]) -> _ParInstruments:
    """The par bonds' flows of a day (cached per day and tenors: every bootstrap of the day,
    scenario, bumped or exact tail, solves the same par bonds; read-only)."""
    return _par_instruments_cached(as_of, tuple(tenor_months))


@lru_cache(maxsize=16)
def _par_instruments_cached(as_of: date, tenor_months: tuple[int, ...]) -> _ParInstruments:
    from xmargin.reference.cashflows import resolve_one

    maturities = [add_months(as_of, m) for m in tenor_months]
    node_times = year_fractions(as_of, np.array(maturities, dtype="datetime64[D]"))
    bill_cols = np.array([k for k, m in enumerate(tenor_months) if m <= BILL_MAX_MONTHS], dtype=np.int64)
    bond_cols = np.array([k for k, m in enumerate(tenor_months) if m > BILL_MAX_MONTHS], dtype=np.int64)
    times: list[float] = []
    owner: list[int] = []
    is_coupon: list[bool] = []
    scale: list[float] = []
    for j, k in enumerate(bond_cols):
        r = resolve_one(par_bond(as_of, tenor_months[k], 0.02), as_of)  # unit coupon 2% -> scale 1
        t = year_fractions(as_of, np.array(r.pay_dates, dtype="datetime64[D]"))
        amounts = np.array(r.amounts)
        amounts[-1] -= 100.0
        times.extend(t)
        owner.extend([j] * len(t))
        is_coupon.extend([True] * len(t))
        scale.extend(amounts / 1.0)  # per-100 coupon at 2% is 1.0 per regular period
        times.append(t[-1])
        owner.append(j)
        is_coupon.append(False)
        scale.append(1.0)
    out = _ParInstruments(
        node_times=node_times,
        bill_cols=bill_cols,
        bond_cols=bond_cols,
        flow_times=np.array(times),
        flow_owner=np.array(owner, dtype=np.int64),
        flow_is_coupon=np.array(is_coupon),
        coupon_scale=np.array(scale),
    )
    for array in vars(out).values():  # shared by every bootstrap of the day (and its curves' node times)
        array.flags.writeable = False
    return out


def bootstrap(
    as_of: date,
    tenors: Sequence[str],
    tenor_months: Sequence[int],
    par_yields: npt.ArrayLike,
    *,
    tol: float = 1e-12,
    max_iter: int = 60,
) -> ZeroCurves:
    """Bootstrap ``S`` zero curves from par yields (decimal, ``S x n`` or ``n``).

    Each par bond prices to 100 within ``tol`` (per 100 face) on its own curve, each bill
    tenor reproduces its bond-equivalent yield exactly.  Raises
    :class:`~xmargin.errors.CalculationError` if a curve cannot be fitted.
    """
    par = np.atleast_2d(np.asarray(par_yields, dtype=np.float64))
    if par.shape[1] != len(tenor_months) or np.isnan(par).any():
        raise CalculationError("par yields must be finite and match the tenors")
    inst = _par_instruments(as_of, tenor_months)
    times = inst.node_times
    s, n = par.shape
    logdf = 2.0 * times * np.log1p(par / 2.0)  # initial guess: flat semiannual par rate
    logdf[:, inst.bill_cols] = np.log1p(par[:, inst.bill_cols] * times[inst.bill_cols])
    if len(inst.bond_cols) == 0:
        return ZeroCurves(as_of, tuple(tenors), times, logdf)

    nb = len(inst.bond_cols)
    aggregate = np.zeros((len(inst.flow_times), nb))
    aggregate[np.arange(len(inst.flow_times)), inst.flow_owner] = 1.0

    def flow_amounts(par_rows: FloatArray) -> FloatArray:
        """Par-bond flows per 100 face (rows x F): coupons at the par yield, then principal."""
        coupons = par_rows[:, inst.bond_cols][:, inst.flow_owner]
        return np.where(inst.flow_is_coupon, inst.coupon_scale * coupons * 50.0, 100.0)

    def residual(values: FloatArray, amounts: FloatArray) -> FloatArray:
        df = np.exp(-_log_discount(times, values, inst.flow_times))
        return (df * amounts) @ aggregate - 100.0

    def jacobian(values: FloatArray, amounts: FloatArray) -> FloatArray:
        """Finite-difference Jacobian of the par-bond residuals, one ``b x b`` block a row."""
        base = residual(values, amounts)
        bump = 1e-7
        jac = np.empty((values.shape[0], nb, nb))
        for j, col in enumerate(inst.bond_cols):
            bumped = values.copy()
            bumped[:, col] += bump
            jac[:, :, j] = (residual(bumped, amounts) - base) / bump
        return jac

    # Newton on the average curve, then a chord iteration for every curve with the Jacobian
    # at that solution (scenario curves are perturbations of one as-of curve); rows still
    # unsettled after a few steps switch to their own Jacobian.
    amounts = flow_amounts(par)
    mean_par = par.mean(axis=0, keepdims=True)
    mean_amounts = flow_amounts(mean_par)
    guess = logdf.copy()
    mean_logdf = guess.mean(axis=0, keepdims=True)
    for _ in range(max_iter):
        mean_res = residual(mean_logdf, mean_amounts)
        if float(np.abs(mean_res).max()) < tol:
            break
        jac = jacobian(mean_logdf, mean_amounts)
        mean_logdf[:, inst.bond_cols] -= np.linalg.solve(jac, mean_res[:, :, None])[:, :, 0]
    shared = np.linalg.inv(jacobian(mean_logdf, mean_amounts)[0])
    logdf = mean_logdf + (guess - guess.mean(axis=0, keepdims=True))
    res = residual(logdf, amounts)
    for iteration in range(max_iter):
        err = np.abs(res).max(axis=1)
        if float(err.max()) < tol:
            break
        step = res @ shared.T
        if iteration >= 8:  # slow rows: per-row Newton
            slow = np.flatnonzero(err >= tol)
            jac = jacobian(logdf[slow], amounts[slow])
            step[slow] = np.linalg.solve(jac, res[slow][:, :, None])[:, :, 0]
        logdf[:, inst.bond_cols] -= step
        res = residual(logdf, amounts)
    else:
        not_converged(as_of, res)
    return solved_curves(as_of, tenors, times, logdf)


def not_converged(as_of: date, res: FloatArray) -> NoReturn:
    """Raise: the Newton iterations ran out with par-bond errors ``res`` (per 100) left."""
    raise CalculationError(
        f"curve bootstrap for {as_of} did not converge (worst par-bond error {np.abs(res).max():.3g} per 100)"
    )


def solved_curves(as_of: date, tenors: Sequence[str], times: FloatArray, logdf: FloatArray) -> ZeroCurves:
    """The bootstrapped curves, refused if any discount factor is not finite."""
    if not np.isfinite(logdf).all():
        raise CalculationError(f"curve bootstrap for {as_of} produced non-finite discount factors")
    return ZeroCurves(as_of, tuple(tenors), times, logdf)
