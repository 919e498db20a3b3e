"""Actual futures prices through history: per-contract settlements or continuous front series.

Two input forms, told apart by the header:

* **settlements** ``date,symbol,settle``: one row per contract per day, as clearing members
  receive them from CME (``ZNU24``, ``SR3H26``; any roots in one file);
* **continuous** ``date,open,high,low,close,volume`` (the unadjusted front-month series of
  ``../shared/data/futures/``), or any header with a ``settle`` or ``close`` column and no
  ``symbol`` (Quandl CHRIS files); the root is the file name (``ZN.csv``; CHRIS codes ``TY1``
  ``FV1`` ``TU1`` ``US1`` map to ZN ZF ZT ZB).

A directory is read file by file (top-level ``*.csv`` only); a file whose name is no root
is skipped with an :class:`IgnoredFileWarning`.  Prices are in points (points of par for
Treasury futures, 100 minus a rate for SOFR and fed funds futures).

**Which contract a continuous row is.**  An unadjusted front series holds one contract until
it switches to the next, and the switch day differs by vendor and root (Yahoo switches ZN and
ZB after the last trading day, ZF some days before its own).  A row dated ``d`` is taken to be
the CME front contract, the nearest one whose last trading day is on or after ``d``, and is
**not used** (``usable`` False) when ``d`` lies in that contract's delivery month (Treasury
futures) or its last five business days (rate futures): there the series may follow either
contract.  So no price change is ever taken across a roll.  Settlement files name their
contract and need none of this.

**Checks.**  Errors (:class:`~xmargin.errors.InputError` naming file, row and field): a bad
date, a price that is not a positive number, an unknown or malformed symbol, a settlement
after the contract's last trading day, a duplicated date (continuous) or date and symbol
(settlements), a missing column.  Named warnings (kept in ``FuturesHistory.warnings`` and
issued once through :mod:`warnings`): :class:`OffTickWarning` for prices off the finest tick
grid of the root (1/256 point for Treasury futures, 0.0025 for rate futures) by more than 5%
of a tick (the price is kept: early Yahoo ZT closes are like that); :class:`GapWarning` for
more than ``MAX_GAP_BUSINESS_DAYS`` business days between consecutive rows of a series (no
change is taken across a gap: windows with an end in it have no price); weekend rows are
dropped with a :class:`GapWarning`.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from xmargin.config import file_stamp
from xmargin.errors import InputError, XMarginError
from xmargin.reference.calendar import add_business_days
from xmargin.reference.futures import TREASURY_FUTURES, TreasuryFuture, parse_future_symbol
from xmargin.reference.stir import MONTH_CODES, RATE_FUTURES, RateFuture

FloatArray = npt.NDArray[np.float64]
DateArray = npt.NDArray[np.datetime64]
IntArray = npt.NDArray[np.int64]

FUTURES_DIR = Path("futures")
MAX_GAP_BUSINESS_DAYS = 5
#: Finest tick of each product family, points.
TICK = {"treasury": 1.0 / 256.0, "rate": 0.0025}
#: Quandl CHRIS codes of the front contract (``TY1``) and their CME Globex roots.
CHRIS_ROOTS = {"TY": "ZN", "FV": "ZF", "TU": "ZT", "US": "ZB", "UL": "UB", "FF": "ZQ"}


class FuturesDataWarning(UserWarning):
    """Something in a futures price file that is used with care, not rejected."""


class OffTickWarning(FuturesDataWarning):
    """Prices off the product's tick grid."""


class GapWarning(FuturesDataWarning):
    """Missing business days in a price series (or weekend rows dropped)."""


class IgnoredFileWarning(FuturesDataWarning):
    """A file in the futures directory that is no known root."""


def contract_key(year: int, month: int) -> int:
    """``year * 100 + month``: contracts sort by it."""
    return year * 100 + month


def make_contract(root: str, key: int) -> TreasuryFuture | RateFuture:
    year, month = divmod(key, 100)
    return TreasuryFuture(root, year, month) if root in TREASURY_FUTURES else RateFuture(root, year, month)


def symbol_of(root: str, key: int) -> str:
    year, month = divmod(key, 100)
    return f"{root}{MONTH_CODES[month - 1]}{year % 100:02d}"


