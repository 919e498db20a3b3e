"""Rebuild the engine, collateral and views from the log, and compare with what was recorded.

Entries are applied in sequence order: a ``market_snapshot`` (re)builds the margin context
from its as-of date, par curve, model parameters and eligibility lists (the market history
itself is read from the data directory); ``trade`` / ``cancel`` change positions through the
same :class:`~xmargin.engine.live.LiveEngine` calls as when they were ingested;
``collateral`` moves collateral; ``margin_call`` / ``excess`` restore each account's call
status; ``position_snapshot`` keeps the latest view per source and account; ``margin_result``
entries are collected, and at the end the last one of each account is compared with the
rebuilt engine's figures (:attr:`ReplayState.mismatches`, empty when identical).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np

from xmargin.clearing.collateral import CollateralBook, HaircutSchedule
from xmargin.clearing.reconcile import AccountView
from xmargin.engine.live import MARGIN_FIELDS, LiveEngine, intraday_snapshot
from xmargin.engine.trades import CollateralMovement, Trade, resolve_instrument
from xmargin.errors import XMarginError
from xmargin.ledger.hashing import canonical_json
from xmargin.ledger.store import Entry, Ledger, LedgerError
from xmargin.margin.context import build_context
from xmargin.margin.params import CmeParams, CrossParams, FiccParams, MarginParams, load_params
from xmargin.market.snapshot import MarketSnapshot, load_snapshot
from xmargin.masterdata import load_master
from xmargin.pricing.revalue import InstrumentUniverse
from xmargin.reference.eligibility import EligibilityRules, load_eligibility
from xmargin.reference.securities import SecuritiesMaster
from xmargin.scenarios.historical import ScenarioSpec

PACKAGED_ELIGIBILITY = "xmargin/data/eligibility.toml"


# ----------------------------------------------------------------------------- decoding


def decode_float(value: Any) -> float:
    """A number as the ledger writes it (string, int or null = NaN)."""
    if value is None:
        return math.nan
    return float(value)


def decode_margins(data: Mapping[str, Any]) -> dict[str, float | bool]:
    return {k: (v if isinstance(v, bool) else decode_float(v)) for k, v in data.items()}


def encode_margins(row: Mapping[str, Any]) -> dict[str, Any]:
    """Figures for the ledger: NaN (not computable) as null."""
    return {k: (v if isinstance(v, bool) else (None if not math.isfinite(v) else float(v))) for k, v in row.items()}


def _decode_like(template: Any, value: Any) -> Any:
    if is_dataclass(template):
        kwargs = {f.name: _decode_like(getattr(template, f.name), value[f.name])
                  for f in fields(template) if f.name in value}
        return cast(Any, type(template))(**kwargs)
    if isinstance(template, bool):
        return bool(value)
    if isinstance(template, int):
        return int(value)
    if isinstance(template, float):
        return decode_float(value)
    return value


def params_from_dict(data: Mapping[str, Any]) -> MarginParams:
    """:class:`MarginParams` from its recorded ``to_dict()`` form."""
    ficc = dict(data["ficc"])
    cme = dict(data["cme"])
    table = tuple((math.inf if b is None else float(b), float(r)) for b, r in ficc.pop("floor_table"))
    override = tuple((str(k), float(v)) for k, v in cme.pop("scan_range_override"))
    f = _decode_like(FiccParams(), ficc)
    # records made before the two-window SPAN calibration (no such key) replay with the 10-year window only
    c = _decode_like(CmeParams(span_short_lookback_years=0.0), cme)
    f = FiccParams(**{**{x.name: getattr(f, x.name) for x in fields(f)}, "floor_table": table,
                      "scenarios": _decode_like(ScenarioSpec(), data["ficc"]["scenarios"])})
    c = CmeParams(**{**{x.name: getattr(c, x.name) for x in fields(c)}, "scan_range_override": override,
                     "var_scenarios": _decode_like(ScenarioSpec(horizon_days=2), data["cme"]["var_scenarios"])})
    return MarginParams(f, c, _decode_like(CrossParams(), data["cross"]))


@lru_cache(maxsize=4)
def _master(data_dir: Path) -> SecuritiesMaster:
    return load_master(data_dir)


@lru_cache(maxsize=8)
def _snapshot(as_of: date, data_dir: str | None) -> MarketSnapshot:
    return load_snapshot(as_of, data_dir=data_dir)


_SNAPSHOTS: dict[tuple[Any, ...], MarketSnapshot] = {}


def _snapshot_key(as_of: date, data_dir: Path, tenors: tuple[str, ...], par: np.ndarray) -> tuple[Any, ...]:
    return (as_of, str(data_dir), tuple(tenors), np.asarray(par, dtype=np.float64).tobytes())


def canonical_snapshot(snapshot: MarketSnapshot) -> MarketSnapshot:
    """One object per (date, data directory, curve) in this process, so the context caches
    (keyed by snapshot object) build scenarios and SPAN once per market, whether the market
    comes from the live session or from a replay."""
    key = _snapshot_key(snapshot.as_of, snapshot.data_dir, snapshot.tenors, snapshot.par_yields)
    if key not in _SNAPSHOTS:
        if len(_SNAPSHOTS) >= 8:
            _SNAPSHOTS.pop(next(iter(_SNAPSHOTS)))
        _SNAPSHOTS[key] = snapshot
    return _SNAPSHOTS[key]


def market_data(snapshot: MarketSnapshot, params: MarginParams, eligibility: EligibilityRules,
                schedule: HaircutSchedule, label: str) -> dict[str, Any]:
    """The ``market_snapshot`` entry's data."""
    return {
        "as_of": snapshot.as_of.isoformat(),
        "label": label,
        "tenors": list(snapshot.tenors),
        "par_yields": [float(v) for v in snapshot.par_yields],
        "params": params.to_dict(),
        "eligibility": eligibility.source,
        "haircuts": schedule.to_dict(),
    }


