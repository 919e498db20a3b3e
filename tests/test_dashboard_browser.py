"""The dashboard in headless Chromium against a real ``xmargin serve`` process.

A member logs in with its key, submits a what-if and sees the numbers the API gives for the
same portfolio; a trade posted through the API appears in the member view without a reload
(server-sent events); the admin sees the market view with the API's numbers.  The page loads
nothing from anywhere but the server.  A screenshot is kept as a CI artifact
(``artifacts/dashboard.png``).

Needs ``/usr/bin/chromium`` and Playwright for Python (its own browser download is not used);
skipped, saying why, only when Chromium is missing and ``XMARGIN_REQUIRE_BROWSER`` is unset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from xmargin.service.testing import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PORTFOLIO = [
    {"account": "CM01-WI-1", "member": "CM01", "account_type": "customer", "instrument": "91282CKQ3",
     "quantity": 30_000_000},
    {"account": "CM01-WI-1", "member": "CM01", "account_type": "customer", "instrument": "ZNZ24", "quantity": -260},
    {"account": "CM01-WI-2", "member": "CM01", "account_type": "customer", "instrument": "UBZ24", "quantity": 40},
    {"account": "CM01-WI-2", "member": "CM01", "account_type": "customer", "instrument": "912810UC0",
     "quantity": -10_000_000},
]


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if not CHROMIUM.exists():
        if os.environ.get("XMARGIN_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} not found and XMARGIN_REQUIRE_BROWSER is set: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium); set XMARGIN_REQUIRE_BROWSER=1 to fail instead")
    srv = ServerProcess(tmp_path_factory.mktemp("serve-browser"), data_dir=data_dir, members=2, customers=20)
    with srv:
        yield srv


@pytest.fixture(scope="module")
def browser(server: ServerProcess) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is not installed: pip install playwright (no 'playwright install' needed)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _page(browser: Any, server: ServerProcess, expected: tuple[int, ...] = ()) -> tuple[Any, list[str]]:
    """A page that collects problems: console errors (bar the HTTP statuses the test provokes),
    page errors, requests to anywhere but the server."""
    problems: list[str] = []
    provoked = tuple(f"responded with a status of {code} " for code in expected)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.set_default_timeout(20_000)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not any(p in m.text for p in provoked) else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("request", lambda r: problems.append(f"off-server request: {r.url}")
            if not r.url.startswith(server.base_url + "/") else None)
    return page, problems


def _login(page: Any, server: ServerProcess, who: str) -> None:
    page.goto(server.base_url + "/", wait_until="load")
    page.fill("#key", server.keys[who])
    page.click("#login-submit")
    page.wait_for_selector("#app:not([hidden])")
    page.wait_for_selector('#live-status[data-state="live"]')


def _value(page: Any, selector: str) -> float:
    el = page.locator(selector)
    raw = el.get_attribute("data-value")
    assert raw not in (None, ""), selector
    shown = el.inner_text()
    assert shown == f"{round(float(raw)):,}" or shown == f"-{round(abs(float(raw))):,}", (selector, shown, raw)
    return float(raw)


def test_login_rejects_a_wrong_key(browser: Any, server: ServerProcess) -> None:
    page, problems = _page(browser, server, expected=(401,))
    page.goto(server.base_url + "/", wait_until="load")
    page.fill("#key", "xmk_not-a-key")
    page.click("#login-submit")
    page.wait_for_function("() => document.getElementById('login-error').textContent.length > 0")
    assert "not valid" in page.inner_text("#login-error")
    assert page.locator("#app").is_hidden()
    page.close()
    assert problems == [], problems


def test_member_what_if_live_update_and_screenshot(browser: Any, server: ServerProcess) -> None:
    api = httpx.Client(base_url=server.api, headers=server.headers("CM01"), timeout=30)
    expected = api.post("/what-if/portfolio", json=PORTFOLIO).json()
    page, problems = _page(browser, server, expected=(422,))  # the bad portfolio below
    _login(page, server, "CM01")
    assert page.inner_text("#who") == "member CM01"
    assert page.locator("#tab-market").is_hidden()

    # member view: the API's member summary, account by account
    summary = api.get("/members/CM01").json()
    page.wait_for_selector('#member-accounts tbody tr[data-account="CM01-HOUSE"]')
    assert _value(page, "#member-before") == summary["total"]["before"]
    assert _value(page, "#member-after") == summary["total"]["after"]
    assert _value(page, "#member-savings") == summary["total"]["savings"]
    rows = page.locator("#member-accounts tbody tr")
    assert rows.count() == len(summary["accounts"])
    for acc in summary["accounts"][:5]:
        sel = f'#member-accounts tr[data-account="{acc["account"]}"] td[data-field="total_after"]'
        assert _value(page, sel) == acc["total_after"]
    assert page.locator("#member-chart rect.bar-after[data-value]").count() == 3

    # what-if calculator: paste, calculate, the API's document on screen
    page.click("#tab-whatif")
    page.fill("#portfolio-text", json.dumps(PORTFOLIO, indent=1))
    page.click("#whatif-run")
    page.wait_for_selector("#whatif-result:not([hidden])")
    t = expected["totals"]
    assert _value(page, "#wi-before") == t["total_before"]
    assert _value(page, "#wi-after") == t["total_after"]
    assert _value(page, "#wi-savings") == t["savings"]
    for house, sa, comb in (("ficc", "ficc_standalone", "ficc_requirement"), ("cme", "cme_standalone", "cme_requirement")):
        assert _value(page, f'#whatif-totals tr[data-house="{house}"] td[data-field="standalone"]') == t[sa]
        assert _value(page, f'#whatif-totals tr[data-house="{house}"] td[data-field="combined"]') == t[comb]
    for acc in expected["accounts"]:
        sel = f'#whatif-accounts tr[data-account="{acc["account"]}"] td[data-field="total_after"]'
        assert _value(page, sel) == acc["total_after"]
    bars = page.locator("#whatif-chart rect.bar-after[data-value]")
    assert bars.count() == 3
    assert [float(bars.nth(i).get_attribute("data-value")) for i in range(3)] == [
        t["ficc_requirement"], t["cme_requirement"], t["total_after"]]
    # the same portfolio as CSV gives the same numbers
    header = "account,member,account_type,instrument,quantity"
    csv = "\n".join([header] + [",".join(str(r[k]) for k in header.split(",")) for r in PORTFOLIO])
    page.fill("#portfolio-text", csv)
    page.evaluate("for (const id of ['wi-before', 'wi-after']) { const e = document.getElementById(id);"
                  " e.textContent = ''; e.dataset.value = ''; }")
    with page.expect_response(lambda resp: resp.url.endswith("/what-if/portfolio")) as sent:
        page.click("#whatif-run")
    assert sent.value.status == 200
    page.wait_for_function("() => document.getElementById('wi-after').dataset.value !== ''")
    assert _value(page, "#wi-after") == t["total_after"] and _value(page, "#wi-before") == t["total_before"]
    # a bad portfolio: the API's message, naming the field
    page.fill("#portfolio-text", json.dumps([{**PORTFOLIO[1], "quantity": -1.5}]))
    page.click("#whatif-run")
    page.wait_for_function("() => document.getElementById('whatif-error').textContent.includes('quantity')")

    # live: a trade posted through the API shows up in the member view, no reload
    page.click("#tab-member")
    page.wait_for_selector('#member-accounts tbody tr[data-account="CM01-C0004"]')
    before = _value(page, '#member-accounts tr[data-account="CM01-C0004"] td[data-field="total_after"]')
    r = api.post("/trades", json={"trade_id": "ui-live-1", "account": "CM01-C0004", "instrument": "ZNZ24",
                                  "quantity": -40})
    assert r.status_code == 201, r.text
    after = r.json()["margin"]["total_after"]
    assert after != before
    page.wait_for_function(
        "v => document.querySelector('#member-accounts tr[data-account=\"CM01-C0004\"] td[data-field=\"total_after\"]')"
        ".dataset.value === String(v)", arg=after)
    page.wait_for_selector('#live-log li[data-trade="ui-live-1"]')
    fresh = api.get("/members/CM01").json()
    page.wait_for_function("v => document.getElementById('member-after').dataset.value === String(v)",
                           arg=fresh["total"]["after"])
    assert _value(page, "#member-after") == fresh["total"]["after"] != summary["total"]["after"]

    # a proposed trade: the incremental what-if on screen
    page.click("#trade-whatif summary")
    page.select_option("#tw-account", "CM01-HOUSE")
    page.fill("#tw-instrument", "ZBZ24")
    page.fill("#tw-quantity", "25")
    page.click("#trade-form button[type=submit]")
    page.wait_for_selector("#tw-result:not([hidden])")
    w = api.post("/what-if/trade", json={"account": "CM01-HOUSE", "instrument": "ZBZ24", "quantity": 25}).json()
    assert _value(page, '#tw-result tr[data-row="after"] td[data-field="total_after"]') == w["after"]["total_after"]

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(PNG_SIGNATURE) and shot.stat().st_size > 20_000
    page.close()
    api.close()
    assert problems == [], problems


def test_admin_market_view(browser: Any, server: ServerProcess) -> None:
    page, problems = _page(browser, server)
    _login(page, server, "admin")
    page.wait_for_selector('#market-members tbody tr[data-member="CM02"]')
    market = httpx.get(server.api + "/market", headers=server.headers("admin"), timeout=30).json()
    m = market["market"]
    assert _value(page, "#market-before") == m["before"]
    assert _value(page, "#market-after") == m["after"]
    assert _value(page, "#market-stress-before") == m["stressed_loss_before"]
    assert _value(page, "#market-stress-after") == m["stressed_loss_after"]
    for x in market["members"]:
        assert _value(page, f'#market-members tr[data-member="{x["member"]}"] td[data-field="after"]') == x["total"]["after"]
    assert page.locator("#market-chart rect.bar-before[data-value]").count() == len(market["members"])
    assert page.locator("#market-stress-chart rect[data-value]").count() >= 4
    # the admin can look at any member
    page.click("#tab-member")
    page.select_option("#member-select", "CM02")
    page.wait_for_selector('#member-accounts tbody tr[data-account="CM02-HOUSE"]')
    page.close()
    assert problems == [], problems


def test_accounts_searchable_paged_and_statement_one_click_away(browser: Any, server: ServerProcess) -> None:
    """A member with many accounts: the table pages and filters; each row's statement opens
    in one click, with the API's statement figures."""
    import math

    api = httpx.Client(base_url=server.api, headers=server.headers("CM01"), timeout=60)
    summary = api.get("/members/CM01").json()
    names = [a["account"] for a in summary["accounts"]]
    page, problems = _page(browser, server)
    _login(page, server, "CM01")
    page.wait_for_selector('#member-accounts tbody tr[data-account="CM01-HOUSE"]')
    visible = page.locator("#member-accounts tbody tr:visible")
    page.select_option("#page-size", "10")
    assert visible.count() == 10
    assert page.inner_text("#page-info") == f"page 1 of {math.ceil(len(names) / 10)}"
    page.click("#page-next")
    assert visible.count() == min(10, len(names) - 10)
    assert visible.first.get_attribute("data-account") == names[10]
    page.fill("#account-search", "c0007")  # case-insensitive, by name
    assert visible.count() == 1 and visible.first.get_attribute("data-account") == "CM01-C0007"
    assert page.inner_text("#account-count") == f"1 of {len(names)} accounts"

    with page.context.expect_page() as opened:
        page.click('#member-accounts button.statement[data-account="CM01-C0007"]')
    st = opened.value
    st.wait_for_load_state("load")
    assert st.title().startswith("Margin statement: account CM01-C0007")
    doc = api.get("/accounts/CM01-C0007/statement").json()
    row = next(a for a in summary["accounts"] if a["account"] == "CM01-C0007")
    assert round(doc["figures"]["total_after"], 2) == round(row["total_after"], 2)
    assert f"{doc['figures']['total_after']:,.4f}" in st.content()
    images = st.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert images == [True, True]
    assert api.get("/accounts/CM02-C0001/statement").status_code == 404  # another member's account
    st.close()
    page.close()
    api.close()
    assert problems == [], problems