@dataclass(frozen=True, eq=False)
class RootPrices:
    """Prices of one root: row ``k`` is contract ``contract[k]`` on ``dates[k]`` (sorted by
    contract, then date).  ``usable`` is False where the contract of a continuous row is
    ambiguous (module docstring)."""

    root: str
    source: Path
    continuous: bool
    dates: DateArray
    contract: IntArray
    price: FloatArray
    usable: npt.NDArray[np.bool_]

    def price_on(self, contracts: IntArray, days: DateArray) -> FloatArray:
        """Usable price of ``contracts[j]`` on ``days[j]``; NaN where there is none."""
        contracts = np.asarray(contracts, dtype=np.int64)
        days = np.asarray(days, dtype="datetime64[D]")
        # rows are sorted by (contract, date): search the combined key
        key = self.contract.astype(np.int64) * 100_000 + self.dates.astype(np.int64)
        want = contracts * 100_000 + days.astype(np.int64)
        i = np.clip(np.searchsorted(key, want), 0, max(len(key) - 1, 0))
        ok = (len(key) > 0) & (key[i] == want) & self.usable[i] if len(key) else np.zeros(len(want), bool)
        return np.where(ok, self.price[i] if len(key) else np.nan, np.nan)

    def front(self, days: DateArray) -> IntArray:
        """The nearest contract with a usable price on each day that is not yet in its delivery
        month (Treasury) or last five business days (rate futures); -1 where there is none."""
        days = np.asarray(days, dtype="datetime64[D]")
        out = np.full(len(days), -1, dtype=np.int64)
        ok = self.usable & _before_expiry(self.root, self.contract, self.dates)
        order = np.lexsort((self.contract[ok], self.dates[ok]))  # by date, then contract
        d, c = self.dates[ok][order], self.contract[ok][order]
        first = np.r_[True, d[1:] != d[:-1]] if len(d) else np.zeros(0, bool)
        d, c = d[first], c[first]
        i = np.clip(np.searchsorted(d, days), 0, max(len(d) - 1, 0))
        hit = (len(d) > 0) & (d[i] == days) if len(d) else np.zeros(len(days), bool)
        out[hit] = c[i[hit]]
        return out


@lru_cache(maxsize=4096)
def _cutoff(root: str, key: int) -> np.datetime64:
    """First day a position in the contract is no longer the front (module docstring)."""
    contract = make_contract(root, key)
    if isinstance(contract, TreasuryFuture):
        return np.datetime64(contract.first_delivery_day, "D")
    return np.datetime64(add_business_days(contract.last_trading_day, -5), "D")


def _before_expiry(root: str, contracts: IntArray, days: DateArray) -> npt.NDArray[np.bool_]:
    keys, inverse = np.unique(contracts, return_inverse=True)
    cut = np.array([_cutoff(root, int(k)) for k in keys], dtype="datetime64[D]")
    return days < cut[inverse.ravel()]


@dataclass(frozen=True, eq=False)
class FuturesHistory:
    """Actual futures prices by root, with what was noticed while reading them."""

    source: Path
    roots: dict[str, RootPrices]
    warnings: tuple[str, ...] = field(default=())

    def get(self, root: str) -> RootPrices | None:
        return self.roots.get(root)


def _is_treasury(root: str) -> bool:
    return root in TREASURY_FUTURES


def _root_of_file(path: Path) -> str | None:
    stem = path.stem.upper()
    if stem in TREASURY_FUTURES or stem in RATE_FUTURES:
        return stem
    if stem.endswith("1") and stem[:-1] in CHRIS_ROOTS:
        return CHRIS_ROOTS[stem[:-1]]
    return None


def _parse_price(text: str, source: Path, row: int, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"'{text}' is not a number", source=source, row=row, field=name) from None
    if not np.isfinite(value) or value <= 0.0:
        raise InputError(f"price {value} is not a positive number", source=source, row=row, field=name)
    return value


def _parse_day(text: str, source: Path, row: int) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"'{text}' is not a date (expected YYYY-MM-DD)", source=source, row=row,
                         field="date") from None


def _off_tick(root: str, prices: FloatArray) -> npt.NDArray[np.bool_]:
    tick = TICK["treasury" if _is_treasury(root) else "rate"]
    x = prices / tick
    return np.abs(x - np.round(x)) > 0.05


def front_by_rule(root: str, days: DateArray) -> IntArray:
    """The CME front contract on each day: the nearest whose last trading day is on or after it."""
    months = (3, 6, 9, 12) if _is_treasury(root) or root == "SR3" else tuple(range(1, 13))
    years = range(int(str(days.min())[:4]), int(str(days.max())[:4]) + 2)
    keys = np.array([contract_key(y, m) for y in years for m in months], dtype=np.int64)
    ltd = np.array([_last_trading(root, int(k)) for k in keys], dtype="datetime64[D]")
    return keys[np.searchsorted(ltd, days, side="left")]


