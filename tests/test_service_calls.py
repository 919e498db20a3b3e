"""``POST /api/v1/reconcile-calls`` on a real ``xmargin serve`` process (demo book, SQLite), and
the dashboard's "Calls reconciliation" tab in headless Chromium.

The expected differences are computed here from the service's own ``/accounts`` figures:
``called - ours`` and its share of the call, flagged beyond the tolerance.  The browser test
needs ``/usr/bin/chromium`` and Playwright (skipped, saying why, without Chromium unless
``XMARGIN_REQUIRE_BROWSER`` is set).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from xmargin.service.testing import ServerProcess


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("serve-calls"), data_dir=data_dir, members=1, customers=4)
    with srv:
        yield srv


def test_calls_against_the_live_book(server: ServerProcess, client) -> None:  # type: ignore[no-untyped-def]
    h = server.headers("CM01")
    accounts = client.get("/accounts", headers=h).json()["accounts"]
    acc = next(a for a in accounts if a["cme_requirement"] and a["ficc_requirement"])
    cme, ficc = acc["cme_requirement"], acc["ficc_requirement"]
    calls = [{"account": acc["account"], "clearinghouse": "CME", "called": round(cme * 1.1, 2)},
             {"account": acc["account"], "clearinghouse": "ficc", "called": round(ficc, 2)},
             {"account": "NOBODY", "clearinghouse": "CME", "called": 10.0}]
    r = client.post("/reconcile-calls", json={"calls": calls, "tolerance_pct": 5}, headers=h)
    assert r.status_code == 200, r.text
    rows = {(x["account"], x["clearinghouse"]): x for x in r.json()["rows"]}
    c = rows[(acc["account"], "CME")]
    assert c["ours"] == pytest.approx(cme)
    assert c["difference"] == pytest.approx(round(cme * 1.1, 2) - cme)
    assert c["difference_pct"] == pytest.approx((round(cme * 1.1, 2) - cme) / round(cme * 1.1, 2) * 100)
    assert c["flagged"]
    assert not rows[(acc["account"], "FICC")]["flagged"]
    assert rows[("NOBODY", "CME")]["note"] == "no such account in our results"
    bad = client.post("/reconcile-calls", json={"calls": [{"account": "A", "clearinghouse": "LCH", "called": 1}]},
                      headers=h)
    assert bad.status_code == 422 and "clearinghouse" in str(bad.json()["detail"][0]["loc"])


CHROMIUM = Path("/usr/bin/chromium")


def test_calls_tab_in_the_dashboard(server: ServerProcess, client) -> None:  # type: ignore[no-untyped-def]
    """A member pastes two calls; the table shows the API's differences and flags the one 10%
    off (tolerance 5%)."""
    if not CHROMIUM.exists():
        if os.environ.get("XMARGIN_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} not found and XMARGIN_REQUIRE_BROWSER is set")
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    h = server.headers("CM01")
    acc = next(a for a in client.get("/accounts", headers=h).json()["accounts"] if a["cme_requirement"])
    called = round(acc["cme_requirement"] * 1.1)
    csv_text = f"account,clearinghouse,called\n{acc['account']},CME,{called}\nNOBODY,FICC,5\n"
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page: Any = browser.new_page()
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server.base_url + "/", wait_until="load")
            page.fill("#key", server.keys["CM01"])
            page.click("#login-submit")
            page.wait_for_selector("#app:not([hidden])")
            page.click("#tab-calls")
            page.fill("#calls-text", csv_text)
            page.click("#calls-run")
            page.wait_for_selector("#calls-table:not([hidden])")
            rows = page.locator("#calls-table tbody tr")
            first = rows.nth(0).locator("td")
            assert first.nth(0).inner_text() == acc["account"]
            assert float(first.nth(4).get_attribute("data-value")) == pytest.approx(called - acc["cme_requirement"])
            assert first.nth(6).inner_text() == "FLAG" and "flagged" in (rows.nth(0).get_attribute("class") or "")
            assert "no such account" in rows.nth(1).locator("td").nth(7).inner_text()
            assert "flagged" in page.inner_text("#calls-summary")
        finally:
            browser.close()
    assert problems == [], problems
