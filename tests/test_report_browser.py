"""The HTML report: well-formed, self-contained, every chart present, and it renders in Chromium.

The browser test needs ``/usr/bin/chromium`` and Playwright for Python (``pip install
playwright``; its own browser download is not used).  It is skipped, saying why, only when
Chromium is missing and ``XMARGIN_REQUIRE_BROWSER`` is not set; CI sets the variable, so a
missing browser fails there.  Each check is also run on a deliberately broken copy of the
report to show it can fail.
"""

from __future__ import annotations

import base64
import html
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from xmargin.cli import demo_cmd
from xmargin.portfolio.demo import DemoConfig
from xmargin.reports.html import CHARTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def outputs(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[demo_cmd.DemoRun, Path]:
    run = demo_cmd.run_demo(DemoConfig(members=2, customers_per_member=15, seed=5), data_dir=data_dir)
    paths = demo_cmd.write_outputs(run, tmp_path_factory.mktemp("report"))
    return run, paths["report"]


class _Checker(HTMLParser):
    """Collects structural problems, element ids and image sources."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.ids: dict[str, str] = {}
        self.images: list[tuple[str, str | None]] = []  # (enclosing figure id, src)
        self.figure: str | None = None
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype |= decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "id" in a and a["id"] is not None:
            if a["id"] in self.ids:
                self.problems.append(f"duplicate id {a['id']}")
            self.ids[a["id"]] = tag
        if tag == "figure":
            self.figure = a.get("id")
        if tag == "img":
            self.images.append((self.figure or "", a.get("src")))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.problems.append(f"end tag for void element <{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
        else:
            self.stack.pop()
        if tag == "figure":
            self.figure = None


def check_html(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    if checker.stack:
        checker.problems.append(f"unclosed tags: {checker.stack}")
    if not checker.doctype:
        checker.problems.append("no <!DOCTYPE html>")
    return checker


def test_report_is_well_formed_html(outputs: tuple[demo_cmd.DemoRun, Path]) -> None:
    text = outputs[1].read_text(encoding="utf-8")
    assert check_html(text).problems == []
    for tag in ("html", "head", "body", "title"):
        assert len(re.findall(rf"<{tag}[\s>]", text)) == 1
    broken = text.replace("</table>", "", 1)
    assert any("closes" in p for p in check_html(broken).problems)


def test_report_contains_every_chart_as_an_embedded_png(outputs: tuple[demo_cmd.DemoRun, Path]) -> None:
    checker = check_html(outputs[1].read_text(encoding="utf-8"))
    charts = {fig: src for fig, src in checker.images if fig}
    assert set(charts) == set(CHARTS)
    for chart_id, src in charts.items():
        assert src is not None and src.startswith("data:image/png;base64,"), chart_id
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(PNG_SIGNATURE), chart_id
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 300 and height > 200, chart_id


def test_report_is_self_contained(outputs: tuple[demo_cmd.DemoRun, Path]) -> None:
    text = outputs[1].read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text, re.IGNORECASE)
    assert "@import" not in text and "url(" not in text


def test_report_tables_and_parameters(outputs: tuple[demo_cmd.DemoRun, Path]) -> None:
    run, path = outputs
    text = path.read_text(encoding="utf-8")
    market = run.savings.market
    # the market row: accounts, before and after as printed, from the run's own margins
    before = float(run.margins.total_before.sum())
    assert f"{before:,.0f}" in text and f"{float(run.margins.total_after.sum()):,.0f}" in text
    assert market.accounts == run.book.size
    for member in ("CM01", "CM02"):
        assert f"<td>{member}</td>" in text
    shown = html.unescape(text)
    assert "--seed 5" in shown and "SOFR fixing of 2024-08-15" in shown
    # the parameters as a table (dotted name, value), then the provenance block
    assert "<td>margin_params.cross.reduction_cap</td><td>0.8</td>" in shown
    assert "Data and provenance" in shown and run.context.eligibility.sha256 not in ("",)


def _browser_problems(page, url: str) -> list[str]:  # type: ignore[no-untyped-def]
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
    page.on("request", lambda r: problems.append(f"network request: {r.url[:80]}")
            if not r.url.startswith(("file:", "data:")) else None)
    page.goto(url, wait_until="load")
    images = page.evaluate("Array.from(document.images).map(i => [i.closest('figure')?.id ?? '', i.complete, "
                           "i.naturalWidth, i.naturalHeight])")
    for fig, complete, w, h in images:
        if not (complete and w > 0 and h > 0):
            problems.append(f"broken image in {fig or 'page'}")
    if sorted(fig for fig, *_ in images) != sorted(CHARTS):
        problems.append(f"images shown: {sorted(f for f, *_ in images)}")
    return problems


def test_report_renders_in_headless_chromium(outputs: tuple[demo_cmd.DemoRun, Path], tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("XMARGIN_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} not found and XMARGIN_REQUIRE_BROWSER is set: apt-get install -y chromium")
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium); set XMARGIN_REQUIRE_BROWSER=1 to fail instead")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is not installed: pip install playwright (no 'playwright install' needed)")
    report = outputs[1]
    text = report.read_text(encoding="utf-8")
    first = text.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = tmp_path / "broken.html"  # one chart's bytes damaged: the check must notice
    broken.write_text(text[:first] + "AAAA" + text[first + 4:], encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            assert _browser_problems(page, report.resolve().as_uri()) == []
            assert page.title().startswith("xmargin cross-margining demo")
            assert page.locator("table").count() >= 4
            damaged = _browser_problems(browser.new_page(), broken.resolve().as_uri())
            assert any("broken image" in d for d in damaged), damaged
        finally:
            browser.close()
