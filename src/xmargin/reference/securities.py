"""Securities master: real Treasury CUSIPs from Treasury's auction results.

Built from ``securities/auctions.csv`` (every auction 1992-2024: CUSIP, type, term, dates and
auction price) and, where present, the FedInvest price file of one day
(``securities/fedinvest_prices_<date>.csv``: every outstanding security with its coupon,
type and price).

Rules (documented choices):

* **Coupons.**  FedInvest's coupon where the security is in that file.  Otherwise derived
  as Treasury sets it: the auction high yield rounded down to a multiple of 1/8 percent
  (minimum 1/8).  The auction file has the price, not the yield, and a price near par is
  consistent with several coupons, so the candidates ``c`` whose yield at the auction price
  lies in ``[c, c + 1/8)`` are narrowed to the one whose yield is nearest the par curve on
  the auction date at the security's remaining term.  Reopenings keep the coupon of the
  original auction.  The test suite checks the derivation against every FedInvest coupon.
* **Dated date.**  Interest accrues from the regular coupon date on or before the original
  issue date (Treasury's dated date; investors pay the accrued from it at issue).
* **Older securities.**  A security in the FedInvest file but not in the auction file (the
  1994-98 thirty-year bonds) is added from FedInvest with a regular coupon schedule; its
  original issue date is not known and is taken as 30 (bonds) or 10 (notes) years before
  maturity (``original_term`` says "assumed").
* **Excluded: TIPS and FRNs** (the engine does not price them yet).  FedInvest's type is
  used where known; otherwise an FRN is a two-year note issued from 2014 that was reopened
  (nominal two-year notes are never reopened), and a TIPS is a note or bond maturing on the
  15th of January, April, July or October whose original term is not three years
  (nominal three-year notes mature mid-month every month).  Against FedInvest these rules
  misclassify only the 30-year TIPS maturing on February 15, all of which FedInvest covers.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from xmargin.config import AUCTIONS_FILE, FEDINVEST_GLOB
from xmargin.errors import (
    InputError,
    MissingMarketDataError,
    NotSupportedError,
    UnknownInstrumentError,
)
from xmargin.reference.cashflows import resolve
from xmargin.reference.conventions import street_yield
from xmargin.reference.cusip import is_valid_cusip, looks_like_cusip
from xmargin.reference.treasuries import TreasuryBill, TreasuryBond

EIGHTH = 0.00125  # 1/8 percent as a decimal


@dataclass(frozen=True, slots=True)
class SecurityRecord:
    """One CUSIP: what it is and, for bills, notes and bonds, its pricing definition."""

    cusip: str
    kind: str  # "bill", "note", "bond", "tips", "frn"
    original_term: str  # as announced at the first auction, e.g. "10-Year"
    issue_date: date  # original issue
    maturity: date
    auctions: int
    coupon: float | None  # decimal; None for bills and excluded securities
    coupon_source: str  # "fedinvest", "derived", "" (bills, excluded)
    definition: TreasuryBill | TreasuryBond | None

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        """Pickled as the constructor's arguments: loading calls ``__init__`` once instead of
        the dataclass ``__setstate__`` (which looks up the fields per object; the cached
        securities master holds thousands)."""
        return type(self), tuple(getattr(self, f) for f in self.__slots__)

    @property
    def original_term_months(self) -> int:
        """Original term in whole months from issue to maturity."""
        return (self.maturity.year - self.issue_date.year) * 12 + self.maturity.month - self.issue_date.month


@dataclass(frozen=True, eq=False)
class SecuritiesMaster:
    records: dict[str, SecurityRecord]
    excluded: Counter[str] = field(default_factory=Counter)
    #: FedInvest clean prices per 100 (mid of buy/sell where buy > 0, else sell) and their date.
    prices: dict[str, float] = field(default_factory=dict)
    price_date: date | None = None

    def __len__(self) -> int:
        return len(self.records)

    def record(self, cusip: str, *, source: str = "instrument", row: int | None = None) -> SecurityRecord:
        code = cusip.strip().upper()
        if not looks_like_cusip(code):
            raise UnknownInstrumentError(f"'{cusip}' is not a CUSIP", source=source, row=row, field="instrument")
        if not is_valid_cusip(code):
            raise UnknownInstrumentError(
                f"CUSIP '{cusip}' has a wrong check digit", source=source, row=row, field="instrument"
            )
        rec = self.records.get(code)
        if rec is None:
            raise UnknownInstrumentError(
                f"CUSIP {code} is not in the securities master (auctions 1992-2024); "
                "use the explicit form UST:<coupon>:<maturity>",
                source=source,
                row=row,
                field="instrument",
            )
        return rec

    def definition(self, cusip: str, *, source: str = "instrument", row: int | None = None) -> TreasuryBill | TreasuryBond:
        """Pricing definition of a CUSIP; TIPS and FRNs raise :class:`NotSupportedError`."""
        rec = self.record(cusip, source=source, row=row)
        if rec.definition is None:
            label = {"tips": "TIPS (inflation-protected)", "frn": "floating-rate note"}.get(rec.kind, rec.kind)
            raise NotSupportedError(
                f"{rec.cusip} is a {label}: not supported yet", source=source, row=row, field="instrument"
            )
        return rec.definition

    def notes_and_bonds(self, *, outstanding_on: date | None = None) -> list[SecurityRecord]:
        out = [r for r in self.records.values() if r.kind in ("note", "bond")]
        if outstanding_on is not None:
            out = [r for r in out if r.issue_date <= outstanding_on < r.maturity]
        return sorted(out, key=lambda r: (r.maturity, r.cusip))


def _fedinvest(data_dir: Path) -> tuple[dict[str, dict[str, str]], date | None]:
    files = sorted(data_dir.glob(FEDINVEST_GLOB))
    if not files:
        return {}, None
    path = files[-1]
    rows: dict[str, dict[str, str]] = {}
    price_date = None
    with path.open(newline="") as fh:
        for rownum, r in enumerate(csv.DictReader(fh), start=2):
            try:
                price_date = date.fromisoformat(r["price_date"])
                float(r["rate"]), float(r["sell"]), float(r["buy"] or 0)
            except (KeyError, ValueError) as exc:
                raise InputError(f"unreadable FedInvest row ({exc})", source=path, row=rownum) from None
            rows[r["cusip"].strip().upper()] = r
    return rows, price_date


def _classify(first: dict[str, str], n_auctions: int, fed_type: str | None) -> str:
    if fed_type is not None:
        return {"TIPS": "tips", "MARKET BASED FRN": "frn", "MARKET BASED BILL": "bill",
                "MARKET BASED NOTE": "note", "MARKET BASED BOND": "bond"}.get(fed_type, "unknown")
    kind = first["security_type"].strip().lower()
    if kind == "bill":
        return "bill"
    maturity = date.fromisoformat(first["maturity_date"])
    term = first["security_term"].strip()
    if kind == "note" and term == "2-Year" and first["issue_date"] >= "2014-01-01" and n_auctions > 1:
        return "frn"
    if maturity.day == 15 and maturity.month in (1, 4, 7, 10) and term != "3-Year":
        return "tips"
    return kind


def regular_dated_date(maturity: date, issue: date) -> date:
    """The regular coupon date on or before ``issue`` (Treasury's dated date)."""
    probe = TreasuryBond(coupon=0.0, maturity=maturity)
    return probe.regular_date(probe.periods_before(issue))


def derive_coupons(
    maturities: list[date], issues: list[date], prices: np.ndarray, market_yields: np.ndarray
) -> np.ndarray:
    """Coupons (decimal) from auction clean prices, by Treasury's 1/8 rule (see module doc).

    ``market_yields`` (decimal) is the par curve at each security's term on its auction date,
    used to pick among the coupons consistent with the price.
    """
    n = len(maturities)
    base = np.maximum(np.floor(market_yields / EIGHTH + 1e-9) * EIGHTH, EIGHTH)
    offsets = (-2, -1, 0, 1, 2)
    best = np.full(n, np.nan)
    best_gap = np.full(n, np.inf)
    by_issue: dict[date, list[int]] = {}
    for k, d in enumerate(issues):
        by_issue.setdefault(d, []).append(k)
    for off in offsets:
        cand = np.maximum(base + off * EIGHTH, EIGHTH)
        bonds = [
            TreasuryBond(coupon=float(c), maturity=m, dated_date=regular_dated_date(m, i))
            for c, m, i in zip(cand, maturities, issues, strict=True)
        ]
        ys = np.empty(n)
        for settle, idx in by_issue.items():  # one vectorised yield solve per issue date
            cf = resolve([bonds[k] for k in idx], settle)
            ys[idx] = street_yield(cf, prices[idx] + cf.accrued)
        consistent = (ys >= cand - 1e-7) & (ys < cand + EIGHTH - 1e-7)
        consistent |= (cand == EIGHTH) & (ys < EIGHTH)  # minimum coupon
        gap = np.abs(ys - market_yields)
        take = consistent & (gap < best_gap)
        best[take] = cand[take]
        best_gap[take] = gap[take]
    missing = np.isnan(best)
    if missing.any():  # no consistent candidate: fall back to the nearest eighth below the yield
        best[missing] = base[missing]
    return best


#: ``par_yield(on, term_months)``: the par yield (decimal) on a date at a term in months.
ParYieldAt = Callable[[date, float], float]


def build_master(data_dir: Path, par_yield: ParYieldAt) -> SecuritiesMaster:
    """Build the securities master from the raw files in ``data_dir``.

    ``par_yield`` supplies the market's par yield at each auction (to narrow derived coupons,
    see the module doc); reference data does not read market history itself, the build step
    above both (:func:`xmargin.masterdata.load_master`) passes it in.
    """
    path = data_dir / AUCTIONS_FILE
    if not path.is_file():
        raise MissingMarketDataError(f"{path}: auction results not found (run 'xmargin data fetch')")
    fed, price_date = _fedinvest(data_dir)
    by_cusip: dict[str, list[dict[str, str]]] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        for rownum, r in enumerate(reader, start=2):
            cusip = (r.get("cusip") or "").strip().upper()
            if not is_valid_cusip(cusip):
                raise InputError(f"invalid CUSIP '{cusip}'", source=path, row=rownum, field="cusip")
            for f in ("auction_date", "issue_date", "maturity_date"):
                try:
                    date.fromisoformat(r[f])
                except (KeyError, ValueError):
                    raise InputError(f"'{r.get(f)}' is not a date", source=path, row=rownum, field=f) from None
            try:
                float(r["price_per_100"])
            except (KeyError, ValueError):
                raise InputError("not a number", source=path, row=rownum, field="price_per_100") from None
            by_cusip.setdefault(cusip, []).append(r)

    records: dict[str, SecurityRecord] = {}
    excluded: Counter[str] = Counter()
    to_derive: list[tuple[str, dict[str, str], int, str]] = []
    for cusip, auctions in by_cusip.items():
        first = min(auctions, key=lambda a: a["auction_date"])
        fed_row = fed.get(cusip)
        kind = _classify(first, len(auctions), fed_row["security_type"] if fed_row else None)
        issue = date.fromisoformat(first["issue_date"])
        maturity = date.fromisoformat(first["maturity_date"])
        term = first["security_term"].strip()
        if kind == "bill":
            records[cusip] = SecurityRecord(cusip, kind, term, issue, maturity, len(auctions), None, "",
                                            TreasuryBill(maturity=maturity, issue_date=issue, cusip=cusip))
        elif kind in ("tips", "frn", "unknown"):
            excluded[kind] += 1
            records[cusip] = SecurityRecord(cusip, kind, term, issue, maturity, len(auctions), None, "", None)
        elif fed_row is not None:
            coupon = round(float(fed_row["rate"]), 8)
            records[cusip] = _coupon_record(cusip, kind, term, issue, maturity, len(auctions), coupon, "fedinvest")
        else:
            to_derive.append((cusip, first, len(auctions), kind))

    if to_derive:
        mats = [date.fromisoformat(f["maturity_date"]) for _, f, _, _ in to_derive]
        issues = [date.fromisoformat(f["issue_date"]) for _, f, _, _ in to_derive]
        prices = np.array([float(f["price_per_100"]) for _, f, _, _ in to_derive])
        mkt = np.array([
            par_yield(date.fromisoformat(f["auction_date"]), (m - i).days / 365.25 * 12)
            for (_, f, _, _), m, i in zip(to_derive, mats, issues, strict=True)
        ])
        coupons = derive_coupons(mats, issues, prices, mkt)
        for (cusip, first, n, kind), c, m, i in zip(to_derive, coupons, mats, issues, strict=True):
            records[cusip] = _coupon_record(cusip, kind, first["security_term"].strip(), i, m, n, float(c), "derived")

    for cusip, r in fed.items():  # outstanding securities older than the auction file
        if cusip in records:
            continue
        kind = _classify({}, 1, r["security_type"])
        maturity = date.fromisoformat(r["maturity_date"])
        if kind in ("note", "bond"):
            term_years = 30 if kind == "bond" else 10
            issue = date(maturity.year - term_years, maturity.month, min(maturity.day, 28))
            coupon = round(float(r["rate"]), 8)
            bond = TreasuryBond(coupon=coupon, maturity=maturity, cusip=cusip, kind=kind)
            records[cusip] = SecurityRecord(cusip, kind, f"{term_years}-Year (assumed)", issue, maturity, 0,
                                            coupon, "fedinvest", bond)
        elif kind == "bill":
            records[cusip] = SecurityRecord(cusip, kind, "", maturity, maturity, 0, None, "",
                                            TreasuryBill(maturity=maturity, cusip=cusip))
        else:
            excluded[kind] += 1
            records[cusip] = SecurityRecord(cusip, kind, "", maturity, maturity, 0, None, "", None)

    prices_out: dict[str, float] = {}
    for cusip, r in fed.items():
        sell, buy = float(r["sell"]), float(r["buy"] or 0.0)
        if sell > 0:
            prices_out[cusip] = (sell + buy) / 2.0 if buy > 0 else sell
    return SecuritiesMaster(records=records, excluded=excluded, prices=prices_out, price_date=price_date)


def _coupon_record(cusip: str, kind: str, term: str, issue: date, maturity: date, n: int,
                   coupon: float, source: str) -> SecurityRecord:
    bond = TreasuryBond(coupon=coupon, maturity=maturity, dated_date=regular_dated_date(maturity, issue),
                        cusip=cusip, original_issue=issue, kind=kind)
    return SecurityRecord(cusip, kind, term, issue, maturity, n, coupon, source, bond)
