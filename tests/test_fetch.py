"""``xmargin.market.fetch`` and ``xmargin data fetch`` against a local HTTP server.

The server runs on loopback (``127.0.0.1``, a free port) in a thread; nothing else on the
network is touched.  Its responses are small fixtures written here that mimic each
publisher's own format:

* Treasury's yearly par yield CSV (header ``Date,"1 Mo",...``, only the tenors published
  that year, ``"1.5 Month"`` since 2025, dates ``MM/DD/YYYY`` newest first), as served by
  https://home.treasury.gov/resource-center/data-chart-center/interest-rates/TextView?type=daily_treasury_yield_curve
  (CSV link "daily-treasury-rates.csv/{year}/all?...&_format=csv");
* FRED's ``fredgraph.csv`` (``observation_date,SOFR`` with empty cells for holidays; the
  older ``DATE,DFF`` header with ``.`` for missing), https://fred.stlouisfed.org/docs/api/fred/
  and https://fred.stlouisfed.org/series/SOFR ("Download CSV");
* the Fiscal Data API's JSON (``data``/``meta``/``links``, every value a string, ``"null"``
  when absent, paged by ``page[number]``), https://fiscaldata.treasury.gov/api-documentation/
  and https://fiscaldata.treasury.gov/datasets/treasury-securities-auctions-data/.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from typer.testing import CliRunner

from xmargin.cli.data_cmd import data_app
from xmargin.market import fetch
from xmargin.market.fetch import FetchError, fetch_all
from xmargin.market.history import TENORS, load_par_yields, load_rate_series

TREASURY_2024 = (
    'Date,"1 Mo","2 Mo","3 Mo","4 Mo","6 Mo","1 Yr","2 Yr","3 Yr","5 Yr","7 Yr","10 Yr","20 Yr","30 Yr"\n'
    "12/31/2024,4.37,4.33,4.37,4.32,4.24,4.16,4.25,4.27,4.38,4.48,4.58,4.86,4.78\n"
    "12/30/2024,4.43,4.37,4.37,4.33,4.25,4.17,4.24,4.27,4.37,4.45,4.55,4.84,4.77\n"
)
TREASURY_2025 = (
    'Date,"1 Mo","1.5 Month","2 Mo","3 Mo","4 Mo","6 Mo","1 Yr","2 Yr","3 Yr","5 Yr","7 Yr","10 Yr","20 Yr","30 Yr"\n'
    "02/18/2025,4.38,4.41,4.38,4.34,4.37,4.34,4.24,4.29,4.33,4.40,4.48,4.55,4.83,4.77\n"
    "01/02/2025,4.45,,4.36,4.36,4.31,4.25,4.17,4.25,4.29,4.38,4.47,4.57,4.86,4.79\n"
)
TREASURY_1990 = (
    'Date,"3 Mo","6 Mo","1 Yr","2 Yr","3 Yr","5 Yr","7 Yr","10 Yr","30 Yr"\n'
    "01/03/1990,7.89,7.94,7.85,7.94,7.96,7.92,8.04,7.99,8.04\n"
    "01/02/1990,7.83,7.89,7.81,7.87,7.90,7.87,7.98,7.94,8.00\n"
)
TREASURY_EMPTY = 'Date,"1 Mo","2 Mo","3 Mo"\n'

FRED_SOFR = "observation_date,SOFR\n2024-12-30,4.36\n2024-12-31,4.49\n2025-01-01,\n2025-01-02,4.41\n"
FRED_DFF = "DATE,DFF\n1990-01-02,8.45\n2024-12-31,4.33\n2025-01-01,.\n2025-01-02,4.33\n"


def _auction(cusip: str, kind: str, term: str, auction: str, issue: str, maturity: str, price: str) -> dict[str, str]:
    return {"record_date": auction, "cusip": cusip, "security_type": kind, "security_term": term,
            "auction_date": auction, "issue_date": issue, "maturity_date": maturity, "price_per100": price,
            "reopening": "No", "high_yield": "null"}


AUCTIONS = [
    _auction("91282CMB4", "Note", "2-Year", "2024-12-23", "2024-12-31", "2026-12-31", "99.916584"),
    _auction("912797MR5", "Bill", "13-Week", "2025-01-02", "2025-01-07", "2025-04-08", "98.910250"),
    _auction("912810UF3", "Bond", "30-Year", "2025-02-13", "2025-02-18", "2055-02-15", "98.287640"),
    _auction("91282CMN8", "Note", "2-Year", "2025-02-25", "2025-02-28", "2027-02-28", "null"),
]
PAGE = 2  # the fixture server's page size, whatever the client asks for


def _auctions_page(number: int, filters: str) -> str:
    """One page of the records matching ``filter=auction_date:gte:...,auction_date:lte:...``."""
    bounds = dict(f.split(":", 2)[1:] for f in filters.split(","))
    rows = [a for a in AUCTIONS if bounds["gte"] <= a["auction_date"] <= bounds["lte"]]
    pages = max(1, -(-len(rows) // PAGE))
    chunk = rows[(number - 1) * PAGE: number * PAGE]
    link = "&page%5Bnumber%5D={}&page%5Bsize%5D=" + str(PAGE)
    return json.dumps({
        "data": chunk,
        "meta": {"count": len(chunk), "labels": {}, "dataTypes": {}, "dataFormats": {},
                 "total-count": len(rows), "total-pages": pages},
        "links": {"self": link.format(number), "first": link.format(1),
                  "prev": link.format(number - 1) if number > 1 else None,
                  "next": link.format(number + 1) if number < pages else None, "last": link.format(pages)},
    })


@dataclass
class FakePublishers:
    """The three publishers on one loopback server; ``fail`` maps a path+query part to a status."""

    base: str = ""
    requests: list[str] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    html: set[str] = field(default_factory=set)

    def respond(self, target: str) -> tuple[int, str, str]:
        self.requests.append(target)
        for part, status in self.fail.items():
            if part in target:
                return status, "text/plain", "server error"
        if any(part in target for part in self.html):  # e.g. a CDN's "Access Denied" page
            return 200, "text/html", "<!DOCTYPE html><html><body>Access Denied</body></html>"
        parts = urlsplit(target)
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.path.startswith("/resource-center/data-chart-center/interest-rates/daily-treasury-rates.csv/"):
            assert query["type"] == ["daily_treasury_yield_curve"] and query["_format"] == ["csv"]
            year = query["field_tdr_date_value"][0]
            body = {"2024": TREASURY_2024, "2025": TREASURY_2025, "1990": TREASURY_1990}.get(year, TREASURY_EMPTY)
            return 200, "text/csv", body
        if parts.path == "/graph/fredgraph.csv":
            return 200, "text/csv", {"SOFR": FRED_SOFR, "DFF": FRED_DFF}[query["id"][0]]
        if parts.path == "/services/api/fiscal_service/v1/accounting/od/auctions_query":
            assert "price_per100" in query["fields"][0]
            return 200, "application/json", _auctions_page(int(query["page[number]"][0]), query["filter"][0])
        return 404, "text/plain", "not found"

    @property
    def base_urls(self) -> dict[str, str]:
        return {"treasury": self.base, "fred": self.base, "fiscaldata": self.base}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePublishers]:
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")  # loopback only, never through a proxy
    monkeypatch.setattr(fetch, "RETRY_DELAYS_S", (0.0,))
    publishers = FakePublishers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            status, ctype, body = publishers.respond(self.path)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    publishers.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield publishers
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_fetch_all_writes_the_layout_the_loaders_read(server: FakePublishers, tmp_path: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    report = fetch_all(tmp_path, start_year=2024, end_year=2025, base_urls=server.base_urls,
                       progress=lambda label, done, total: calls.append((label, done, total)))

    curves = load_par_yields(tmp_path / "yields" / "par_yield_curve.csv")
    assert [str(d) for d in curves.dates] == ["2024-12-30", "2024-12-31", "2025-01-02", "2025-02-18"]
    on, y = curves.curve(date(2025, 2, 18))
    assert on == date(2025, 2, 18)
    assert y[TENORS.index("1M")] == 4.38 and y[TENORS.index("2M")] == 4.38  # 1.5 Month dropped
    assert y[TENORS.index("10Y")] == 4.55 and y[TENORS.index("30Y")] == 4.77
    header = (tmp_path / "yields" / "par_yield_curve.csv").read_text().splitlines()[0]
    assert header == "date," + ",".join(TENORS)
    assert "4.40" in (tmp_path / "yields" / "par_yield_curve.csv").read_text()  # as published

    sofr = load_rate_series(tmp_path / "sofr" / "sofr.csv", "SOFR")
    assert [str(d) for d in sofr.dates] == ["2024-12-30", "2024-12-31", "2025-01-02"]
    np.testing.assert_array_equal(sofr.rates_pct, [4.36, 4.49, 4.41])
    dff = load_rate_series(tmp_path / "fedfunds" / "dff.csv", "DFF")
    assert [str(d) for d in dff.dates] == ["2024-12-31", "2025-01-02"]  # 1990 out of range, "." dropped
    assert (tmp_path / "fedfunds" / "dff.csv").read_text().splitlines()[0] == "date,dff_pct"

    lines = (tmp_path / "securities" / "auctions.csv").read_text().splitlines()
    assert lines == [
        "cusip,security_type,security_term,auction_date,issue_date,maturity_date,price_per_100",
        "91282CMB4,Note,2-Year,2024-12-23,2024-12-31,2026-12-31,99.916584",
        "912797MR5,Bill,13-Week,2025-01-02,2025-01-07,2025-04-08,98.910250",
        "912810UF3,Bond,30-Year,2025-02-13,2025-02-18,2055-02-15,98.287640",
    ]

    summary = {f.path.relative_to(tmp_path).as_posix(): (f.rows, f.first_date, f.last_date) for f in report.files}
    assert summary == {
        "yields/par_yield_curve.csv": (4, date(2024, 12, 30), date(2025, 2, 18)),
        "sofr/sofr.csv": (3, date(2024, 12, 30), date(2025, 1, 2)),
        "fedfunds/dff.csv": (2, date(2024, 12, 31), date(2025, 1, 2)),
        "securities/auctions.csv": (3, date(2024, 12, 23), date(2025, 2, 13)),
    }
    assert any("1.5 Month" in n for n in report.notes)
    assert any("without a price" in n for n in report.notes)
    assert ("Treasury par yields", 2, 2) in calls and ("FRED SOFR", 1, 1) in calls
    assert ("Treasury auctions", 2, 2) in calls
    auction_pages = [r for r in server.requests if "auctions_query" in r]
    assert len(auction_pages) == 2 and "auction_date%3Agte%3A2024-01-01" in auction_pages[0]
    assert not list(tmp_path.rglob("*.tmp"))


def test_old_years_and_series_without_data_in_range(server: FakePublishers, tmp_path: Path) -> None:
    report = fetch_all(tmp_path, start_year=1990, end_year=1990, base_urls=server.base_urls)
    curves = load_par_yields(tmp_path / "yields" / "par_yield_curve.csv")
    _, y = curves.curve(date(1990, 1, 2))
    assert np.isnan(y[TENORS.index("1M")]) and np.isnan(y[TENORS.index("20Y")])
    assert y[TENORS.index("30Y")] == 8.0 and y[TENORS.index("3M")] == 7.83
    assert load_rate_series(tmp_path / "fedfunds" / "dff.csv", "DFF").on_or_before(date(1990, 1, 5))[1] == 8.45
    assert not (tmp_path / "sofr" / "sofr.csv").exists()  # SOFR starts 2018: not written, noted
    assert not (tmp_path / "securities" / "auctions.csv").exists()
    assert any("SOFR" in n and "no observations" in n for n in report.notes)


def test_server_error_mid_way_keeps_previous_files(server: FakePublishers, tmp_path: Path) -> None:
    old = {
        tmp_path / "yields" / "par_yield_curve.csv": "date,10Y\n2020-01-02,1.88\n",
        tmp_path / "securities" / "auctions.csv": "cusip,security_type\n",
    }
    for path, text in old.items():
        path.parent.mkdir(parents=True)
        path.write_text(text)
    server.fail["page%5Bnumber%5D=2"] = 503  # second page of auctions, after everything else

    with pytest.raises(FetchError) as info:
        fetch_all(tmp_path, start_year=2024, end_year=2025, base_urls=server.base_urls)

    message = str(info.value)
    assert server.base + "/services/api/fiscal_service/v1/accounting/od/auctions_query?" in message
    assert "HTTP 503" in message and "after 2 attempts" in message
    assert sum("page%5Bnumber%5D=2" in r for r in server.requests) == 2  # retried once
    for path, text in old.items():
        assert path.read_text() == text
    assert not (tmp_path / "sofr").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_client_error_and_html_page_are_reported_with_the_url(server: FakePublishers, tmp_path: Path) -> None:
    server.fail["id=DFF"] = 404
    with pytest.raises(FetchError, match=r"fredgraph\.csv\?id=DFF: HTTP 404"):
        fetch_all(tmp_path, start_year=2024, end_year=2024, base_urls=server.base_urls)
    assert sum("id=DFF" in r for r in server.requests) == 1  # 4xx is not retried
    assert not list(tmp_path.iterdir())

    server.fail.clear()
    server.html.add("id=SOFR")
    with pytest.raises(FetchError, match=r"fredgraph\.csv\?id=SOFR: expected CSV but got an HTML page"):
        fetch_all(tmp_path, start_year=2024, end_year=2024, base_urls=server.base_urls)
    assert not list(tmp_path.iterdir())


def test_base_urls_from_environment_and_unknown_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMARGIN_FETCH_BASE_URL_FRED", "http://127.0.0.1:9/")
    bases = fetch.resolve_base_urls({"treasury": "http://127.0.0.1:8"})
    assert bases == {"treasury": "http://127.0.0.1:8", "fred": "http://127.0.0.1:9",
                     "fiscaldata": "https://api.fiscaldata.treasury.gov"}
    with pytest.raises(ValueError, match="unknown source"):
        fetch.resolve_base_urls({"nyfed": "http://127.0.0.1:1"})


def _env(server: FakePublishers) -> dict[str, str]:
    return {f"XMARGIN_FETCH_BASE_URL_{k.upper()}": v for k, v in server.base_urls.items()}


def test_cli_fetch_prints_summary(server: FakePublishers, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        data_app, ["fetch", "--dest", str(tmp_path), "--start-year", "2024", "--end-year", "2025"],
        env=_env(server),
    )
    assert result.exit_code == 0, result.output
    for name in ("par_yield_curve.csv", "sofr.csv", "dff.csv", "auctions.csv", "2025-02-18", "2024-12-23"):
        assert name in result.output
    assert load_par_yields(tmp_path / "yields" / "par_yield_curve.csv").last_date == date(2025, 2, 18)


def test_cli_fetch_error_exits_2_naming_the_url(server: FakePublishers, tmp_path: Path) -> None:
    server.fail["field_tdr_date_value=2025"] = 500
    result = CliRunner().invoke(
        data_app, ["fetch", "--dest", str(tmp_path), "--start-year", "2024", "--end-year", "2025"],
        env=_env(server),
    )
    assert result.exit_code == 2
    assert "daily-treasury-rates.csv/2025/all" in result.output and "HTTP 500" in result.output
    assert not (tmp_path / "yields").exists()
