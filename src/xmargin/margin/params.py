"""Every margin-model parameter in one place, with where each value comes from.

Public figures (``../shared/methodology/README.md``): FICC 99% confidence over a 3-day
horizon; CME SPAN scanning ranges covering at least 99% of one-day moves with the 16
standard scenarios (extreme moves of twice the range covered at 35%); the cross-margin
reduction capped at 80% (CFTC sample portfolio: $343.24m -> $68.65m).  Values marked
**choice** are ours where the public record is silent; they are configurable through a TOML
file (``xmargin margin --config FILE``, sections ``[ficc]``, ``[cme]``, ``[cross]``,
``[residual]``).
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from xmargin.errors import InputError
from xmargin.scenarios.historical import ScenarioSpec
from xmargin.scenarios.residual import ResidualParams

#: Remaining-maturity buckets (upper bounds in years) and the FICC VaR floor per bucket as a
#: fraction of gross market value.  **Choice**: about a third of a typical 3-day 99% move at
#: each maturity, so the floor binds only for well-hedged books.
DEFAULT_FLOOR_TABLE: tuple[tuple[float, float], ...] = (
    (1.0, 0.0010),
    (3.0, 0.0025),
    (5.0, 0.0040),
    (10.0, 0.0060),
    (20.0, 0.0090),
    (float("inf"), 0.0120),
)


@dataclass(frozen=True)
class FiccParams:
    """FICC-style historical-simulation VaR (cash Treasuries and repo)."""

    confidence: float = 0.99  # public (DTCC)
    #: 3-day horizon: public.  Filtered historical simulation: choice, backtest-justified
    #: (docs/methodology.md section 4.1, docs/validation.md).
    scenarios: ScenarioSpec = field(default_factory=lambda: ScenarioSpec(horizon_days=3, mode="filtered"))
    floor_table: tuple[tuple[float, float], ...] = DEFAULT_FLOOR_TABLE  # choice
    #: Concentration add-on (our stand-in for FICC's Margin Liquidity Adjustment), **choice**:
    #: net DV01 per maturity bucket beyond ``concentration_dv01_threshold`` dollars per bp is
    #: charged ``concentration_cost_bp`` basis points of extra liquidation move.
    concentration_dv01_threshold: float = 500_000.0
    concentration_cost_bp: float = 2.0
    #: Path-dependent add-ons (DTCC "FICC market risk"; applied by the backtest, which has the
    #: member's history; :mod:`xmargin.margin.ficc_addons`).  Portfolio Differential: EWMA of
    #: the increases in the VaR charge, decay ``pd_decay`` (**choice**).  Backtesting Charge:
    #: when coverage over ``backtesting_window_days`` falls below ``backtesting_target``.
    portfolio_differential: bool = True
    pd_decay: float = 0.94
    backtesting_charge: bool = True
    backtesting_target: float = 0.99
    backtesting_window_days: int = 250


@dataclass(frozen=True)
class CmeParams:
    """CME-style models: SPAN for futures stand-alone, historical VaR for combined."""

    standalone_model: str = "span"  # "span" (default) or "var"
    var_confidence: float = 0.99  # choice (public: 99% for SPAN coverage)
    var_scenarios: ScenarioSpec = field(default_factory=lambda: ScenarioSpec(horizon_days=2, mode="filtered"))  # choice: 2 days, FHS
    span_confidence: float = 0.99  # public: scanning range covers >= 99% of 1-day moves
    span_lookback_years: float = 10.0  # choice
    #: Short window of the SPAN calibration: each parameter is the larger of the short- and
    #: the long-window figure (CME reviews margins against short- and long-term volatility).
    #: 0 turns it off.  **choice**: 1 year.
    span_short_lookback_years: float = 1.0
    #: Backtests recalibrate SPAN monthly and also when the 1-day EWMA volatility of the 10-year
    #: par yield moves more than this fraction from its level at the last calibration (0: off).
    span_vol_trigger: float = 0.25
    #: ``"filtered"``: the SPAN figures are also computed from the long window's one-day changes
    #: rescaled to today's EWMA volatility (FHS, :mod:`xmargin.scenarios.filtered`, decay
    #: ``span_decay``), and the larger is kept (for a credit rate, the smaller); ``"historical"``:
    #: the two plain windows only.  **choice**, default filtered (docs/methodology.md section 7.2:
    #: the ZN backtest 2005-2025).
    span_mode: str = "filtered"
    span_decay: float = 0.97
    extreme_multiple: float = 2.0  # standard SPAN scenarios 15-16
    extreme_cover: float = 0.35  # standard SPAN scenarios 15-16
    #: Inter-commodity credit rates are calibrated, capped here (**choice**).
    max_inter_credit: float = 0.85
    #: Fixed overrides of the calibrated scanning range: ``((root, dollars per contract), ...)``.
    scan_range_override: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class CrossParams:
    """The cross-margining arrangement."""

    reduction_cap: float = 0.80  # public summaries; CFTC sample portfolio falls exactly 80%


@dataclass(frozen=True)
class MarginParams:
    ficc: FiccParams = field(default_factory=FiccParams)
    cme: CmeParams = field(default_factory=CmeParams)
    cross: CrossParams = field(default_factory=CrossParams)
    #: Residual risk factors beyond the Treasury curve (:mod:`xmargin.scenarios.residual`).
    residual: ResidualParams = field(default_factory=ResidualParams)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-safe: the open last floor bucket is ``None``), recorded with
        every result so it can be reproduced."""
        data = asdict(self)
        data["ficc"]["floor_table"] = [[None if b == float("inf") else b, r] for b, r in self.ficc.floor_table]
        return data


