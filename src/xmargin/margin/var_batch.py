"""Value-at-risk of a batch of accounts, partially sorting the caller's P&L buffer in place.

The figures are those of :func:`xmargin.margin.var.model_var` (VaR = the ``k``-th largest loss,
``k = ceil((1 - a) * S)``, floored at 0; stressed scenarios used only when they raise it), bit
for bit: a ``k``-th smallest value does not depend on how it is found.  What differs is the
cost on a batch of ``A x S`` account P&L rows (dollars):

* the rows are partially sorted *in place* (``ndarray.partition``) and the stressed values
  copied over base values already ranked out, so the caller's buffer holds no usable P&L
  afterwards (and no copy of an ``A x S`` array is made);
* one partial sort per row with a single ``k`` (NumPy's partition with two ``k`` at once costs
  3-4 times as much), on the base columns: their ``k_full`` smallest values then hold the base
  set's ``k_base``-th smallest (``k_base <= k_full``), found by a partial sort of those few;
  the stressed columns are copied next to them and the pool of ``k_full + n_stress`` values
  partially sorted for the full set's ``k_full``-th smallest;
* rows that are identically zero (no position) are moved out of the way first (VaR 0).

Only the plain rule is done in place (stressed scenarios as the trailing columns, no floor
columns, no stress weight); any other specification goes to :func:`~xmargin.margin.var.model_var`
on the buffer (which copies), so the answer is always that function's.  The buffer, if any,
multiplies the VaR as there.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from xmargin.margin.var import model_var, tail_rank, var_with_stress

FloatArray = npt.NDArray[np.float64]


def var_with_stress_inplace(
    pnl: FloatArray, is_stress: npt.NDArray[np.bool_], confidence: float, *,
    active: npt.NDArray[np.intp] | None = None,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """``(VaR, stress_used)`` of each row of ``pnl`` (``A x S``, C-contiguous float64, dollars),
    as :func:`xmargin.margin.var.var_with_stress`; ``pnl``'s contents are destroyed.

    ``active``: increasing indices of the rows that may be non-zero, when the caller knows them
    (the accounts holding a position); the other rows must be zero.  Default: found here."""
    if pnl.ndim != 2 or not pnl.flags.c_contiguous or not pnl.flags.writeable:
        raise ValueError("var_with_stress_inplace needs a writeable C-contiguous A x S array")
    n, s = pnl.shape
    var = np.zeros(n)
    used = np.zeros(n, dtype=bool)
    if active is None:
        active = np.flatnonzero(np.any(pnl != 0.0, axis=1))
    m = len(active)
    if m == 0:
        return var, used
    if m < n and active[-1] != m - 1:  # not already the leading rows
        pnl[:m] = pnl[active]  # NumPy buffers the overlapping copy: one A x S pass at most
    rows = pnl[:m]
    n_stress = int(is_stress.sum())
    n_base = s - n_stress
    if n_stress == 0:
        k = tail_rank(s, confidence)
        rows.partition(k - 1, axis=1)
        var[active] = np.maximum(-rows[:, k - 1], 0.0)
        return var, used
    k_base = tail_rank(n_base, confidence)
    k_full = tail_rank(s, confidence)
    kf = min(k_full, n_base)
    if not is_stress[n_base:].all() or k_base > kf or kf + n_stress > n_base:  # the copying way
        var[active], used[active] = var_with_stress(rows, is_stress, confidence)
        return var, used
    head = rows[:, :n_base]
    head.partition(kf - 1, axis=1)  # the kf smallest base values in [:kf], in some order
    top = rows[:, :kf]
    top.partition(k_base - 1, axis=1)  # still the same kf values; the k_base-th smallest at k_base - 1
    base = np.maximum(-rows[:, k_base - 1], 0.0)
    pool = rows[:, : kf + n_stress]
    pool[:, kf:] = rows[:, n_base:]  # the stressed values next to the base set's kf smallest
    pool.partition(k_full - 1, axis=1)
    full = np.maximum(-pool[:, k_full - 1], 0.0)
    var[active] = np.maximum(base, full)
    used[active] = full > base
    return var, used


def model_var_inplace(
    pnl: FloatArray,
    is_stress: npt.NDArray[np.bool_],
    is_floor: npt.NDArray[np.bool_] | None,
    confidence: float,
    *,
    stress_weight: float = 0.0,
    buffer: float = 0.0,
    active: npt.NDArray[np.intp] | None = None,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """:func:`xmargin.margin.var.model_var`, in place where the rule allows (module docstring);
    ``pnl``'s contents are not to be used afterwards; ``active`` as in
    :func:`var_with_stress_inplace`."""
    plain = (is_floor is None or not is_floor.any()) and not (stress_weight > 0.0 and is_stress.any())
    if not plain or pnl.ndim != 2 or not pnl.flags.c_contiguous or not pnl.flags.writeable:
        return model_var(pnl, is_stress, is_floor, confidence, stress_weight=stress_weight, buffer=buffer)
    var, used = var_with_stress_inplace(pnl, is_stress, confidence, active=active)
    return (var * (1.0 + buffer) if buffer else var), used