@dataclass(frozen=True)
class Market:
    snapshot: MarketSnapshot
    master: SecuritiesMaster
    params: MarginParams
    eligibility: EligibilityRules
    schedule: HaircutSchedule


def market_from_data(data: Mapping[str, Any], data_dir: str | Path | None) -> Market:
    as_of = date.fromisoformat(data["as_of"])
    base = _snapshot(as_of, None if data_dir is None else str(data_dir))
    if list(base.tenors) != list(data["tenors"]):
        raise LedgerError(f"the market of {as_of} in the data has tenors {base.tenors}, "
                          f"the ledger recorded {data['tenors']}")
    par = np.array([decode_float(v) for v in data["par_yields"]])
    key = _snapshot_key(base.as_of, base.data_dir, base.tenors, par)
    if np.array_equal(par, base.par_yields):
        snapshot = canonical_snapshot(base)
    else:
        snapshot = _SNAPSHOTS.get(key) or canonical_snapshot(intraday_snapshot(base, par))
    elig_src = data["eligibility"]
    eligibility = load_eligibility(None if elig_src == PACKAGED_ELIGIBILITY else elig_src)
    return Market(snapshot, _master(base.data_dir), params_from_dict(data["params"]), eligibility,
                  HaircutSchedule.from_dict({"table": [[None if b is None else decode_float(b), decode_float(h)]
                                                       for b, h in data["haircuts"]["table"]],
                                             "cash": decode_float(data["haircuts"]["cash"])}))


def load_market(
    as_of: date,
    *,
    data_dir: str | Path | None = None,
    config: str | Path | None = None,
    eligibility: str | Path | None = None,
    haircuts: HaircutSchedule | None = None,
) -> Market:
    """The end-of-day market of ``as_of`` with model settings (snapshots cached per process, so
    the heavy scenario and SPAN steps run once per date)."""
    snapshot = canonical_snapshot(_snapshot(as_of, None if data_dir is None else str(data_dir)))
    return Market(snapshot, _master(snapshot.data_dir), load_params(config), load_eligibility(eligibility),
                  haircuts or HaircutSchedule())