#: Accepted ranges of numeric parameters: ``(low, high, low inclusive, high inclusive)``.
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "confidence": (0.0, 1.0, False, False),
    "var_confidence": (0.0, 1.0, False, False),
    "span_confidence": (0.0, 1.0, False, False),
    "reduction_cap": (0.0, 1.0, True, True),
    "extreme_cover": (0.0, 1.0, True, True),
    "max_inter_credit": (0.0, 1.0, True, True),
    "concentration_dv01_threshold": (0.0, float("inf"), True, False),
    "concentration_cost_bp": (0.0, float("inf"), True, False),
    "extreme_multiple": (0.0, float("inf"), False, False),
    "span_lookback_years": (0.0, float("inf"), False, False),
    "stress_window_days": (1.0, float("inf"), True, False),
    "horizon_days": (1.0, float("inf"), True, False),
    "lookback_years": (0.0, float("inf"), False, False),
    "decay": (0.0, 1.0, False, False),
    "max_scale": (1.0, float("inf"), True, False),
    "correlation_floor": (0.0, 1.0, False, True),
    "buffer": (0.0, 1.0, True, True),
    "stress_weight": (0.0, 1.0, True, False),
    "span_short_lookback_years": (0.0, float("inf"), True, False),
    "span_vol_trigger": (0.0, float("inf"), True, False),
    "span_decay": (0.0, 1.0, False, False),
    "pd_decay": (0.0, 1.0, False, False),
    "backtesting_target": (0.0, 1.0, False, False),
    "backtesting_window_days": (1.0, float("inf"), True, False),
    "spread_smoothing_days": (1.0, 250.0, True, True),
    "min_scale": (0.0, 1.0, True, True),
    "vol_floor": (0.0, 1.0, True, True),
}
_CHOICES: dict[str, tuple[str, ...]] = {"standalone_model": ("span", "var"), "shift": ("absolute", "relative"),
                                        "mode": ("historical", "filtered"), "span_mode": ("historical", "filtered"),
                                        "vol_date": ("start", "end")}
#: Alternative spellings of table keys: ``[cme.scenarios]`` is ``[cme.var_scenarios]``.
_ALIASES: dict[str, dict[str, str]] = {"cme": {"scenarios": "var_scenarios"}}


def _checked(current: Any, value: Any, key: str, section: str, path: Path) -> Any:
    """``value`` for parameter ``key`` if it has the default's type and an accepted value."""
    name = f"{section}.{key}"
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise InputError(f"{value!r} is not true or false", source=path, field=name)
        return value
    if isinstance(current, str):
        if not isinstance(value, str) or (key in _CHOICES and value not in _CHOICES[key]):
            raise InputError(f"{value!r} is not one of {list(_CHOICES.get(key, ['a string']))}", source=path, field=name)
        return value
    if isinstance(current, int | float) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(current, int) and value != int(value)):
            kind = "a whole number" if isinstance(current, int) else "a number"
            raise InputError(f"{value!r} is not {kind}", source=path, field=name)
        lo, hi, lo_in, hi_in = _RANGES.get(key, (float("-inf"), float("inf"), True, True))
        if not ((lo <= value if lo_in else lo < value) and (value <= hi if hi_in else value < hi)):
            raise InputError(f"{value!r} is outside {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}",
                             source=path, field=name)
        return type(current)(value)
    return value


def _apply(obj: Any, values: dict[str, Any], section: str, path: Path) -> Any:
    if not isinstance(values, dict):
        raise InputError("expected a table", source=path, field=section)
    names = {f.name: f for f in fields(obj)}
    updates: dict[str, Any] = {}
    for key, value in values.items():
        key = _ALIASES.get(section, {}).get(key, key)
        if key not in names:
            raise InputError(f"unknown parameter '{key}' in [{section}]", source=path, field=key)
        current = getattr(obj, key)
        if isinstance(current, ScenarioSpec):
            if not isinstance(value, dict):
                raise InputError("expected a table", source=path, field=f"{section}.{key}")
            try:
                value = _apply(current, value, f"{section}.{key}", path)
            except InputError as exc:
                if exc.source is not None:
                    raise
                # a cross-field check of ScenarioSpec (e.g. a window shorter than the horizon)
                raise InputError(exc.reason, source=path, field=f"{section}.{key}.{exc.field}") from None
        elif key in ("floor_table", "scan_range_override"):
            try:
                if key == "floor_table":
                    value = tuple((float("inf") if a is None or a == "inf" else float(a), float(b)) for a, b in value)
                else:
                    value = tuple((str(k), float(v)) for k, v in dict(value).items())
            except (TypeError, ValueError) as exc:
                raise InputError(f"malformed value ({exc})", source=path, field=f"{section}.{key}") from None
        else:
            value = _checked(current, value, key, section, path)
        updates[key] = value
    return replace(obj, **updates)


def load_params(path: str | Path | None) -> MarginParams:
    """Defaults, overridden by a TOML file when given."""
    params = MarginParams()
    if path is None:
        return params
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read margin configuration: {exc}", source=path) from None
    for section in data:
        if section not in ("ficc", "cme", "cross", "residual"):
            raise InputError(f"unknown section [{section}]", source=path, field=section)
    return MarginParams(
        ficc=_apply(params.ficc, data.get("ficc", {}), "ficc", path),
        cme=_apply(params.cme, data.get("cme", {}), "cme", path),
        cross=_apply(params.cross, data.get("cross", {}), "cross", path),
        residual=_apply(params.residual, data.get("residual", {}), "residual", path),
    )
