"""Reconciliation of the FICC-side and CME-side views of each cross-margining account.

Each clearinghouse keeps its own view of a cross-margining account: the eligible positions
(its own and those the other side reported) and the reduction factor it applied.  Both views
are recorded in the ledger as ``position_snapshot`` entries (source ``FICC`` / ``CME``; the
engine records its own, source ``engine``).  :func:`reconcile` compares two sets of views
account by account and reports every difference as a :class:`Mismatch` naming the account and
the field: ``account`` (known to one side only), ``position:<instrument>`` (quantities that
differ, a missing position counts as 0) or ``reduction_factor``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xmargin.engine.live import LiveEngine
from xmargin.ledger.store import Ledger


@dataclass(frozen=True)
class AccountView:
    positions: Mapping[str, float] = field(default_factory=dict)
    reduction_factor: float | None = None

    def to_data(self, account: str) -> dict[str, Any]:
        return {"account": account, "positions": dict(sorted(self.positions.items())),
                "reduction_factor": self.reduction_factor}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AccountView:
        rf = data.get("reduction_factor")
        return cls({k: float(v) for k, v in data.get("positions", {}).items()}, None if rf is None else float(rf))


@dataclass(frozen=True)
class Mismatch:
    account: str
    field: str
    ficc: Any
    cme: Any

    def __str__(self) -> str:
        return f"{self.account}: {self.field}: FICC {self.ficc!r} vs CME {self.cme!r}"


def _differ(a: float | None, b: float | None, rel: float, abs_: float) -> bool:
    if a is None or b is None:
        return a is not b
    return not math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def reconcile(
    ficc: Mapping[str, AccountView],
    cme: Mapping[str, AccountView],
    *,
    rel_tol: float = 1e-9,
    abs_tol: float = 1e-9,
) -> list[Mismatch]:
    """Every difference between the two sides' views, account by account (sorted)."""
    out: list[Mismatch] = []
    for account in sorted(set(ficc) | set(cme)):
        f, c = ficc.get(account), cme.get(account)
        if f is None or c is None:
            out.append(Mismatch(account, "account", "present" if f else "missing", "present" if c else "missing"))
            continue
        for inst in sorted(set(f.positions) | set(c.positions)):
            qf, qc = f.positions.get(inst, 0.0), c.positions.get(inst, 0.0)
            if _differ(qf, qc, rel_tol, abs_tol):
                out.append(Mismatch(account, f"position:{inst}", qf, qc))
        if _differ(f.reduction_factor, c.reduction_factor, rel_tol, abs_tol):
            out.append(Mismatch(account, "reduction_factor", f.reduction_factor, c.reduction_factor))
    return out


def engine_view(engine: LiveEngine, account: str) -> AccountView:
    """The engine's view of a cross-margining account: its eligible positions and factor."""
    ctx = engine.context
    eligible = ctx.attributes.eligible
    positions = {inst: q for inst, q in engine.positions(account).items() if eligible[ctx.universe.index(inst)]}
    return AccountView(positions, float(engine.margin(account)["applied_reduction_factor"]))


def engine_views(engine: LiveEngine) -> dict[str, AccountView]:
    return {a: engine_view(engine, a) for a in engine.accounts if engine.account(a).cross_margin}


def views_from_ledger(ledger: Ledger) -> dict[str, dict[str, AccountView]]:
    """The latest recorded view of each account per source: ``{source: {account: view}}``."""
    out: dict[str, dict[str, AccountView]] = {}
    for e in ledger.entries():
        if e.kind == "position_snapshot":
            data = e.data
            out.setdefault(e.source, {})[data["account"]] = AccountView.from_data(data)
    return out
