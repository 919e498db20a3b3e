"""The HTTP API through a real ``xmargin serve`` process on loopback (SQLite ledger, demo book).

Expected numbers come from outside the service: the portfolio what-if must equal
``margin_payload`` computed directly from the same JSON file (``margin_job``), the trade
what-if and the recorded trades must equal ``compute_margins`` on the positions rebuilt from
the ledger the server wrote, the summaries must equal sums of the account figures.  Every
rejected request is checked to leave the ledger untouched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from xmargin.clearing import replay
from xmargin.cli.demo_cmd import default_as_of
from xmargin.ledger import Ledger, verify_ledger
from xmargin.margin.calculator import compute_margins
from xmargin.service.testing import ServerProcess, StreamListener
from xmargin.workflow import Environment, margin_job

HEADLINE = ("ficc_standalone", "cme_standalone", "ficc_combined", "cme_combined", "ficc_reduction_factor",
            "cme_reduction_factor", "applied_reduction_factor", "ficc_requirement", "cme_requirement",
            "total_before", "total_after", "savings", "savings_pct")
PORTFOLIO = [  # instruments listed on the demo's date (2024-08-15); a repo; an account not electing
    {"account": "BASIS-1", "member": "CMX", "account_type": "customer", "instrument": "91282CKQ3",
     "quantity": 40_000_000, "repo_start": "2024-08-15", "repo_end": "2024-09-16", "repo_rate": 5.35,
     "cash_amount": 38_500_000},
    {"account": "BASIS-1", "member": "CMX", "account_type": "customer", "instrument": "ZNZ24", "quantity": -350},
    {"account": "AM-1", "member": "CMX", "account_type": "customer", "instrument": "912810UC0",
     "quantity": 20_000_000},
    {"account": "AM-1", "member": "CMX", "account_type": "customer", "instrument": "UBZ24", "quantity": -60},
    {"account": "DIR-1", "member": "CMX", "account_type": "house", "instrument": "SR3Z24", "quantity": 200,
     "cross_margin": False},
    {"account": "DIR-1", "member": "CMX", "account_type": "house", "instrument": "ZTZ24", "quantity": 75,
     "cross_margin": False},
]


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("serve-api"), data_dir=data_dir, members=2, customers=20)
    with srv:
        yield srv


def rebuilt(server: ServerProcess, data_dir: Path) -> Any:
    """The engine replayed from the ledger the server wrote (read-only, in this process)."""
    with Ledger(server.ledger, create=False) as lg:
        state = replay(lg, data_dir=data_dir)
    assert state.engine is not None
    return state


def batch_figures(engine: Any, account: str, extra: tuple[str, float] | None = None) -> dict[str, float]:
    """``compute_margins`` (the batch calculator) on the account's positions (plus ``extra``)."""
    from xmargin.portfolio.book import build_book

    ctx = engine.context
    positions = dict(engine.positions(account))
    if extra is not None:
        positions[extra[0]] = positions.get(extra[0], 0.0) + extra[1]
    inst = {i: ctx.universe.instruments[ctx.universe.index(i)] for i in positions}
    book = build_book([engine.account(account)], [(0, inst[i], q) for i, q in positions.items() if q != 0],
                      universe=ctx.universe)
    return compute_margins(ctx, book).row(0)


def close(api: dict[str, Any], expected: dict[str, Any], rel: float = 1e-9) -> None:
    for k in HEADLINE:
        a, b = api[k], expected[k]
        if b is None or (isinstance(b, float) and math.isnan(b)):
            assert a is None, k
        else:
            assert a == pytest.approx(b, rel=rel, abs=1e-6), k


# ----------------------------------------------------------------------------- service


