"""Residual scenario P&L: the part of each instrument's P&L the Treasury curve does not move.

``pnl_total[i, s] = pnl_curve[i, s] + sum_f loadings[i, f] * changes[f, s]`` in dollars per
unit, with the factors, their exposures and their changes over each scenario's own window
dates from :mod:`xmargin.scenarios.residual` (in a ``filtered`` set rescaled by each factor's
own EWMA volatility, :mod:`xmargin.scenarios.residual_filter`).  Rows the curve pricer could not price stay NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from xmargin.config import PAR_YIELDS_FILE
from xmargin.market.history import load_par_yields
from xmargin.market.snapshot import MarketSnapshot
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.pricing.scenario_pnl import InstrumentPnL
from xmargin.reference.securities import SecuritiesMaster
from xmargin.scenarios.historical import ScenarioSet
from xmargin.scenarios.residual import ResidualParams, ResidualRisk, residual_risk
from xmargin.scenarios.residual_filter import ResidualFilter

FloatArray = npt.NDArray[np.float64]


def residual_for_sets(
    universe: InstrumentUniverse,
    snapshot: MarketSnapshot,
    master: SecuritiesMaster,
    params: ResidualParams,
    sets: Sequence[ScenarioSet],
) -> ResidualRisk | None:
    """Residual exposures of ``universe`` and factor changes over each set's windows
    (``None`` when every factor is switched off)."""
    if not params.any:
        return None
    history = load_par_yields(snapshot.data_dir / PAR_YIELDS_FILE)
    windows = [(s.window_start, s.window_end) for s in sets]
    return residual_risk(universe.instruments, snapshot, master, history, params, windows,
                         [residual_filter(s, params) for s in sets])


def residual_filter(scenarios: ScenarioSet, params: ResidualParams) -> ResidualFilter | None:
    """How ``scenarios``' residual changes are rescaled: by each factor's own EWMA volatility on
    the look-back scenarios of a ``filtered`` set when ``[residual] filtered`` is on, else ``None``."""
    if not params.filtered or scenarios.spec.mode != "filtered":
        return None
    return ResidualFilter(scenarios.as_of, params.decay, params.max_scale,
                          ~scenarios.is_stress & ~scenarios.floor_mask, params.min_scale, params.vol_floor,
                          params.vol_date)


def with_residual(pnl: InstrumentPnL, extra: FloatArray) -> InstrumentPnL:
    """``pnl`` plus the residual P&L ``extra`` (``N x S`` dollars per unit)."""
    if extra.size == 0 or not np.any(extra):
        return pnl
    return InstrumentPnL(pnl.universe, pnl.base_values, pnl.pnl + extra, pnl.failures)


def factor_split(residual: ResidualRisk | None, quantities: FloatArray, changes: FloatArray,
                 account_pnl: FloatArray, scenario: int) -> list[dict[str, float | str]]:
    """How much of an account's loss in ``scenario`` (its VaR scenario) each risk factor carries:
    ``treasury_curve`` and every residual factor, dollars of loss (they sum to ``-account_pnl``)
    and share of that loss."""
    parts: dict[str, float] = {}
    if residual is not None and len(residual.factors):
        exposure = quantities @ residual.loadings  # F, dollars per factor unit
        for f, name in enumerate(residual.factors):
            if exposure[f] != 0.0:
                parts[name] = -float(exposure[f] * changes[f, scenario]) + 0.0
    total = -float(account_pnl[scenario])
    out: list[dict[str, float | str]] = [{"factor": "treasury_curve", "loss": total - sum(parts.values())}]
    out += [{"factor": k, "loss": v} for k, v in parts.items()]
    for row in out:
        row["share"] = float(row["loss"]) / total if total else 0.0  # type: ignore[arg-type]
    return out


def residual_summary(residual: ResidualRisk | None) -> dict[str, object]:
    """The residual factors of a context for the JSON payload."""
    if residual is None:
        return {"factors": [], "notes": ["residual factors switched off ([residual] in the margin TOML)"]}
    exposed = [f for k, f in enumerate(residual.factors) if np.any(residual.loadings[:, k] != 0.0)]
    # the factors this universe is exposed to; the notes describe the data behind the context
    return {"factors": exposed, "coverage": {f: residual.coverage[f] for f in exposed if f in residual.coverage},
            "notes": list(residual.notes)}