# ----------------------------------------------------------------------------- state


class TradeMap(MutableMapping[str, Trade]):
    """Every recorded trade by id, in recording order; trades restored from a checkpoint are
    kept as their ledger payloads and made :class:`Trade` objects only when asked for (a
    restart reads tens of thousands and needs a few), :meth:`payloads` giving them back as
    they were without building any."""

    def __init__(self) -> None:
        self._items: dict[str, Trade | tuple[str, dict[str, Any]]] = {}

    def load_payloads(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """Add ``(source, payload)`` rows, not decoded yet."""
        for src, payload in rows:
            self._items[payload["trade_id"]] = (src, payload)

    def __getitem__(self, trade_id: str) -> Trade:
        value = self._items[trade_id]
        if isinstance(value, tuple):
            value = Trade.from_payload(value[1], value[0])
            self._items[trade_id] = value  # same key: the order is kept
        return value

    def __setitem__(self, trade_id: str, trade: Trade) -> None:
        self._items[trade_id] = trade

    def __delitem__(self, trade_id: str) -> None:
        del self._items[trade_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, trade_id: object) -> bool:
        return trade_id in self._items

    def payloads(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(source, ledger payload)`` of every trade, in order."""
        for value in self._items.values():
            yield value if isinstance(value, tuple) else (value.source, value.payload())


@dataclass
class ReplayState:
    """Everything rebuilt from the log."""

    engine: LiveEngine | None = None
    market: Market | None = None
    collateral: CollateralBook | None = None
    market_seq: int | None = None
    entries: int = 0
    trades: TradeMap = field(default_factory=TradeMap)  # every trade recorded
    cancelled: set[str] = field(default_factory=set)
    movements: dict[str, CollateralMovement] = field(default_factory=dict)
    last_time: dict[tuple[str, str], str] = field(default_factory=dict)  # (source, account) -> latest time
    recorded: dict[str, dict[str, float | bool]] = field(default_factory=dict)  # last margin result per account
    recorded_seq: dict[str, int] = field(default_factory=dict)
    views: dict[str, dict[str, AccountView]] = field(default_factory=dict)
    earlier_mismatches: list[tuple[str, str, Any, Any]] = field(default_factory=list)  # found at checkpoints

    def start_market(self, market: Market, seq: int | None) -> None:
        market = replace(market, snapshot=canonical_snapshot(market.snapshot))
        if self.engine is None:
            ctx = build_context(market.snapshot, market.master, InstrumentUniverse.of([]), market.params,
                                market.eligibility)
            self.engine = LiveEngine(ctx)
            self.collateral = CollateralBook(market.snapshot, market.master, market.schedule)
        else:
            same = market.params == self.engine.context.params and market.eligibility == self.engine.context.eligibility
            self.engine.set_market(market.snapshot, params=None if same else market.params,
                                   eligibility=None if same else market.eligibility)
            assert self.collateral is not None
            self.collateral.set_snapshot(market.snapshot)
            self.collateral.schedule = market.schedule
        self.market = market
        self.market_seq = seq

    def apply(self, e: Entry, data_dir: str | Path | None) -> None:
        data = e.data
        if e.time is not None:
            account = data.get("account") if e.kind != "cancel" else getattr(self.trades.get(data["trade_id"]), "account", None)
            key = (e.source, str(account or ""))
            self.last_time[key] = max(self.last_time.get(key, ""), e.time)
        if e.kind == "market_snapshot":
            self.start_market(market_from_data(data, data_dir), e.seq)
            return
        if e.kind == "position_snapshot":
            self.views.setdefault(e.source, {})[data["account"]] = AccountView.from_data(data)
            return
        if self.engine is None or self.market is None or self.collateral is None:
            raise LedgerError(f"entry {e.seq} ({e.kind}) comes before any market snapshot")
        if e.kind == "trade":
            trade = Trade.from_payload(data, e.source)
            inst = resolve_instrument(trade, as_of=self.market.snapshot.as_of, master=self.market.master)
            self.engine.trade(trade.trade_id, trade.account_info, inst, trade.quantity)
            self.trades[trade.trade_id] = trade
        elif e.kind == "cancel":
            self.engine.cancel(data["trade_id"])
            self.cancelled.add(data["trade_id"])
        elif e.kind == "collateral":
            move = CollateralMovement.from_payload(data, e.source)
            self.collateral.apply(move)
            self.movements[move.movement_id] = move
        elif e.kind == "margin_result":
            self.recorded[data["account"]] = decode_margins(data["margins"])
            self.recorded_seq[data["account"]] = e.seq
        elif e.kind in ("margin_call", "excess"):
            self.collateral.restore(e.kind, data)
        elif e.kind == "checkpoint":
            apply_checkpoint(self, e)

    def preload(self, following: list[Entry]) -> None:
        """Extend the engine's universe once with the instruments of the trades that follow, up
        to the next market snapshot (rows are priced one by one either way, so the figures are
        bit-identical to growing the universe trade by trade, only faster)."""
        if self.engine is None or self.market is None:
            return
        instruments = []
        for e in following:
            if e.kind == "market_snapshot":
                break
            if e.kind == "trade":
                trade = Trade.from_payload(e.data, e.source)
                instruments.append(resolve_instrument(trade, as_of=self.market.snapshot.as_of, master=self.market.master))
        if instruments:
            self.engine.add_instruments(instruments)

    @property
    def mismatches(self) -> list[tuple[str, str, float | bool, float | bool]]:
        """``(account, field, rebuilt, recorded)`` wherever the rebuilt figures differ."""
        out: list[tuple[str, str, float | bool, float | bool]] = list(self.earlier_mismatches)
        if self.engine is None:
            return out
        for account, rec in self.recorded.items():
            live = self.engine.margin(account) if account in self.engine.accounts else {}
            for k in MARGIN_FIELDS:
                a, b = live.get(k, math.nan), rec.get(k, math.nan)
                same = a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
                if not same:
                    out.append((account, k, a, b))
        return out


def figures_digest(engine: LiveEngine) -> str:
    """SHA-256 of every account's figures (ledger encoding, canonical JSON), in account order."""
    h = hashlib.sha256()
    for a in engine.accounts:
        h.update(canonical_json({"account": a, "margins": encode_margins(engine.margin(a))}).encode())
    return h.hexdigest()


def apply_checkpoint(state: ReplayState, e: Entry) -> None:
    """What a ``checkpoint`` entry does (:mod:`xmargin.clearing.checkpoint`): every account
    recomputed from its positions; the recorded figures compared up to here, then rebased."""
    if state.engine is None:
        raise LedgerError(f"entry {e.seq} (checkpoint) comes before any market snapshot")
    state.earlier_mismatches += state.mismatches
    state.engine.rebuild()
    state.recorded = {a: state.engine.margin(a) for a in state.recorded if a in state.engine.accounts}
    digest = figures_digest(state.engine)
    if digest != e.data.get("figures_sha256"):
        state.earlier_mismatches.append((f"(checkpoint {e.seq})", "figures_sha256", digest,
                                         str(e.data.get("figures_sha256"))))


def replay(ledger: Ledger, *, data_dir: str | Path | None = None) -> ReplayState:
    """Rebuild the state from every entry of ``ledger`` (see the module docstring)."""
    state = ReplayState()
    entries = list(ledger.entries())
    for i, e in enumerate(entries):
        try:
            state.apply(e, data_dir)
            if e.kind == "market_snapshot":  # price this market's trade instruments in one go
                state.preload(entries[i + 1 :])
        except XMarginError as exc:
            raise LedgerError(f"replay stopped at entry {e.seq} ({e.kind} {e.ref or ''}): {exc}") from None
        state.entries += 1
    return state
