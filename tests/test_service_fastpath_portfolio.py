"""The portfolio what-if fast path (:mod:`xmargin.service.fastpath_portfolio`) answers what the
FastAPI route answers.

One real server (the fast path on, the default); every request is sent twice: as it is (the
fast path takes it when it can) and with ``?explain=false`` (a query string always goes to
the route, which parses ``explain``; false is the default, so the document is the same).  Both
must give the same status, the same body byte for byte (the fast path encodes it by
:func:`~xmargin.service.fastpath.response_json`, the route by Starlette), content type and
``Server-Timing`` -- for answers (the
benchmark's 10-position body, the accounts form, a member and a bearer key, a repo, an
account not cross-margining, instruments the engine does not hold and that are priced for the
first what-if in the pricing pool, then answered on the event loop) and for every kind of
refusal (no key, a wrong key, a body the model refuses, one the portfolio reader refuses with
the position's place in ``loc``, not JSON, not UTF-8, another content type).  The reference
is the route, which ``test_service_api.py`` exercises.  The fast path's counter must count
exactly the plain requests answered 200, and the request metrics count every request once
under the route's template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from xmargin.service.testing import ServerProcess

PATH = "/what-if/portfolio"
SLOW_PRICING = ["--pricing-timeout", "300"]  # the priced cases must not time out on a loaded machine


def _pos(account: str, instrument: str, quantity: float, **extra: Any) -> dict[str, Any]:
    return {"account": account, "member": "CM01", "account_type": "customer", "instrument": instrument,
            "quantity": quantity, **extra}


def _ten(k: float) -> list[dict[str, Any]]:
    """Ten positions over two accounts on the demo's date (2024-08-15), like the benchmark's
    body (``benchmarks.bench_scale._portfolio10``): a repo, notes, a bond, futures."""
    lots = round(400 * k)
    return [_pos("BENCH-1", "91282CKQ3", lots * 100_000, repo_start="2024-08-15", repo_end="2024-09-16",
                 repo_rate=5.35, cash_amount=lots * 96_250),
            _pos("BENCH-1", "ZNZ24", -round(350 * k)), _pos("BENCH-1", "SR3Z24", round(40 * k)),
            _pos("BENCH-2", "912810UC0", round(20_000_000 * k, -5)), _pos("BENCH-2", "UBZ24", -round(60 * k)),
            _pos("BENCH-2", "ZTZ24", round(30 * k)), _pos("BENCH-1", "91282CKP5", round(15_000_000 * k, -5)),
            _pos("BENCH-1", "ZFZ24", -round(120 * k)), _pos("BENCH-2", "ZBZ24", round(25 * k)),
            _pos("BENCH-2", "SR3H25", -round(30 * k))]


def _cases(keys: dict[str, str]) -> list[tuple[str, dict[str, str], Any]]:
    """(label, headers, body) -- a body given as bytes is sent as it is."""
    admin = {"X-API-Key": keys["admin"], "Content-Type": "application/json"}
    member = {"X-API-Key": keys["CM01"], "Content-Type": "application/json"}
    bearer = {"Authorization": f"Bearer {keys['CM02']}", "Content-Type": "application/json"}
    simple = [_pos("P-1", "ZNZ24", -30), _pos("P-1", "91282CKQ3", 4_000_000)]
    accounts_form = {"accounts": [
        {"account": "F-1", "member": "CM01", "account_type": "house", "positions": [
            {"instrument": "ZNZ24", "quantity": -12}, {"instrument": "91282CKQ3", "quantity": 2_000_000}]},
        {"account": "F-2", "member": "CM02", "account_type": "customer", "cross_margin": False,
         "positions": [{"instrument": "ZBZ24", "quantity": 5}]}]}
    return [
        ("benchmark body (10 positions, repo)", admin, _ten(0.8)),
        ("benchmark body, other quantities", member, _ten(1.3)),
        ("accounts form", admin, accounts_form),
        ("bearer key", bearer, simple),
        ("not cross-margining", admin, [_pos("P-2", "ZNZ24", 10, cross_margin=False),
                                        _pos("P-2", "912810UC0", -1_000_000, cross_margin=False)]),
        ("instruments priced for the what-if", admin, [_pos("P-3", "ZBZ25", 3), _pos("P-3", "ZFH25", -7),
                                                        _pos("P-3", "91282CKQ3", 1_000_000)]),
        ("unknown instrument", admin, [_pos("P-4", "ZNZ24", 1), _pos("P-4", "NOPE99", 1)]),
        ("fractional contracts", admin, [_pos("P-4", "ZNZ24", 1.5)]),
        ("repo missing a field", admin, [_pos("P-4", "91282CKQ3", 1e6, repo_start="2024-08-15",
                                              repo_end="2024-09-16", repo_rate=5.3)]),
        ("accounts disagree", admin, [_pos("P-5", "ZNZ24", 1), {**_pos("P-5", "ZFZ24", 1), "member": "CM02"}]),
        ("no key", {"Content-Type": "application/json"}, simple),
        ("wrong key", {**admin, "X-API-Key": "xmk_wrong"}, simple),
        ("extra field", admin, [{**simple[0], "price": 3}]),
        ("empty list", admin, []),
        ("quantity not a number", admin, [{**simple[0], "quantity": "many"}]),
        ("not JSON", admin, b"[{account: P-1"),
        ("not UTF-8", admin, b"\xff\xfe[]"),
        ("text/plain", {**admin, "Content-Type": "text/plain"}, json.dumps(simple).encode()),
        ("charset", {**admin, "Content-Type": "application/json; charset=utf-8"}, simple),
    ]


def _post(c: httpx.Client, path: str, headers: dict[str, str], body: Any) -> tuple[int, bytes, str | None, str]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = c.post(path, headers=headers, content=content)
    assert r.headers.get("x-content-type-options") == "nosniff"  # Guard's headers on both
    timing = r.headers.get("server-timing")
    return r.status_code, r.content, None if timing is None else timing.split("dur=")[0], r.headers["content-type"]


def _metric(text: str, prefix: str, where: str = "") -> float:
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(prefix) and where in ln)


def test_portfolio_fast_path_answers_what_the_route_answers(data_dir: Path, tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "srv", data_dir=data_dir, members=2, customers=3, extra=SLOW_PRICING) as srv:
        cases = _cases(srv.keys)
        fast, route = {}, {}
        with httpx.Client(base_url=srv.api, timeout=300) as c:
            for label, headers, body in cases:
                fast[label] = _post(c, PATH, headers, body)  # first: new instruments priced here
                route[label] = _post(c, f"{PATH}?explain=false", headers, body)
        with httpx.Client(base_url=srv.base_url) as c:
            text = c.get("/metrics").text
    for label, _, _ in cases:
        assert fast[label] == route[label], label  # status, body byte for byte, Server-Timing, type
    status = {label: s for label, (s, _, _, _) in route.items()}
    ok = [label for label, s in status.items() if s == 200]
    assert len(ok) == 7, status
    assert status["no key"] == status["wrong key"] == 401
    assert all(status[x] == 422 for x in ("unknown instrument", "fractional contracts", "repo missing a field",
                                          "accounts disagree", "extra field", "empty list", "not JSON",
                                          "not UTF-8", "text/plain"))
    # the reader's refusals name the position in the body, as the route words them
    assert json.loads(route["unknown instrument"][1])["detail"][0]["loc"][:2] == ["body", 1]
    doc = json.loads(route["benchmark body (10 positions, repo)"][1])
    assert len(doc["accounts"]) == 2 and doc["totals"]["total_before"] > doc["totals"]["total_after"] > 0
    assert json.loads(route["instruments priced for the what-if"][1])["accounts"][0]["status"] == "ok"
    assert _metric(text, "xmargin_what_if_portfolio_fast_total") == len(ok)  # each plain 200 came fast
    assert _metric(text, "xmargin_what_ifs_total", 'kind="portfolio"') == 2 * len(ok)
    assert _metric(text, "xmargin_request_seconds_count", 'route="/api/v1/what-if/portfolio"') == 2 * len(cases)