@lru_cache(maxsize=8192)
def _last_trading(root: str, key: int) -> np.datetime64:
    return np.datetime64(make_contract(root, key).last_trading_day, "D")


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip().lower() for h in next(reader, [])]
        if not header:
            raise InputError("file is empty", source=path, row=1)
        rows = [(n, rec) for n, rec in enumerate(reader, start=2) if rec and any(c.strip() for c in rec)]
    return header, rows


def _read_continuous(path: Path, root: str, header: list[str], rows: list[tuple[int, list[str]]],
                     notes: list[tuple[type[FuturesDataWarning], str]]) -> RootPrices:
    if "date" not in header:
        raise InputError("no 'date' column", source=path, row=1, field="date")
    col_name = "settle" if "settle" in header else "close" if "close" in header else None
    if col_name is None:
        raise InputError("a continuous series needs a 'settle' or 'close' column", source=path, row=1, field="close")
    di, pi = header.index("date"), header.index(col_name)
    short = [n for n, rec in rows if len(rec) <= max(di, pi)]
    if short:
        raise InputError(f"expected {len(header)} fields", source=path, row=short[0], field=col_name)
    nums = np.array([n for n, rec in rows if rec[pi].strip()], dtype=np.int64)
    day_text = [rec[di].strip() for _, rec in rows]
    price_text = [rec[pi].strip() for _, rec in rows if rec[pi].strip()]
    try:  # vectorised parse; on failure the row-by-row parsers name the culprit
        all_days = np.array(day_text, dtype="datetime64[D]")
        if any(len(t) != 10 for t in day_text):
            raise ValueError
    except ValueError:
        for (n, _rec), t in zip(rows, day_text, strict=True):
            _parse_day(t, path, n)
        raise
    uniq, first, counts = np.unique(all_days, return_index=True, return_counts=True)
    if (counts > 1).any():
        d = uniq[np.flatnonzero(counts > 1)[0]]
        where = np.flatnonzero(all_days == d)
        raise InputError(f"duplicate date {d} (first seen in row {rows[where[0]][0]})", source=path,
                         row=rows[where[1]][0], field="date")
    try:
        px = np.array(price_text, dtype=float)
    except ValueError:
        for n, t in zip(nums, price_text, strict=True):
            _parse_price(t, path, int(n), col_name)
        raise
    bad = np.flatnonzero(~np.isfinite(px) | (px <= 0.0))
    if len(bad):
        _parse_price(price_text[bad[0]], path, int(nums[bad[0]]), col_name)
    has_price = np.array([bool(rec[pi].strip()) for _, rec in rows])
    days_arr = all_days[has_price]
    weekday = np.is_busday(days_arr, weekmask="1111100")
    if not weekday.all():
        notes.append((GapWarning, f"{path}: {int((~weekday).sum())} weekend row(s) dropped "
                                  f"(first {days_arr[~weekday][0]})"))
    days_arr, px = days_arr[weekday], px[weekday]
    if not len(days_arr):
        raise InputError("no data rows", source=path)
    order = np.argsort(days_arr, kind="stable")
    dts, px = days_arr[order], px[order]
    contract = front_by_rule(root, dts)
    usable = _before_expiry(root, contract, dts)
    _note_gaps_and_ticks(path, root, dts, px, notes)
    order = np.lexsort((dts, contract))
    return RootPrices(root, path, True, dts[order], contract[order], px[order], usable[order])


def _note_gaps_and_ticks(path: Path, root: str, dts: DateArray, px: FloatArray,
                         notes: list[tuple[type[FuturesDataWarning], str]], label: str = "") -> None:
    if len(dts) > 1:
        gaps = np.busday_count(dts[:-1], dts[1:]) - 1
        big = np.flatnonzero(gaps > MAX_GAP_BUSINESS_DAYS)
        for k in big[:5]:
            notes.append((GapWarning, f"{path}{label}: no prices from {dts[k] + 1} to {dts[k + 1] - 1} "
                                      f"({int(gaps[k])} business days); no change is taken across the gap"))
        if len(big) > 5:
            notes.append((GapWarning, f"{path}{label}: {len(big) - 5} more gaps of over {MAX_GAP_BUSINESS_DAYS} days"))
    off = np.flatnonzero(_off_tick(root, px))
    if len(off):
        tick = "1/256" if _is_treasury(root) else str(TICK["rate"])
        notes.append((OffTickWarning, f"{path}{label}: {len(off)} price(s) off the {tick} tick grid of {root} "
                                      f"(first {dts[off[0]]}: {px[off[0]]}); kept as given"))