def test_health_and_readiness(server: ServerProcess, client: httpx.Client, data_dir: Path) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    body = r.json()
    # 2 members x (house + 1 affiliate + 20 customers), as of the demo's default date
    assert body["status"] == "ready" and body["accounts"] == 2 * 22 and body["members"] == 2
    assert body["as_of"] == default_as_of(data_dir).isoformat()
    assert body["ledger_seq"] == server.ledger_head()[0] > 0
    assert verify_ledger(Ledger(server.ledger, create=False)).ok


def test_openapi_documents_every_endpoint(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    paths = set(doc["paths"])
    for p in ("/api/v1/health", "/api/v1/ready", "/api/v1/me", "/api/v1/what-if/portfolio", "/api/v1/what-if/trade",
              "/api/v1/trades", "/api/v1/accounts", "/api/v1/accounts/{account}", "/api/v1/members/{member}",
              "/api/v1/market", "/api/v1/stream"):
        assert p in paths, p
    schemas = doc["components"]["schemas"]
    assert {"MarginDocument", "TradeIn", "ProposedTradeIn", "WhatIfResult", "MemberSummary", "MarketSummary"} <= set(schemas)
    assert {"ApiKey", "Bearer"} <= set(doc["components"]["securitySchemes"])


# ----------------------------------------------------------------------------- what-if


def test_portfolio_what_if_equals_margin_payload(server: ServerProcess, client: httpx.Client, data_dir: Path,
                                                 tmp_path: Path) -> None:
    path = tmp_path / "portfolio.json"
    path.write_text(json.dumps(PORTFOLIO))
    env = Environment.load(date.fromisoformat(client.get("/ready").json()["as_of"]), data_dir=data_dir)
    direct = json.loads(json.dumps(margin_job(env, path)))  # the `xmargin margin --format json` document
    before = server.ledger_head()
    r = client.post("/what-if/portfolio", json=PORTFOLIO, headers=server.headers("CM01"))
    assert r.status_code == 200, r.text
    doc = r.json()
    # the residual notes describe the data behind each context (the service's covers every served
    # root); the factors the book is exposed to, their coverage and every other model field agree
    def model(d: dict[str, Any]) -> dict[str, Any]:
        return {**d["model"], "residual": {k: v for k, v in d["model"].get("residual", {}).items() if k != "notes"}}

    assert doc["as_of"] == direct["as_of"] and model(doc) == model(direct)
    assert doc["accounts"] == direct["accounts"]  # bit for bit: same rows of the same P&L matrices
    assert doc["totals"] == direct["totals"]
    assert doc["warnings"] == [w.replace(str(path), "request body") for w in direct["warnings"]]
    assert {a["account"] for a in doc["accounts"]} == {"BASIS-1", "AM-1", "DIR-1"}
    assert doc["totals"]["savings"] > 0
    # the accounts form of the same portfolio gives the same document
    accounts: dict[str, dict[str, Any]] = {}
    for row in PORTFOLIO:
        acc = accounts.setdefault(row["account"], {k: row[k] for k in ("account", "member", "account_type")}
                                  | {"cross_margin": row.get("cross_margin", True), "positions": []})
        acc["positions"].append({k: v for k, v in row.items() if k not in ("account", "member", "account_type",
                                                                           "cross_margin")})
    r2 = client.post("/what-if/portfolio", json={"accounts": list(accounts.values())}, headers=server.headers("admin"))
    assert r2.status_code == 200 and r2.json()["accounts"] == direct["accounts"]
    assert server.ledger_head() == before  # nothing recorded


def test_portfolio_what_if_explain(server: ServerProcess, client: httpx.Client) -> None:
    r = client.post("/what-if/portfolio", params={"explain": "true"}, json=PORTFOLIO[:2],
                    headers=server.headers("CM01"))
    assert r.status_code == 200
    explain = r.json()["accounts"][0]["explain"]
    assert explain and isinstance(explain, dict)


def test_trade_what_if_equals_batch_margin(server: ServerProcess, client: httpx.Client, data_dir: Path) -> None:
    before_head = server.ledger_head()
    account = client.get("/accounts/CM01-HOUSE", headers=server.headers("CM01")).json()
    r = client.post("/what-if/trade", json={"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": -120},
                    headers=server.headers("CM01"))
    assert r.status_code == 200, r.text
    w = r.json()
    assert w["new_account"] is False and w["instrument"] == "ZNZ24" and w["member"] == "CM01"
    assert w["before"] == account["figures"]
    state = rebuilt(server, data_dir)
    close(w["after"], batch_figures(state.engine, "CM01-HOUSE", ("ZNZ24", -120.0)))
    for k in ("total_before", "total_after", "savings"):
        assert w["change"][k] == pytest.approx(w["after"][k] - w["before"][k], rel=1e-12, abs=1e-6)
    assert w["after"]["cme_standalone"] != w["before"]["cme_standalone"]  # the trade mattered
    # nothing applied, nothing recorded
    assert client.get("/accounts/CM01-HOUSE", headers=server.headers("CM01")).json()["figures"] == account["figures"]
    assert server.ledger_head() == before_head
    # a new account (member and type given) starts from nothing
    r = client.post("/what-if/trade", json={"account": "CM01-NEW", "account_type": "customer", "instrument": "ZBZ24",
                                            "quantity": 10}, headers=server.headers("CM01"))
    assert r.status_code == 200 and r.json()["new_account"] is True
    assert r.json()["before"]["total_before"] == 0.0 and r.json()["after"]["total_before"] > 0
    assert client.get("/accounts/CM01-NEW", headers=server.headers("CM01")).status_code == 404


def test_trade_what_if_in_a_new_instrument_leaves_the_engine_alone(server: ServerProcess, client: httpx.Client,
                                                                    data_dir: Path) -> None:
    """A repo the book does not hold: priced for the what-if only.  A later real trade in a repo
    with the same identifier but another face (its cash per 100 differs in the 8th digit,
    below the identifier's rounding) is what defines the row, as in a replay: the replayed
    margins stay identical to the recorded ones."""
    from xmargin.reference.repo import make_repo

    terms = {"repo_start": "2024-08-15", "repo_end": "2024-10-15", "repo_rate": 5.31}
    h = server.ledger_head()
    r = client.post("/what-if/trade", json={"account": "CM01-C0006", "instrument": "91282CKQ3",
                                            "quantity": 10_000_000, "cash_amount": 9_612_345.67, **terms},
                    headers=server.headers("CM01"))
    assert r.status_code == 200, r.text
    w = r.json()
    assert w["instrument"].startswith("REPO:91282CKQ3:2024-08-15:2024-10-15:5.31:")
    state = rebuilt(server, data_dir)
    eng = state.engine
    assert w["instrument"] not in eng.context.universe.ids and server.ledger_head() == h
    # expected: the batch calculator on the account's positions plus the repo, priced here
    bond = state.market.master.definition("91282CKQ3")
    repo = make_repo(bond, start=date(2024, 8, 15), end=date(2024, 10, 15), rate_pct=5.31, cash_amount=9_612_345.67,
                     face=10_000_000, as_of=state.market.snapshot.as_of)
    from xmargin.portfolio.book import build_book

    ctx = eng.context.extended([repo])
    held = [(ctx.universe.instruments[ctx.universe.index(i)], q) for i, q in eng.positions("CM01-C0006").items()]
    for figures, extra in ((w["before"], []), (w["after"], [(repo, 10_000_000.0)])):
        book = build_book([eng.account("CM01-C0006")], [(0, i, q) for i, q in [*held, *extra]], universe=ctx.universe)
        close(figures, compute_margins(ctx, book).row(0))
    close(w["before"], eng.margin("CM01-C0006"))  # the live figures, to rounding
    # now a real trade in the "same" repo (same identifier, another face)
    t = client.post("/trades", json={"trade_id": "api-repo-1", "account": "CM01-C0006", "instrument": "91282CKQ3",
                                     "quantity": 30_000_000, "cash_amount": 28_837_037.01, **terms},
                    headers=server.headers("CM01"))
    assert t.status_code == 201, t.text
    assert rebuilt(server, data_dir).mismatches == []


# ----------------------------------------------------------------------------- trades


def test_trade_is_recorded_once_and_replayed(server: ServerProcess, client: httpx.Client, data_dir: Path) -> None:
    h0 = server.ledger_head()
    trade = {"trade_id": "api-t1", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": -15}
    r = client.post("/trades", json=trade, headers=server.headers("CM01"))
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["replayed"] is False and first["member"] == "CM01" and first["source"] == "CME"
    h1 = server.ledger_head()
    assert h1[0] >= h0[0] + 2 and first["ledger_seq"] == h0[0] + 1  # the trade, its margin result (+ call)
    # the same id again: the original result, nothing written
    again = client.post("/trades", json=trade, headers=server.headers("CM01"))
    assert again.status_code == 200
    assert again.json() == {**first, "replayed": True}
    assert server.ledger_head() == h1
    # the same id with other content, or from another member: 409, nothing written
    for body, who in (({**trade, "quantity": -16}, "CM01"), ({**trade, "account": "CM02-C0001"}, "CM02")):
        c = client.post("/trades", json=body, headers=server.headers(who))
        assert c.status_code == 409 and "trade_id" in c.json()["detail"]
    assert server.ledger_head() == h1
    # the ledger holds it: chain intact, replay identical, figures = the batch calculator's
    with Ledger(server.ledger, create=False) as lg:
        assert verify_ledger(lg).ok
        entry = lg.find("trade", "api-t1")
        assert entry is not None and entry.seq == first["ledger_seq"]
    state = rebuilt(server, data_dir)
    assert state.mismatches == []
    assert first["margin"] == {k: state.recorded["CM01-C0001"][k] for k in HEADLINE}
    close(first["margin"], batch_figures(state.engine, "CM01-C0001"))
    shown = client.get("/accounts/CM01-C0001", headers=server.headers("CM01")).json()
    assert shown["figures"] == first["margin"]
    assert dict((p["instrument"], p["quantity"]) for p in shown["positions"]) == state.engine.positions("CM01-C0001")
    if first["calls"]:
        assert first["calls"][0]["kind"] == "margin_call" and first["calls"][0]["account"] == "CM01-C0001"


BAD = [  # (endpoint, body, the field `loc` must name)
    ("/trades", b'{"trade_id": "bad-1", "account": "CM01-C0001",', "body"),
    ("/trades", {"trade_id": "bad-2", "account": "CM01-C0001", "instrument": "ZNZ24"}, "quantity"),
    ("/trades", {"trade_id": "bad-3", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": "ten"}, "quantity"),
    ("/trades", {"trade_id": "bad-4", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 0}, "quantity"),
    ("/trades", {"trade_id": "bad-5", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 1.5}, "quantity"),
    ("/trades", {"trade_id": "bad-6", "account": "CM01-C0001", "instrument": "QQQQ99", "quantity": 1}, "instrument"),
    ("/trades", {"trade_id": "bad-7", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 1, "colour": 1},
     "colour"),
    ("/trades", {"trade_id": "bad-8", "account": "CM01-C0001", "instrument": "91282CKQ3", "quantity": 1e6,
                 "repo_start": "2024-08-15"}, "repo_end"),
    ("/trades", {"trade_id": "bad-9", "account": "CM01-BRAND-NEW", "instrument": "ZNZ24", "quantity": 1},
     "account_type"),
    ("/trades", {"trade_id": "bad-10", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 1,
                 "time": "2020-01-02T10:00:00Z"}, "time"),  # earlier than the latest CME trade
    ("/trades", {"trade_id": "bad 11", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 1}, "trade_id"),
    ("/trades", {"trade_id": "bad-12", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 1,
                 "account_type": "retail"}, "account_type"),
    ("/trades", {"trade_id": "bad-13", "account": "CM01-C0001", "instrument": "ZNZ24", "quantity": 1,
                 "account_type": "house"}, "member"),  # disagrees with the account
    ("/trades", [1, 2], "body"),
    ("/what-if/trade", {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": float("nan")}, "quantity"),
    ("/what-if/trade", {"account": "CM01-HOUSE", "instrument": "", "quantity": 1}, "instrument"),
    ("/what-if/portfolio", {"accounts": []}, "accounts"),
    ("/what-if/portfolio", [{**PORTFOLIO[1], "quantity": "x"}], "quantity"),
    ("/what-if/portfolio", [PORTFOLIO[1], {**PORTFOLIO[1], "account_type": "customer", "instrument": "ZNZ24",
                                           "quantity": -1.5}], "quantity"),
    ("/what-if/portfolio", [{**PORTFOLIO[0], "repo_rate": None, "cash_amount": None}], "repo_rate"),
    ("/what-if/portfolio", [{**PORTFOLIO[1], "member": "OTHER"}, PORTFOLIO[1]], "member"),
    ("/what-if/portfolio", {"positions": PORTFOLIO}, "positions"),
    ("/what-if/portfolio", b"\xff\xfe not utf-8", "body"),
]


@pytest.mark.parametrize(("endpoint", "body", "field"), BAD, ids=[f"{e}:{f}:{i}" for i, (e, _, f) in enumerate(BAD)])
def test_bad_input_answers_422_naming_the_field_and_writes_nothing(
        server: ServerProcess, client: httpx.Client, endpoint: str, body: Any, field: str) -> None:
    client.post("/trades", json={"trade_id": "api-anchor", "account": "CM01-C0002", "instrument": "ZNZ24",
                                 "quantity": 1}, headers=server.headers("CM01"))  # a CME trade "now"
    h = server.ledger_head()
    figures = client.get("/accounts/CM01-C0001", headers=server.headers("CM01")).json()
    if isinstance(body, bytes):
        r = client.post(endpoint, content=body, headers={**server.headers("CM01"), "Content-Type": "application/json"})
    else:
        r = client.post(endpoint, content=json.dumps(body, allow_nan=True),
                        headers={**server.headers("CM01"), "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    if field == "body":  # the body as a whole: not JSON, not UTF-8, not an object
        assert any(d["loc"][0] == "body" and all(isinstance(x, int) for x in d["loc"][1:]) for d in detail), detail
    else:
        assert any(d["loc"][0] == "body" and d["loc"][-1] == field for d in detail), detail
    assert all(d["msg"] for d in detail)
    assert server.ledger_head() == h
    assert client.get("/accounts/CM01-C0001", headers=server.headers("CM01")).json() == figures


def test_request_size_limit(server: ServerProcess, client: httpx.Client) -> None:
    h = server.ledger_head()
    rows = [PORTFOLIO[1]] * 12_000  # about 1.2 MB of JSON
    big = json.dumps(rows).encode()
    assert len(big) > 1 << 20
    r = client.post("/what-if/portfolio", content=big,
                    headers={**server.headers("CM01"), "Content-Type": "application/json"})
    assert r.status_code == 413
    # without a Content-Length (chunked): counted as it arrives
    r = client.post("/trades", content=iter([big[i:i + 65536] for i in range(0, len(big), 65536)]),
                    headers={**server.headers("CM01"), "Content-Type": "application/json"})
    assert r.status_code == 413
    assert server.ledger_head() == h
    assert client.get("/health").status_code == 200


# ----------------------------------------------------------------------------- summaries


def test_member_and_market_summaries_are_sums_of_accounts(server: ServerProcess, client: httpx.Client) -> None:
    admin = server.headers("admin")
    rows = client.get("/accounts", headers=admin).json()["accounts"]
    assert len(rows) == len({r["account"] for r in rows}) >= 44
    market = client.get("/market", headers=admin).json()
    totals: dict[str, float] = {"before": 0.0, "after": 0.0}
    for member in ("CM01", "CM02"):
        mine = [r for r in rows if r["member"] == member]
        s = client.get(f"/members/{member}", headers=server.headers(member)).json()
        assert [a["account"] for a in s["accounts"]] == [r["account"] for r in mine]
        # the house part: the member's own account and its affiliates' (each its own account)
        for part, sel in (("house", ("house", "affiliate")), ("customers", ("customer",))):
            sub = [r for r in mine if r["account_type"] in sel]
            assert s[part]["accounts"] == len(sub)
            assert s[part]["before"] == pytest.approx(sum(r["total_before"] for r in sub), rel=1e-12)
            assert s[part]["after"] == pytest.approx(sum(r["total_after"] for r in sub), rel=1e-12)
            assert s[part]["ficc_after"] == pytest.approx(sum(r["ficc_requirement"] for r in sub), rel=1e-12)
        assert s["total"]["savings"] == pytest.approx(s["total"]["before"] - s["total"]["after"], rel=1e-12)
        assert s["total"]["savings_pct"] == pytest.approx(100 * s["total"]["savings"] / s["total"]["before"])
        m = next(x for x in market["members"] if x["member"] == member)
        assert m["total"]["before"] == pytest.approx(s["total"]["before"], rel=1e-12)
        totals["before"] += s["total"]["before"]
        totals["after"] += s["total"]["after"]
    assert market["market"]["before"] == pytest.approx(totals["before"], rel=1e-12)
    assert market["market"]["after"] == pytest.approx(totals["after"], rel=1e-12)
    assert market["market"]["stressed_loss_after"] > 0 and market["market"]["coverage_after"] > 0
    assert market["funding"]["rate_pct"] > 0


# ----------------------------------------------------------------------------- stream


class Listener(StreamListener):
    """Reads one ``/stream`` until told to stop; keeps the parsed events."""

    def wait_for(self, pred: Any, timeout: float = 20.0) -> dict[str, Any]:
        with self.got:
            ok = self.got.wait_for(lambda: any(pred(e, d) for e, d in self.events), timeout)
            assert ok, self.events
            return next(d for e, d in self.events if pred(e, d))


def test_stream_sends_each_member_its_own_updates(server: ServerProcess, client: httpx.Client) -> None:
    listeners = {who: Listener(server.api + "/stream", server.headers(who)) for who in ("CM01", "CM02", "admin")}
    for li in listeners.values():
        li.start()
    for li in listeners.values():
        assert li.hello.wait(20) and li.status == 200
    t1 = client.post("/trades", json={"trade_id": "api-s1", "account": "CM01-C0003", "instrument": "ZBZ24",
                                      "quantity": 7}, headers=server.headers("CM01")).json()
    t2 = client.post("/trades", json={"trade_id": "api-s2", "account": "CM02-C0003", "instrument": "ZBZ24",
                                      "quantity": 7}, headers=server.headers("CM02")).json()
    e1 = listeners["CM01"].wait_for(lambda e, d: e == "margin" and d["trade_id"] == "api-s1")
    assert e1["account"] == "CM01-C0003" and e1["figures"] == t1["margin"] and e1["ledger_seq"] == t1["ledger_seq"]
    # CM02 gets its own trade, and CM01's (posted first) never reached it
    e2 = listeners["CM02"].wait_for(lambda e, d: e == "margin" and d["trade_id"] == "api-s2")
    assert e2["figures"] == t2["margin"]
    assert [d["trade_id"] for e, d in listeners["CM02"].events if e == "margin"] == ["api-s2"]
    admin = listeners["admin"].wait_for(lambda e, d: e == "margin" and d["trade_id"] == "api-s2")
    assert admin["member"] == "CM02"
    assert [d["trade_id"] for e, d in listeners["admin"].events if e == "margin"] == ["api-s1", "api-s2"]
    assert "api-s2" not in [d["trade_id"] for e, d in listeners["CM01"].events if e == "margin"]
    for li in listeners.values():
        li.stop = True


def test_serve_opens_with_a_portfolio_file(data_dir: Path, tmp_path: Path) -> None:
    """``--portfolio FILE`` instead of the demo book: its accounts, margined live, equal the
    batch document of ``xmargin margin FILE``; the keys are those of its members."""
    path = tmp_path / "book.json"
    path.write_text(json.dumps(PORTFOLIO))
    srv = ServerProcess(tmp_path / "srv", data_dir=data_dir, extra=["--portfolio", str(path)])
    with srv, httpx.Client(base_url=srv.api, timeout=30) as c:
        assert sorted(srv.keys) == ["CMX", "admin"]
        rows = {r["account"]: r for r in c.get("/accounts", headers=srv.headers("CMX")).json()["accounts"]}
        env = Environment.load(date.fromisoformat(c.get("/ready").json()["as_of"]), data_dir=data_dir)
        direct = margin_job(env, path)
        assert sorted(rows) == sorted(a["account"] for a in direct["accounts"])
        for acc in direct["accounts"]:
            close(rows[acc["account"]], acc)


def test_postgresql_ledger(data_dir: Path, tmp_path: Path) -> None:
    """The same service on a PostgreSQL ledger (``--ledger postgresql://...``): a small book,
    one trade, the chain verified and the replay identical."""
    from xmargin.ledger.testing import postgres_required, postgres_url, temporary_database

    url, why = postgres_url()
    if url is None:
        if postgres_required():
            pytest.fail(why)
        pytest.skip(why)
    with temporary_database(url) as db:
        srv = ServerProcess(tmp_path, data_dir=data_dir, members=1, customers=3, ledger=db)
        with srv, httpx.Client(base_url=srv.api, timeout=30) as c:
            assert c.get("/ready").json()["accounts"] == 5
            r = c.post("/trades", json={"trade_id": "pg-1", "account": "CM01-C0001", "instrument": "ZNZ24",
                                        "quantity": -3}, headers=srv.headers("CM01"))
            assert r.status_code == 201, r.text
            with Ledger(db, create=False) as lg:
                assert verify_ledger(lg).ok
                state = replay(lg, data_dir=data_dir)
            assert state.mismatches == [] and "pg-1" in state.trades
            assert r.json()["margin"] == {k: state.recorded["CM01-C0001"][k] for k in HEADLINE}


# ----------------------------------------------------------------------------- restart (last: stops the server)


def test_restart_carries_on_from_the_ledger(server: ServerProcess, client: httpx.Client, data_dir: Path) -> None:
    trade = {"trade_id": "api-r1", "account": "CM02-C0005", "instrument": "ZTZ24", "quantity": 40}
    first = client.post("/trades", json=trade, headers=server.headers("CM02")).json()
    figures = client.get("/accounts", headers=server.headers("admin")).json()["accounts"]
    h = server.ledger_head()
    assert server.stop() is not None
    again = ServerProcess(server.workdir, data_dir=data_dir, members=2, customers=20)  # reuses keys.json (--keys)
    with again, httpx.Client(base_url=again.api, timeout=30) as c:
        assert again.keys == server.keys
        assert again.ledger_head() == h  # nothing re-seeded
        assert c.get("/accounts", headers=again.headers("admin")).json()["accounts"] == figures
        r = c.post("/trades", json=trade, headers=again.headers("CM02"))  # the original result, from the ledger
        assert r.status_code == 200 and r.json() == {**first, "replayed": True}
        assert again.ledger_head() == h
    assert np.isfinite(figures[0]["total_before"])
