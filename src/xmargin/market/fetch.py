"""Download the market history from its publishers into xmargin's data layout.

:func:`fetch_all` writes, under ``dest`` (see :mod:`xmargin.config` for the layout):

* ``yields/par_yield_curve.csv``: U.S. Treasury "Daily Treasury Par Yield Curve Rates", one
  CSV per calendar year from home.treasury.gov (:data:`TREASURY_PATH`; the header names the
  tenors, ``Date,"1 Mo",...,"30 Yr"``, with only the tenors published that year; dates
  ``MM/DD/YYYY``, newest first).  Written as ``date,1M,...,30Y``, ISO dates ascending, values
  in percent exactly as Treasury publishes them, empty where a tenor was not published.
  Tenors outside :data:`~xmargin.market.history.TENORS` (the 6-week "1.5 Month" bill since
  2025-02-18) are dropped and mentioned in the report's notes.
* ``sofr/sofr.csv`` and ``fedfunds/dff.csv``: FRED series ``SOFR`` and ``DFF`` (percent) from
  ``fredgraph.csv?id=...`` (header ``observation_date,<ID>``, formerly ``DATE,<ID>``); days
  without a value (``.`` or empty) are dropped.  Written as ``date,sofr_pct`` /
  ``date,dff_pct``.
* ``securities/auctions.csv``: Treasury's Fiscal Data API dataset "Treasury Securities
  Auctions Data" (:data:`AUCTIONS_PATH`, JSON, paged with ``page[number]``/``page[size]``,
  every value a string, ``"null"`` when absent).  Chosen over TreasuryDirect's
  ``TA_WS/securities/search`` because it is Treasury's documented, versioned open-data API
  (https://fiscaldata.treasury.gov/datasets/treasury-securities-auctions-data/) with
  stable paging and the same fields (``price_per100`` = auction price per 100 face).
  Written as ``cusip,security_type,security_term,auction_date,issue_date,maturity_date,
  price_per_100`` sorted by auction date; auctions announced but not yet held (no price)
  and rows the securities master could not read (bad CUSIP or date) are skipped and counted
  in the notes.

Every year of ``start_year..end_year`` is kept (auctions by auction date, rates by date).

Nothing is written until every download has succeeded and parsed; then each file is written
to a temporary file beside it and renamed over the old one, so a failure never leaves a
half-written file and keeps the previous files as they were.  Errors are
:class:`FetchError`, naming the URL and what went wrong.

Redirecting sources (tests, mirrors): ``base_urls={"treasury": ..., "fred": ...,
"fiscaldata": ...}`` or the environment variables ``XMARGIN_FETCH_BASE_URL_TREASURY``,
``XMARGIN_FETCH_BASE_URL_FRED`` and ``XMARGIN_FETCH_BASE_URL_FISCALDATA`` replace the
scheme and host (``https://home.treasury.gov`` etc.); the paths stay the publishers'.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from http.client import HTTPException
from pathlib import Path
from typing import Any

from xmargin import __version__
from xmargin.config import AUCTIONS_FILE, FEDFUNDS_FILE, PAR_YIELDS_FILE, SOFR_FILE
from xmargin.errors import XMarginError
from xmargin.market.history import TENORS, YIELD_RANGE_PCT
from xmargin.reference.cusip import is_valid_cusip

#: Default base URL (scheme and host) of each source.
DEFAULT_BASE_URLS: dict[str, str] = {
    "treasury": "https://home.treasury.gov",
    "fred": "https://fred.stlouisfed.org",
    "fiscaldata": "https://api.fiscaldata.treasury.gov",
}
ENV_PREFIX = "XMARGIN_FETCH_BASE_URL_"

TREASURY_PATH = (
    "/resource-center/data-chart-center/interest-rates/daily-treasury-rates.csv/{year}/all"
    "?type=daily_treasury_yield_curve&field_tdr_date_value={year}&page&_format=csv"
)
FRED_PATH = "/graph/fredgraph.csv?id={series}"
AUCTIONS_PATH = "/services/api/fiscal_service/v1/accounting/od/auctions_query"
AUCTION_FIELDS = ("cusip", "security_type", "security_term", "auction_date", "issue_date",
                  "maturity_date", "price_per100")
AUCTIONS_HEADER = ("cusip", "security_type", "security_term", "auction_date", "issue_date",
                   "maturity_date", "price_per_100")
#: Fiscal Data's largest page.
PAGE_SIZE = 10000

TIMEOUT_S = 60.0
#: Pauses (seconds) before each retry of a request that failed with a network error,
#: HTTP 429 or 5xx.  Other HTTP errors are not retried.
RETRY_DELAYS_S: tuple[float, ...] = (2.0, 8.0)
USER_AGENT = f"xmargin/{__version__} (market data download; Python urllib)"

ProgressCallback = Callable[[str, int, int], None]
"""``progress(label, done, total)``: e.g. ``("Treasury par yields", 3, 36)`` (years)."""


class FetchError(XMarginError):
    """A download that failed or returned something unusable; ``url`` is the request."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"{url}: {problem}")


