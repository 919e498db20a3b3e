"""Figures as the service answers them: JSON-safe numbers and the headline fields."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from xmargin.engine.live import HEADLINE, MARGIN_FIELDS

COMPONENTS = tuple(f for f in MARGIN_FIELDS if f not in HEADLINE and f not in ("computable", "fallback"))


def clean(value: Any) -> Any:
    """JSON-safe: NaN / infinity (a figure that cannot be computed) become null."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Mapping):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def headline(row: Mapping[str, Any]) -> dict[str, Any]:
    """The headline fields of ``row``, :func:`clean` (a plain float, nearly every figure, is
    checked here without the type dispatch: this runs three times per trade what-if)."""
    out: dict[str, Any] = {}
    for k in HEADLINE:
        v = row[k]
        out[k] = (v if math.isfinite(v) else None) if type(v) is float else clean(v)
    return out

