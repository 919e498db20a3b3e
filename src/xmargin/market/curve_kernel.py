"""Compiled monotone convex interpolation: ``-ln DF(t)`` of many curves at many times.

The same formulas as the array code of :mod:`xmargin.market.curve` (Hagan and West 2006,
"Interpolation methods for curve construction", Applied Mathematical Finance 13(2)),
written as one loop per curve and compiled with Numba, because the array version makes
~80 NumPy calls per block of curves and on the backtest's small blocks (one curve in a
Jacobian, a few hundred in a VaR tail) that call overhead, not arithmetic, is its cost.

Per curve ``s`` with node times ``t_k`` and node values ``y_k = -ln DF(t_k)`` (``t_0 = y_0 =
0``): discrete forwards ``fd_k = (y_k - y_{k-1}) / (t_k - t_{k-1})``; node forwards
``f_k`` the length-weighted averages of the neighbouring ``fd`` (ends extrapolated half a
step); on interval ``k`` the correction ``g(x) = f(x) - fd_k`` with ``g0 = f_{k-1} - fd_k``,
``g1 = f_k - fd_k`` integrates to the four-region form documented in
:func:`xmargin.market.curve._g_coefficients`, and ``-ln DF(t) = y_{k-1} + h_k (fd_k x +
G(x))``, ``x = (t - t_{k-1}) / h_k``.  Beyond the last node the last instantaneous forward
is flat; ``t <= 0`` gives 0.  Units: ``t`` in years, values dimensionless.

The two paths agree to rounding (the same operations in the same order; ``x**3`` may be
rounded differently by a unit in the last place): ``tests/test_curve_kernel.py`` compares
them on real curves and on every region of the ``(g0, g1)`` plane.  The compiled loop is
used only after :func:`enable` (the backtest engine, :mod:`xmargin.validation.backtest`);
without Numba, or before that, :mod:`xmargin.market.curve` keeps its array code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Set by :func:`enable` (the backtest engine calls it): importing Numba and loading the
#: compiled code costs about a second, which a one-off ``xmargin price`` should not pay.
ENABLED = False
_COMPILED: dict[str, object] = {}


def _coefficients(g0: float, g1: float, out: FloatArray) -> None:
    """``(a1, a2, a3, b, 1 / e1, c, e2)`` of one interval into ``out`` (see curve.py)."""
    a1 = a2 = a3 = b = e1 = c = 0.0
    e2 = 1.0
    region1 = ((g0 > 0) and (g1 <= -0.5 * g0) and (g1 >= -2 * g0)) or ((g0 < 0) and (g1 >= -0.5 * g0) and (g1 <= -2 * g0))
    region2 = (not region1) and (((g0 < 0) and (g1 > -2 * g0)) or ((g0 > 0) and (g1 < -2 * g0)))
    region3 = ((g0 > 0) and (g1 < 0) and (g1 > -0.5 * g0)) or ((g0 < 0) and (g1 > 0) and (g1 < -0.5 * g0))
    region4 = not (region1 or region2 or region3) and ((g0 != 0) or (g1 != 0))
    diff = g1 - g0 if g1 != g0 else 1.0
    total = g0 + g1 if g0 + g1 != 0 else 1.0
    if region1:
        a1 = g0
        a2 = -2 * g0 - g1
        a3 = g0 + g1
    elif region2:
        eta2 = (g1 + 2 * g0) / diff
        a1 = g0
        e2 = eta2
        c = (g1 - g0) / (3 * (1 - eta2) ** 2)
    elif region3:
        eta3 = 3 * g1 / diff
        a1 = g1
        e1 = eta3
        b = (g0 - g1) * eta3 / 3.0
    elif region4:
        eta4 = g1 / total
        big_a = -g0 * g1 / total
        a1 = big_a
        e1 = eta4
        b = (g0 - big_a) * eta4 / 3.0
        e2 = eta4
        c = (g1 - big_a) / (3 * (1 - eta4) ** 2)
    inv_e1 = 1.0 / e1 if e1 > 0 else 0.0
    if not e1 > 0:
        b = 0.0
    if e2 < 1:
        if c != c:  # NaN (nan_to_num in the array code)
            c = 0.0
        elif c == np.inf:
            c = np.finfo(np.float64).max
        elif c == -np.inf:
            c = -np.finfo(np.float64).max
    else:
        c = 0.0
    out[0], out[1], out[2], out[3], out[4], out[5], out[6] = a1, a2, a3, b, inv_e1, c, e2


def _intervals(times: FloatArray, t: FloatArray, h: FloatArray, iq: npt.NDArray[np.int64], xq: FloatArray) -> None:
    """The curve-independent part of :func:`_log_discount`: node spacings ``h`` (n) and, per time
    ``t[q]``, its interval ``iq[q]`` (1-based: ``(t[i-1], t[i]]``) and position ``xq[q]`` in it."""
    n = times.shape[0]
    t_ext = np.zeros(n + 1)
    t_ext[1:] = times
    idx = np.searchsorted(t_ext, t)  # side="left": interval (t[i-1], t[i]]
    for k in range(n):
        h[k] = t_ext[k + 1] - t_ext[k]
    for q in range(t.shape[0]):
        i = min(max(idx[q], 1), n)
        lo = t_ext[i - 1]
        hk = t_ext[i] - lo
        iq[q] = i
        xq[q] = min(max((t[q] - lo) / hk, 0.0), 1.0)


def _curve_row(times: FloatArray, logdf: FloatArray, s: int, t: FloatArray, h: FloatArray,
               iq: npt.NDArray[np.int64], xq: FloatArray, fd: FloatArray, f: FloatArray, coef: FloatArray,
               out: FloatArray, row: int, q_lo: int, q_hi: int, k_lo: int, k_hi: int) -> None:
    """``out[row, q] = -ln DF(t[q])`` of curve ``logdf[s]`` for ``q`` in ``[q_lo, q_hi)``, whose
    intervals' coefficients are those of ``[k_lo, k_hi)`` (0-based; the full row: ``0, M, 0, n``)
    (:func:`_intervals`' ``h, iq, xq``; ``fd`` (n), ``f`` (n + 1), ``coef`` (n x 7): work space)."""
    n = times.shape[0]
    prev = 0.0
    for k in range(n):
        fd[k] = (logdf[s, k] - prev) / h[k]
        prev = logdf[s, k]
    if n == 1:
        f[0] = fd[0]
        f[1] = fd[0]
    else:
        for j in range(1, n):
            w_left = h[j - 1] / (h[j - 1] + h[j])
            f[j] = w_left * fd[j] + (1.0 - w_left) * fd[j - 1]
        f[0] = fd[0] - 0.5 * (f[1] - fd[0])
        f[n] = fd[n - 1] - 0.5 * (f[n - 1] - fd[n - 1])
    for k in range(k_lo, k_hi):
        _coefficients(f[k] - fd[k], f[k + 1] - fd[k], coef[k])
    last = times[n - 1]
    for q in range(q_lo, q_hi):
        tq = t[q]
        if tq <= 0.0:
            out[row, q] = 0.0
            continue
        if tq > last:
            out[row, q] = logdf[s, n - 1] + f[n] * (tq - last)
            continue
        i = iq[q]
        x = xq[q]
        a1, a2, a3, b, inv_e1, c, e2 = (coef[i - 1, 0], coef[i - 1, 1], coef[i - 1, 2], coef[i - 1, 3],
                                        coef[i - 1, 4], coef[i - 1, 5], coef[i - 1, 6])
        head = max(1.0 - x * inv_e1, 0.0)
        tail = max(x - e2, 0.0)
        g = x * (a1 + x * (a2 + x * a3)) + b * (1.0 - head**3) + c * tail**3
        y_left = logdf[s, i - 2] if i >= 2 else 0.0
        out[row, q] = y_left + h[i - 1] * (fd[i - 1] * x + g)


def _log_discount(times: FloatArray, logdf: FloatArray, t: FloatArray) -> FloatArray:
    """``-ln DF(t)`` (S x M) for node values ``logdf`` (S x n) at ``times`` (n)."""
    s_count, n = logdf.shape
    m = t.shape[0]
    h = np.empty(n)
    iq = np.empty(m, dtype=np.int64)
    xq = np.empty(m)
    _intervals(times, t, h, iq, xq)
    out = np.empty((s_count, m))
    fd = np.empty(n)
    f = np.empty(n + 1)
    coef = np.empty((n, 7))
    for s in range(s_count):
        _curve_row(times, logdf, s, t, h, iq, xq, fd, f, coef, out, s, 0, m, 0, n)
    return out


def _inverse(a: FloatArray) -> FloatArray:
    """Inverses of ``S`` small ``n x n`` matrices (Gauss-Jordan, partial pivoting): the bootstrap
    Newton's per-curve Jacobians, where NumPy's stacked ``inv`` costs ~5 us a 7 x 7 matrix in
    per-matrix LAPACK overhead.  A singular matrix gives non-finite entries (the Newton then
    fails to converge and raises) instead of ``LinAlgError``."""
    s_count, n, _ = a.shape
    out = np.empty((s_count, n, n))
    m = np.empty((n, 2 * n))
    for s in range(s_count):
        for i in range(n):
            for j in range(n):
                m[i, j] = a[s, i, j]
                m[i, n + j] = 1.0 if i == j else 0.0
        for c in range(n):
            p = c
            best = abs(m[c, c])
            for r in range(c + 1, n):
                if abs(m[r, c]) > best:
                    best = abs(m[r, c])
                    p = r
            if p != c:
                for j in range(2 * n):
                    m[c, j], m[p, j] = m[p, j], m[c, j]
            piv = m[c, c]
            for j in range(2 * n):
                m[c, j] /= piv
            for r in range(n):
                if r != c:
                    f = m[r, c]
                    if f != 0.0:
                        for j in range(2 * n):
                            m[r, j] -= f * m[c, j]
        for i in range(n):
            for j in range(n):
                out[s, i, j] = m[i, n + j]
    return out


def inverse(a: FloatArray) -> FloatArray:
    """``S`` inverses of ``a`` (``S x n x n``): the compiled loop after :func:`enable`, else
    :func:`numpy.linalg.inv` (the same matrices to rounding)."""
    if ENABLED and "inverse" in _COMPILED:
        return _COMPILED["inverse"](np.ascontiguousarray(a, dtype=np.float64))  # type: ignore[operator,no-any-return]
    return np.linalg.inv(a)  # type: ignore[no-any-return]


def _flow_values(amounts: FloatArray, cols: npt.NDArray[np.int64], n_flows: npt.NDArray[np.int64],
                 table: FloatArray, date_cols: npt.NDArray[np.int64], settle_col: int) -> FloatArray:
    """``N x S``: ``sum_f amounts[i, f] * (df[s, cols[i, f]] / df_settle[s])`` over the first
    ``n_flows[i]`` flows of each security, summed in flow order from 0 (the arithmetic of
    :func:`xmargin.pricing.bonds.dirty_prices`' dense and sparse products, without their
    per-flow array passes), with ``df[s, u] = table[s, date_cols[u]]`` and ``df_settle[s] =
    table[s, settle_col]`` read in place from the curves' memo (:meth:`ZeroCurves.discount_table`);
    each date's ratio ``df / df_settle`` is divided once per curve, not once per flow."""
    n = amounts.shape[0]
    s_count = table.shape[0]
    n_dates = date_cols.shape[0]
    out = np.empty((n, s_count))
    ratio = np.empty(n_dates)
    for s in range(s_count):
        d0 = table[s, settle_col]
        for u in range(n_dates):
            ratio[u] = table[s, date_cols[u]] / d0
        for i in range(n):
            acc = 0.0
            for f in range(n_flows[i]):
                acc += amounts[i, f] * ratio[cols[i, f]]
            out[i, s] = acc
    return out


def flow_values(amounts: FloatArray, cols: npt.NDArray[np.int64], n_flows: npt.NDArray[np.int64],
                table: FloatArray, date_cols: npt.NDArray[np.int64], settle_col: int) -> FloatArray:
    """Compiled :func:`_flow_values` (call only after :func:`enable`)."""
    kernel = _COMPILED.get("flow_values", _flow_values)
    return kernel(_readonly(amounts, np.float64), _readonly(cols, np.int64), _readonly(n_flows, np.int64),  # type: ignore[operator,no-any-return]
                  _readonly(table, np.float64), _readonly(date_cols, np.int64), int(settle_col))


def _chord_newton(times: FloatArray, logdf: FloatArray, bonds: npt.NDArray[np.int64], flow_t: FloatArray,
                  at_flow: npt.NDArray[np.int64], amounts: FloatArray, starts: npt.NDArray[np.int64],
                  ends: npt.NDArray[np.int64], weights: FloatArray, tol: float, max_iter: int, slow_rate: float,
                  bump: float, res: FloatArray) -> int:
    """The Newton of :func:`xmargin.market.bootstrap_near.bootstrap_near` (its docstring: the
    shared interpolation weights for the first Jacobian, then a chord per curve, a curve's own
    one-sided Jacobian when its error fell by less than ``slow_rate`` in a step), curve by curve:
    each curve stops one step after its own worst par-bond residual is below ``tol`` (the array
    code steps every curve until the last one settles, so a settled curve takes further steps to
    the rounding floor: without the last step a curve bumped 1 bp differed by up to 1e-12 per 100
    face, 5,000 times that in a bump's finite difference).  Updates ``logdf`` (``S x n``) in place and leaves
    the last residuals in ``res`` (``S x nb``, per 100 face); returns the most steps a curve took,
    or -1 when a curve is still at or above ``tol`` (or NaN) after ``max_iter`` steps."""
    s_count, n = logdf.shape
    nb = bonds.shape[0]
    n_times = flow_t.shape[0]
    h = np.empty(n)
    iq = np.empty(n_times, dtype=np.int64)
    xq = np.empty(n_times)
    _intervals(times, flow_t, h, iq, xq)
    w_fd, w_f, w_coef = np.empty(n), np.empty(n + 1), np.empty((n, 7))  # interpolation work space
    lv = np.empty((1, n_times))
    dl = np.empty((1, n_times))
    affected = np.empty((nb, 2), dtype=np.int64)  # per bond node: the flow times its bump moves
    for j in range(nb):
        affected[j, 0] = np.searchsorted(iq, bonds[j])
        affected[j, 1] = np.searchsorted(iq, bonds[j] + 3, side="right")
    cash = np.empty(at_flow.shape[0])
    df = np.empty(n_times)
    inverse = np.zeros((1, nb, nb))
    jac = np.empty((1, nb, nb))
    moved = np.empty((1, n))
    most = 0
    for s in range(s_count):
        previous = np.inf
        settled = False
        for iteration in range(max_iter + 1):
            _curve_row(times, logdf, s, flow_t, h, iq, xq, w_fd, w_f, w_coef, lv, 0, 0, n_times, 0, n)  # -ln DF at the flow times
            for u in range(n_times):
                df[u] = np.exp(-lv[0, u])
            err = 0.0
            for b in range(nb):
                acc = 0.0
                for f in range(starts[b], ends[b]):
                    c = df[at_flow[f]] * amounts[s, f]
                    cash[f] = c
                    acc += c
                r = acc - 100.0
                res[s, b] = r
                if abs(r) > err or r != r:
                    err = abs(r)
            if err < tol:
                settled = True
                most = max(most, iteration)
            elif iteration == max_iter or err != err:
                break
            if iteration == 0:  # shared interpolation weights, the curve's own discounted flows
                for b in range(nb):
                    for k in range(nb):
                        jac[0, b, k] = 0.0
                    for f in range(starts[b], ends[b]):
                        for k in range(nb):
                            jac[0, b, k] -= cash[f] * weights[f, k]
                inverse = _invert(jac)
            elif not settled and err > slow_rate * previous:  # its own Jacobian (one-sided differences)
                for j in range(nb):
                    for k in range(n):
                        moved[0, k] = logdf[s, k]
                    moved[0, bonds[j]] += bump
                    # node c moves the intervals c .. c + 3 (1-based; beyond the last node too when
                    # c >= n - 3): the rest of the curve is unchanged bit for bit, its terms are 0
                    q_lo, q_hi = affected[j, 0], affected[j, 1]
                    _curve_row(times, moved, 0, flow_t, h, iq, xq, w_fd, w_f, w_coef, dl, 0, q_lo, q_hi,
                               max(bonds[j] - 1, 0), min(bonds[j] + 3, n))
                    for b in range(nb):
                        acc = 0.0
                        for f in range(starts[b], ends[b]):
                            u = at_flow[f]
                            if q_lo <= u < q_hi:
                                acc += cash[f] * (dl[0, u] - lv[0, u])
                        jac[0, b, j] = acc / -bump
                inverse = _invert(jac)
            for b in range(nb):
                step = 0.0
                for k in range(nb):
                    step += inverse[0, b, k] * res[s, k]
                logdf[s, bonds[b]] -= step
            if settled:  # one step past the tolerance, as the array code steps a settled curve
                break  # while others are unsettled: its error then falls to the rounding floor
            previous = err
        if not settled:
            return -1
    return most


#: what :func:`_chord_newton` calls: the compiled loop once :func:`enable` has run
_invert = _inverse


def chord_newton(times: FloatArray, logdf: FloatArray, bonds: npt.NDArray[np.int64], flow_t: FloatArray,
                 at_flow: npt.NDArray[np.int64], amounts: FloatArray, starts: npt.NDArray[np.int64],
                 ends: npt.NDArray[np.int64], weights: FloatArray, tol: float, max_iter: int, slow_rate: float,
                 bump: float) -> tuple[int, FloatArray]:
    """Compiled :func:`_chord_newton` (call only after :func:`enable`): ``(passes or -1, residuals)``;
    ``logdf`` (C-contiguous float64) is solved in place."""
    res = np.zeros((logdf.shape[0], len(bonds)))
    passes = _COMPILED["chord_newton"](_plain(times, 1), logdf, _readonly(bonds, np.int64),  # type: ignore[operator]
                                       _plain(flow_t, 1), _readonly(at_flow, np.int64), _plain(amounts, 2),
                                       _readonly(starts, np.int64), _readonly(ends, np.int64), _plain(weights, 2),
                                       float(tol), int(max_iter), float(slow_rate), float(bump), res)
    return int(passes), res


def _readonly(a: npt.NDArray[np.generic], dtype: type) -> npt.NDArray[np.generic]:
    """``a`` as a read-only C-contiguous array of ``dtype`` (the compiled signature)."""
    out = np.ascontiguousarray(a, dtype=dtype)
    if out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
    return out


def enable() -> bool:
    """Compile (or load from the on-disk cache) and switch :mod:`xmargin.market.curve` to the
    compiled loop; ``False`` (and the array code stays) where Numba is not installed."""
    # the helpers are rebound to their compiled versions before the loops that call them compile
    # (numba resolves a called function's global when compiling the caller)
    global ENABLED, _coefficients, _intervals, _curve_row, _invert
    if "log_discount" in _COMPILED:
        ENABLED = True
        return True
    try:
        from numba import njit
    except ImportError:  # pragma: no cover - numba is a declared dependency
        return False
    # one signature each, compiled once and cached on disk (__pycache__)
    _coefficients = njit("void(float64, float64, float64[::1])", cache=True, nogil=True, error_model="numpy")(_coefficients)
    from numba import types

    f1, f2, i1 = types.float64[::1], types.float64[:, ::1], types.int64[::1]
    _intervals = njit(types.void(f1, f1, f1, i1, f1), cache=True, nogil=True, error_model="numpy")(_intervals)
    i = types.int64
    _curve_row = njit(types.void(f1, f2, i, f1, f1, i1, f1, f1, f1, f2, f2, i, i, i, i, i),
                      cache=True, nogil=True, error_model="numpy")(_curve_row)

    ro = {"readonly": True}  # the flow tables of a memoised cash flow set are read-only
    _COMPILED["flow_values"] = njit(types.float64[:, ::1](types.Array(types.float64, 2, "C", **ro),
                                                          types.Array(types.int64, 2, "C", **ro),
                                                          types.Array(types.int64, 1, "C", **ro),
                                                          types.Array(types.float64, 2, "C", **ro),
                                                          types.Array(types.int64, 1, "C", **ro), types.int64),
                                    cache=True, nogil=True, error_model="numpy")(_flow_values)
    _COMPILED["inverse"] = njit("float64[:, :, ::1](float64[:, :, ::1])", cache=True, nogil=True,
                                error_model="numpy")(_inverse)
    _COMPILED["log_discount"] = njit("float64[:, ::1](float64[::1], float64[:, ::1], float64[::1])",
                                     cache=True, nogil=True, error_model="numpy")(_log_discount)
    _invert = _COMPILED["inverse"]
    i64, f64 = types.Array(types.int64, 1, "C", readonly=True), types.float64
    _COMPILED["chord_newton"] = njit(types.int64(f64[::1], f64[:, ::1], i64, f64[::1], i64, f64[:, ::1], i64, i64,
                                                 f64[:, ::1], f64, types.int64, f64, f64, f64[:, ::1]),
                                     cache=True, nogil=True, error_model="numpy")(_chord_newton)
    ENABLED = True
    return True


def disable() -> None:
    """Back to the array code (tests compare the two paths)."""
    global ENABLED
    ENABLED = False


@contextmanager
def compiled() -> Iterator[bool]:
    """Use the compiled loop inside the block (where Numba is installed), then restore the
    previous setting; yields whether it is on."""
    before = ENABLED
    on = enable()
    try:
        yield on
    finally:
        if not before:
            disable()


def _plain(a: npt.ArrayLike, ndim: int) -> FloatArray:
    """A writeable C-contiguous float64 array (the compiled signature; memory-mapped curves
    from the disk cache are read-only and are copied)."""
    out = np.ascontiguousarray(a, dtype=np.float64).reshape((-1,) if ndim == 1 else (np.shape(a)[0], -1))
    return out if out.flags.writeable else out.copy()


def log_discount(times: FloatArray, logdf: FloatArray, t: FloatArray) -> FloatArray:
    """Compiled ``-ln DF(t)``: ``S x M`` for ``logdf`` (``S x n``) at year fractions ``t`` (``M``)."""
    kernel = _COMPILED.get("log_discount", _log_discount) if ENABLED else _log_discount
    return kernel(_plain(times, 1), _plain(logdf, 2), _plain(t, 1))  # type: ignore[operator]
