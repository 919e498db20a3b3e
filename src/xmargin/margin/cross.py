"""The cross-margin reduction, as ``../shared/methodology/README.md`` section 3 sets it out.

For the eligible positions of a cross-margining account:

* ``F_sa``, ``C_sa``: each clearinghouse's stand-alone requirement on its own positions;
* ``F_comb``, ``C_comb``: each clearinghouse's model on the combined portfolio;
* each house's reduction factor ``r_F = max(0, 1 - F_comb / (F_sa + C_sa))`` and
  ``r_C = max(0, 1 - C_comb / (F_sa + C_sa))`` (**choice**: the public sources describe the
  "margin reduction" but not its exact formula; this one measures how much of the
  stand-alone total each house sees as really at risk);
* the applied factor ``r = min(r_F, r_C, cap)``: the more conservative outcome (public),
  capped at 80% (public summaries; the CFTC sample portfolio falls by exactly 80%);
* requirements ``F_sa * (1 - r)`` and ``C_sa * (1 - r)``; saving ``r * (F_sa + C_sa) >= 0``.

No reduction (``r = 0``) when either side has nothing to offset (an account with positions
at one clearinghouse only is not cross-margined) or cannot compute (the fallback).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Reduction:
    ficc_factor: FloatArray
    cme_factor: FloatArray
    applied: FloatArray


def reduction_factors(
    f_sa: FloatArray,
    c_sa: FloatArray,
    f_comb: FloatArray,
    c_comb: FloatArray,
    *,
    cap: float,
    computable: npt.NDArray[np.bool_] | None = None,
) -> Reduction:
    """Reduction factors per account (arrays of equal length; see the module docstring)."""
    total = f_sa + c_sa
    both_sides = (f_sa > 0) & (c_sa > 0)
    ok = both_sides & np.isfinite(f_comb) & np.isfinite(c_comb)
    if computable is not None:
        ok &= computable
    safe_total = np.where(total > 0, total, 1.0)
    r_f = np.where(ok, np.maximum(0.0, 1.0 - np.nan_to_num(f_comb) / safe_total), 0.0)
    r_c = np.where(ok, np.maximum(0.0, 1.0 - np.nan_to_num(c_comb) / safe_total), 0.0)
    applied = np.minimum(np.minimum(r_f, r_c), cap)
    return Reduction(r_f, r_c, applied)