@dataclass(frozen=True)
class FetchedFile:
    """One file written: ``rows`` data rows (header excluded), first and last date in it."""

    path: Path
    rows: int
    first_date: date
    last_date: date


@dataclass
class FetchReport:
    """What :func:`fetch_all` wrote under ``dest``, and notes on what it left out."""

    dest: Path
    files: list[FetchedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resolve_base_urls(base_urls: Mapping[str, str] | None = None) -> dict[str, str]:
    """Base URL per source: ``base_urls`` over ``XMARGIN_FETCH_BASE_URL_<SOURCE>`` over defaults."""
    unknown = sorted(set(base_urls or {}) - set(DEFAULT_BASE_URLS))
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; expected {sorted(DEFAULT_BASE_URLS)}")
    out = dict(DEFAULT_BASE_URLS)
    for key in out:
        env = os.environ.get(ENV_PREFIX + key.upper())
        if env:
            out[key] = env
    out.update(base_urls or {})
    return {k: v.rstrip("/") for k, v in out.items()}


def _http_get(url: str, accept: str) -> bytes:
    """GET ``url``; retries network errors, 429 and 5xx after :data:`RETRY_DELAYS_S`."""
    problem = "no attempt made"
    attempts = len(RETRY_DELAYS_S) + 1
    for attempt in range(attempts):
        if attempt:
            time.sleep(RETRY_DELAYS_S[attempt - 1])
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": accept})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            if exc.code != 429 and exc.code < 500:
                raise FetchError(url, problem) from None
        except urllib.error.URLError as exc:
            problem = f"network error: {exc.reason}"
        except (TimeoutError, OSError, HTTPException) as exc:
            problem = f"network error: {type(exc).__name__}: {exc}"
    suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
    raise FetchError(url, problem + suffix)


def _get_text(url: str, accept: str = "text/csv") -> str:
    body = _http_get(url, accept)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FetchError(url, f"response is not UTF-8 text ({exc})") from None
    if accept == "text/csv" and text.lstrip()[:1] == "<":
        raise FetchError(url, "expected CSV but got an HTML page (access blocked or the URL moved?)")
    return text


def _pct(text: str, url: str, row: int, column: str) -> str:
    """Validate a percent cell and return it unchanged ('' when not published)."""
    text = text.strip()
    if text in ("", "N/A", "ND", "."):
        return ""
    try:
        value = float(text)
    except ValueError:
        raise FetchError(url, f"row {row}, column '{column}': '{text}' is not a number") from None
    lo, hi = YIELD_RANGE_PCT
    if not lo <= value <= hi:
        raise FetchError(url, f"row {row}, column '{column}': {value} percent is outside [{lo}, {hi}]")
    return text


def _date(text: str, url: str, row: int, formats: tuple[str, ...]) -> date:
    for fmt in formats:
        try:
            return datetime.strptime(text.strip(), fmt).date()
        except ValueError:
            continue
    raise FetchError(url, f"row {row}: '{text}' is not a date (expected {' or '.join(formats)})")


_TENOR_LABEL = re.compile(r"^(\d+(?:\.\d+)?)\s*(mo|mos|month|months|yr|yrs|year|years)\.?$", re.I)


def _tenor_of(label: str) -> str | None:
    """``"1 Mo"`` -> ``"1M"``, ``"10 Yr"`` -> ``"10Y"``; None for tenors we do not keep."""
    m = _TENOR_LABEL.match(label.strip())
    if not m:
        return None
    months = float(m[1]) * (1 if m[2].lower().startswith("m") else 12)
    if months != int(months):
        return None
    key = f"{int(months)}M" if months < 12 else f"{int(months) // 12}Y"
    return key if key in TENORS and (months < 12 or months % 12 == 0) else None


def parse_treasury_csv(
    text: str, url: str, dropped: set[str] | None = None
) -> dict[date, dict[str, str]]:
    """Rows of one yearly Treasury par yield CSV: ``{date: {tenor: percent text}}``.

    Columns are matched by name (older years publish fewer tenors); labels of columns that
    are not xmargin tenors are added to ``dropped``.  Empty body or header only: no rows.
    """
    records = list(csv.reader(io.StringIO(text)))
    records = [r for r in records if any(c.strip() for c in r)]
    if not records:
        return {}
    header = [h.strip() for h in records[0]]
    if header[0].lower() != "date":
        raise FetchError(url, f"first column is '{header[0]}', expected 'Date' (format changed?)")
    columns: list[str | None] = [_tenor_of(h) for h in header[1:]]
    if dropped is not None:
        dropped.update(h for h, t in zip(header[1:], columns, strict=True) if t is None)
    out: dict[date, dict[str, str]] = {}
    for rownum, record in enumerate(records[1:], start=2):
        if len(record) != len(header):
            raise FetchError(url, f"row {rownum}: expected {len(header)} fields, found {len(record)}")
        d = _date(record[0], url, rownum, ("%m/%d/%Y", "%Y-%m-%d"))
        out[d] = {t: _pct(v, url, rownum, t) for t, v in zip(columns, record[1:], strict=True) if t}
    return out


def parse_fred_csv(text: str, url: str) -> dict[date, str]:
    """A FRED ``fredgraph.csv`` download: ``{date: percent text}``, missing values dropped."""
    records = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not records or len(records[0]) != 2 or "date" not in records[0][0].strip().lower():
        first = records[0] if records else "nothing"
        raise FetchError(url, f"expected a header 'observation_date,<SERIES>', got {first}")
    out: dict[date, str] = {}
    for rownum, record in enumerate(records[1:], start=2):
        if len(record) != 2:
            raise FetchError(url, f"row {rownum}: expected 2 fields, found {len(record)}")
        value = _pct(record[1], url, rownum, records[0][1].strip())
        if value:
            out[_date(record[0], url, rownum, ("%Y-%m-%d",))] = value
    return out


def _auction_rows(records: list[dict[str, Any]], url: str, notes: list[str]) -> list[tuple[str, ...]]:
    """Fiscal Data auction records -> rows of :data:`AUCTIONS_HEADER`, bad or unheld skipped."""
    kept: dict[tuple[str, str], tuple[str, ...]] = {}
    unpriced = bad = 0
    for rec in records:
        values = [str(rec.get(f) or "").strip() for f in AUCTION_FIELDS]
        values = ["" if v.lower() == "null" else v for v in values]
        cusip, _, _, auction, issue, maturity, price = values
        if not price:
            unpriced += 1
            continue
        try:
            float(price)
            for d in (auction, issue, maturity):
                date.fromisoformat(d)
        except ValueError:
            bad += 1
            continue
        if not is_valid_cusip(cusip.upper()):
            bad += 1
            continue
        kept[(cusip.upper(), auction)] = (cusip.upper(), *values[1:])
    if unpriced:
        notes.append(f"{url}: {unpriced} auction(s) without a price (announced, not yet held) skipped")
    if bad:
        notes.append(f"{url}: {bad} auction record(s) with an invalid CUSIP, date or price skipped")
    return sorted(kept.values(), key=lambda r: (r[3], r[0]))


def _fetch_auctions(base: str, start_year: int, end_year: int, progress: ProgressCallback,
                    notes: list[str]) -> list[tuple[str, ...]]:
    label = "Treasury auctions"
    query = {
        "fields": ",".join(AUCTION_FIELDS),
        "filter": f"auction_date:gte:{start_year}-01-01,auction_date:lte:{end_year}-12-31",
        "sort": "auction_date,cusip",
        "page[size]": str(PAGE_SIZE),
    }
    records: list[dict[str, Any]] = []
    page, total = 1, 1
    progress(label, 0, total)
    while page <= total:
        url = f"{base}{AUCTIONS_PATH}?{urllib.parse.urlencode({**query, 'page[number]': str(page)})}"
        try:
            doc = json.loads(_get_text(url, accept="application/json"))
        except json.JSONDecodeError as exc:
            raise FetchError(url, f"response is not JSON ({exc})") from None
        if not isinstance(doc, dict) or "data" not in doc:
            what = doc.get("message") or doc.get("error") if isinstance(doc, dict) else None
            raise FetchError(url, f"no 'data' in the response{f': {what}' if what else ''}")
        try:
            total = max(1, int(doc.get("meta", {}).get("total-pages", 1)))
        except (TypeError, ValueError):
            raise FetchError(url, "meta 'total-pages' is not a number") from None
        records.extend(doc["data"])
        progress(label, page, total)
        if not doc["data"]:
            break
        page += 1
    return _auction_rows(records, f"{base}{AUCTIONS_PATH}", notes)


def _write_atomically(outputs: list[tuple[Path, list[tuple[str, ...]]]]) -> None:
    """Write every file to a temp file beside it, then rename all over the old ones."""
    temps: list[tuple[Path, Path]] = []
    try:
        for path, rows in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            tmp = Path(tmp_name)
            temps.append((tmp, path))
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh, lineterminator="\n").writerows(rows)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        for tmp, path in temps:
            os.replace(tmp, path)
    except OSError as exc:
        raise XMarginError(f"could not write {exc.filename or 'the data files'}: {exc.strerror or exc}") from exc
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)


