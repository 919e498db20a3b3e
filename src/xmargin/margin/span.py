"""CME-style SPAN for futures: scan risk, intra-commodity spread charge, inter-commodity credit.

Following CME's SPAN methodology (cmegroup.com, "CME SPAN Methodology Overview"):

1. **Scan risk** per combined commodity (here one per futures root): the largest loss over the
   16 standard scenarios, price moves of 0, +-1/3, +-2/3, +-3/3 of the scanning range (each
   twice, volatility up and down, identical for futures) and the extreme moves of
   ``extreme_multiple`` ranges covered at ``extreme_cover``.  All months of a root move
   together, so calendar spreads scan to zero...
2. ...and are charged the **intra-commodity spread charge**: spreads formed
   (``min(long contracts, short contracts)`` across months) times the calibrated charge per
   spread.  One tier per root (a simplification of CME's tiered spreads).
3. **Inter-commodity spread credits** between roots with opposite rate exposure, in priority
   order of their credit rates: spreads are formed in DV01 units,
   ``s = min(|delta_p|, |delta_q|)``, and each leg earns ``rate * s * WFPR`` where the
   weighted futures price risk ``WFPR = scan risk / |delta|`` (SPAN's delta-based credit).

Requirement = sum of scan risk and spread charges minus credits (maintenance level).
Everything is vectorised over accounts (arrays ``A x P``, P roots).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: Price moves of the 16 SPAN scenarios in multiples of the scanning range (15 and 16 are
#: replaced by +-extreme_multiple) and the fraction of each loss counted.
_MOVES = np.array([0, 0, 1 / 3, 1 / 3, -1 / 3, -1 / 3, 2 / 3, 2 / 3, -2 / 3, -2 / 3, 1, 1, -1, -1, np.nan, np.nan])


@dataclass(frozen=True)
class SpanParameters:
    """Calibrated SPAN parameters, dollars per contract.

    ``inter_pairs`` are ``(p, q, credit rate)`` in the order spreads are formed (highest
    rate first).  ``scan_range[p]`` is the price scanning range of root ``roots[p]``.
    """

    roots: tuple[str, ...]
    scan_range: FloatArray
    intra_charge: FloatArray
    inter_pairs: tuple[tuple[int, int, float], ...]
    extreme_multiple: float = 2.0
    extreme_cover: float = 0.35
    info: dict[str, object] = field(default_factory=dict)

    def index(self, root: str) -> int:
        return self.roots.index(root)

    def scenario_moves(self) -> tuple[FloatArray, FloatArray]:
        """``(moves, weights)``: the 16 price moves in ranges and the loss fraction of each."""
        moves = _MOVES.copy()
        moves[14], moves[15] = self.extreme_multiple, -self.extreme_multiple
        weights = np.ones(16)
        weights[14:] = self.extreme_cover
        return moves, weights


@dataclass(frozen=True)
class SpanInputs:
    """Per account and root (``A x P``): net, long and short contracts and net DV01.

    ``delta`` is the net DV01 in dollars per bp (gain for a 1 bp fall in rates).
    """

    net: FloatArray
    long: FloatArray
    short: FloatArray
    delta: FloatArray


@dataclass(frozen=True)
class SpanResult:
    scan_risk: FloatArray  # A
    intra_spread_charge: FloatArray  # A
    inter_spread_credit: FloatArray  # A
    requirement: FloatArray  # A
    scan_by_root: FloatArray  # A x P
    spot_charge: FloatArray | None = None  # A, set by a CME parameter file's spot-month charges


def span_requirement(inputs: SpanInputs, params: SpanParameters) -> SpanResult:
    """SPAN requirement of every account (see the module docstring)."""
    moves, weights = params.scenario_moves()
    # loss of a long position is -move * range; scenario losses A x P x 16
    per_contract_loss = -(moves * weights)[None, None, :] * params.scan_range[None, :, None]
    scan_by_root = np.maximum((inputs.net[:, :, None] * per_contract_loss).max(axis=2), 0.0)
    spreads = np.minimum(inputs.long, inputs.short)
    intra = (spreads * params.intra_charge[None, :]).sum(axis=1)
    credit = np.zeros(inputs.net.shape[0])
    remaining = np.abs(inputs.delta).copy()
    sign = np.sign(inputs.delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        wfpr = np.where(remaining > 0, scan_by_root / remaining, 0.0)
    held = (remaining > 0).any(axis=0)  # roots some account holds: other pairs form no spread
    for p, q, rate in params.inter_pairs:
        if not (held[p] and held[q]):
            continue
        opposite = sign[:, p] * sign[:, q] < 0
        s = np.where(opposite, np.minimum(remaining[:, p], remaining[:, q]), 0.0)
        credit += rate * s * (wfpr[:, p] + wfpr[:, q])
        remaining[:, p] -= s
        remaining[:, q] -= s
    scan = scan_by_root.sum(axis=1)
    total = np.maximum(scan + intra - credit, 0.0)
    return SpanResult(scan, intra, credit, total, scan_by_root)