def _read_settlements(path: Path, header: list[str], rows: list[tuple[int, list[str]]],
                      notes: list[tuple[type[FuturesDataWarning], str]]) -> dict[str, RootPrices]:
    for name in ("date", "symbol", "settle"):
        if name not in header:
            raise InputError(f"no '{name}' column (settlement files are 'date,symbol,settle')",
                             source=path, row=1, field=name)
    di, si, pi = header.index("date"), header.index("symbol"), header.index("settle")
    seen: dict[tuple[date, str], int] = {}
    by_root: dict[str, tuple[list[date], list[int], list[float]]] = {}
    for n, rec in rows:
        if len(rec) <= max(di, si, pi):
            raise InputError(f"expected {len(header)} fields, found {len(rec)}", source=path, row=n)
        d = _parse_day(rec[di], path, n)
        try:
            contract = parse_future_symbol(rec[si], d, source=str(path), row=n)
        except XMarginError as exc:
            reason = getattr(exc, "reason", str(exc))
            raise InputError(f"symbol '{rec[si].strip()}' on {d}: {reason}", source=path, row=n,
                             field="symbol") from None
        key = (d, contract.symbol)
        if key in seen:
            raise InputError(f"duplicate settlement of {contract.symbol} on {d} (first in row {seen[key]})",
                             source=path, row=n, field="date")
        seen[key] = n
        p = _parse_price(rec[pi].strip(), path, n, "settle")
        if d.weekday() >= 5:
            notes.append((GapWarning, f"{path}: row {n}: weekend date {d} dropped"))
            continue
        bucket = by_root.setdefault(contract.root, ([], [], []))
        bucket[0].append(d)
        bucket[1].append(contract_key(contract.year, contract.month))
        bucket[2].append(p)
    out: dict[str, RootPrices] = {}
    for root, (ds, ks, ps) in by_root.items():
        dts, keys, px = np.array(ds, dtype="datetime64[D]"), np.array(ks, dtype=np.int64), np.array(ps)
        order = np.lexsort((dts, keys))
        dts, keys, px = dts[order], keys[order], px[order]
        for k in np.unique(keys):
            sel = keys == k
            _note_gaps_and_ticks(path, root, dts[sel], px[sel], notes, f" ({symbol_of(root, int(k))})")
        out[root] = RootPrices(root, path, False, dts, keys, px, np.ones(len(dts), bool))
    if not out:
        raise InputError("no data rows", source=path)
    return out


def load_futures_history(path: str | Path) -> FuturesHistory:
    """Read a futures price file or directory (module docstring); cached per file stamps."""
    path = Path(path).resolve()
    if not path.exists():
        raise InputError("futures price history not found", source=path)
    files = sorted(p for p in path.glob("*.csv")) if path.is_dir() else [path]
    stamps = tuple((str(f), file_stamp(f)) for f in files)
    history = _load_cached(path, stamps)
    kinds = {c.__name__: c for c in (OffTickWarning, GapWarning, IgnoredFileWarning)}
    for line in history.warnings:
        kind, text = line.split(": ", 1)
        _warn_once(kinds.get(kind, FuturesDataWarning), text)
    return history


@lru_cache(maxsize=256)
def _warn_once(cls: type[FuturesDataWarning], line: str) -> None:
    warnings.warn(line, cls, stacklevel=3)


@lru_cache(maxsize=8)
def _load_cached(path: Path, stamps: tuple[tuple[str, int], ...]) -> FuturesHistory:
    notes: list[tuple[type[FuturesDataWarning], str]] = []
    roots: dict[str, RootPrices] = {}
    for name, _ in stamps:
        f = Path(name)
        header, rows = _read_rows(f)
        if "symbol" in header:
            found = _read_settlements(f, header, rows, notes)
        else:
            root = _root_of_file(f)
            if root is None:
                notes.append((IgnoredFileWarning, f"{f}: file name is no futures root "
                                                  f"(known: {', '.join([*TREASURY_FUTURES, *RATE_FUTURES])}); skipped"))
                continue
            found = {root: _read_continuous(f, root, header, rows, notes)}
        for root, prices in found.items():
            if root in roots:
                raise InputError(f"{root} prices also come from {roots[root].source}; give each root once",
                                 source=f, field="symbol" if "symbol" in header else None)
            roots[root] = prices
    if not roots and path.is_file():
        raise InputError("no futures prices", source=path)
    return FuturesHistory(path, roots, tuple(f"{cls.__name__}: {text}" for cls, text in notes))


def default_futures_path(data_dir: Path, explicit: str | Path | None = None) -> Path | None:
    """``explicit`` when given, else ``<data dir>/futures`` when it exists, else ``None``."""
    if explicit:
        return Path(explicit)
    candidate = Path(data_dir) / FUTURES_DIR
    return candidate if candidate.is_dir() else None