def fetch_all(
    dest: Path,
    *,
    start_year: int = 1990,
    end_year: int | None = None,
    progress: ProgressCallback | None = None,
    base_urls: dict[str, str] | None = None,
) -> FetchReport:
    """Download par yields, SOFR, DFF and auction results for ``start_year..end_year``.

    ``end_year`` defaults to the current year.  ``progress(label, done, total)`` is called
    as each year / series / page arrives.  Returns what was written; a series with no data
    in the range (SOFR starts 2018-04-03) is not written and says so in ``notes``.  Raises
    :class:`FetchError` (URL and cause) before writing anything if any download fails.
    """
    end_year = date.today().year if end_year is None else end_year
    if not 1900 <= start_year <= end_year:
        raise ValueError(f"need 1900 <= start_year <= end_year, got {start_year}..{end_year}")
    bases = resolve_base_urls(base_urls)
    report = FetchReport(dest=Path(dest))
    notify: ProgressCallback = progress or (lambda label, done, total: None)

    label, years = "Treasury par yields", list(range(start_year, end_year + 1))
    curves: dict[date, dict[str, str]] = {}
    dropped: set[str] = set()
    notify(label, 0, len(years))
    for i, year in enumerate(years, start=1):
        url = bases["treasury"] + TREASURY_PATH.format(year=year)
        curves.update(parse_treasury_csv(_get_text(url), url, dropped))
        notify(label, i, len(years))
    if dropped:
        report.notes.append(f"Treasury par yield column(s) {sorted(dropped)} are not xmargin tenors; dropped")
    if not curves:
        raise FetchError(bases["treasury"] + TREASURY_PATH.format(year=end_year),
                         f"no par yield curves for {start_year}..{end_year}")
    yield_rows = [("date", *TENORS)] + [
        (d.isoformat(), *(curves[d].get(t, "") for t in TENORS)) for d in sorted(curves)
    ]
    outputs: list[tuple[Path, list[tuple[str, ...]]]] = [(PAR_YIELDS_FILE, yield_rows)]

    for series, path, column in (("SOFR", SOFR_FILE, "sofr_pct"), ("DFF", FEDFUNDS_FILE, "dff_pct")):
        label, url = f"FRED {series}", bases["fred"] + FRED_PATH.format(series=series)
        notify(label, 0, 1)
        obs = parse_fred_csv(_get_text(url), url)
        notify(label, 1, 1)
        kept = sorted(d for d in obs if start_year <= d.year <= end_year)
        if kept:
            rows: list[tuple[str, ...]] = [("date", column)]
            outputs.append((path, rows + [(d.isoformat(), obs[d]) for d in kept]))
        else:
            report.notes.append(f"{url}: no observations in {start_year}..{end_year}; {path} not written")

    auctions = _fetch_auctions(bases["fiscaldata"], start_year, end_year, notify, report.notes)
    if auctions:
        outputs.append((AUCTIONS_FILE, [AUCTIONS_HEADER, *auctions]))
    else:
        report.notes.append(f"no auctions in {start_year}..{end_year}; {AUCTIONS_FILE} not written")

    _write_atomically([(report.dest / rel, rows) for rel, rows in outputs])
    for rel, rows in outputs:
        date_col = rows[0].index("auction_date") if "auction_date" in rows[0] else 0
        dates = [r[date_col] for r in rows[1:]]
        report.files.append(FetchedFile(report.dest / rel, len(rows) - 1,
                                        date.fromisoformat(min(dates)), date.fromisoformat(max(dates))))
    return report
