"""Margin optimisation: where to place positions, and which futures hedge lowers margin most.

Both optimisers evaluate candidate books as rows of one sparse matrix through
:func:`~xmargin.margin.calculator.margins_for_positions` (``evaluate_rows``), so thousands of
candidates cost a few array products, not a loop of margin runs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xmargin.margin.calculator import margins_for_positions
from xmargin.margin.context import MarginContext

FloatArray = npt.NDArray[np.float64]

#: Rows per call: the account scenario P&L of a chunk is ``rows x scenarios`` dense.
CHUNK_ROWS = 512


def evaluate_rows(context: MarginContext, q: sp.csr_matrix, xm: npt.NDArray[np.bool_]) -> FloatArray:
    """Cross-margined requirement (``total_after``, dollars; NaN if not computable) of each row."""
    q = sp.csr_matrix(q)
    out = np.empty(q.shape[0])
    for start in range(0, q.shape[0], CHUNK_ROWS):
        rows = slice(start, min(start + CHUNK_ROWS, q.shape[0]))
        out[rows] = margins_for_positions(context, q[rows], np.asarray(xm)[rows]).total_after
    return out
