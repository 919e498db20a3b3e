"""The trade what-if fast path (:mod:`xmargin.service.fastpath`) answers what the FastAPI route
answers: the same requests to a real server with it (the default) and, restarted on the same
ledger and keys, without it (``--no-fast-what-if``) give the same status, the same body byte for
byte, the same headers in the same order and the same request metrics, for answers (held instruments, a new account, an instrument priced for the
what-if, a bearer key) and for every kind of refusal (no key, a wrong key, another member's
account, an unknown account, a body the model refuses, a body that is not JSON, another
content type, a missing field for a new account, a body over the size limit, a chunked body).  The reference is the route, which every
other service test exercises; the fast path must never be told apart from it except by speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from xmargin.service.testing import ServerProcess

PATH = "/what-if/trade"
SLOW_PRICING = ["--pricing-timeout", "300"]  # the priced case must not time out on a loaded machine


def _cases(keys: dict[str, str]) -> list[tuple[str, dict[str, str], Any]]:
    """(label, headers, body) -- a body given as bytes is sent as it is."""
    admin = {"X-API-Key": keys["admin"], "Content-Type": "application/json"}
    member = {"X-API-Key": keys["CM01"], "Content-Type": "application/json"}
    bearer = {"Authorization": f"Bearer {keys['CM01']}", "Content-Type": "application/json"}
    return [
        ("held future, admin", admin, {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": -7}),
        ("held future, member", member, {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 3}),
        ("bearer key", bearer, {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 2}),
        ("a note", admin, {"account": "CM01-HOUSE", "instrument": "91282CKQ3", "quantity": 5_000_000}),
        ("new account", member, {"account": "CM01-NEW1", "instrument": "ZNZ24", "quantity": 4,
                                 "member": "CM01", "account_type": "customer"}),
        ("new account, no type", member, {"account": "CM01-NEW2", "instrument": "ZNZ24", "quantity": 4}),
        ("instrument priced for the what-if", admin, {"account": "CM01-HOUSE", "instrument": "ZBZ25",
                                                      "quantity": 1}),
        ("unknown instrument", admin, {"account": "CM01-HOUSE", "instrument": "NOPE99", "quantity": 1}),
        ("no key", {"Content-Type": "application/json"}, {"account": "CM01-HOUSE", "instrument": "ZNZ24",
                                                          "quantity": 1}),
        ("wrong key", {**admin, "X-API-Key": "xmk_wrong"}, {"account": "CM01-HOUSE", "instrument": "ZNZ24",
                                                             "quantity": 1}),
        ("bearer, wrong scheme", {**bearer, "Authorization": f"Basic {keys['CM01']}"},
         {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 1}),
        ("another member's account", {**member, "X-API-Key": keys["CM02"]},
         {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 1}),
        ("unknown account", admin, {"account": "NOBODY", "instrument": "ZNZ24", "quantity": 1}),
        ("extra field", admin, {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 1, "price": 3}),
        ("quantity not a number", admin, {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": "many"}),
        ("zero quantity", admin, {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 0}),
        ("missing instrument", admin, {"account": "CM01-HOUSE", "quantity": 1}),
        ("a list", admin, [{"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 1}]),
        ("not JSON", admin, b"{account: CM01-HOUSE"),
        ("not UTF-8", admin, b"\xff\xfe{}"),
        ("text/plain", {**admin, "Content-Type": "text/plain"},
         json.dumps({"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 1}).encode()),
        ("charset", {**admin, "Content-Type": "application/json; charset=utf-8"},
         {"account": "CM01-HOUSE", "instrument": "ZNZ24", "quantity": 1}),
        ("over the size limit", admin, b" " * (1 << 20) + b"{}"),
        ("chunked", admin, lambda: iter([b'{"account": "CM01-HOUSE", ', b'"instrument": "ZNZ24", "quantity": 6}'])),
    ]


VARIES = {"date", "server-timing", "x-xmargin-worker"}  # the clock, the time taken, the process


def _fast_count(srv: ServerProcess) -> float:
    with httpx.Client(base_url=srv.base_url) as c:
        text = c.get("/metrics").text
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith("xmargin_what_if_fast_total"))


def _answers(srv: ServerProcess) -> dict[str, tuple[Any, ...]]:
    """label -> (status, JSON document, body bytes, headers in order: those that vary by their
    name and the ``Server-Timing`` metric's name)."""
    out: dict[str, tuple[Any, ...]] = {}
    with httpx.Client(base_url=srv.api, timeout=60) as c:
        for label, headers, body in _cases(srv.keys):
            content = body() if callable(body) else body if isinstance(body, bytes) else json.dumps(body).encode()
            r = c.post(PATH, headers=headers, content=content)
            shown = [(k, v.split("dur=")[0] if k == "server-timing" else "" if k in VARIES else v)
                     for k, v in r.headers.multi_items()]
            out[label] = (r.status_code, r.json(), r.content, shown)
            assert r.headers.get("x-content-type-options") == "nosniff", label  # Guard's headers on both
            assert r.headers["x-xmargin-worker"] == str(srv.proc.pid), label  # type: ignore[union-attr]
    return out


def _request_counts(srv: ServerProcess) -> tuple[dict[str, float], set[str]]:
    """The request histogram's counts of the what-if route, by label set; and every series of
    the service's metrics (name and labels) but the fast path's own counter."""
    with httpx.Client(base_url=srv.base_url) as c:
        text = c.get("/metrics").text
    counts = {ln.rsplit(" ", 1)[0]: float(ln.split()[-1]) for ln in text.splitlines()
              if ln.startswith("xmargin_request_seconds_count") and "what-if/trade" in ln}
    series = {ln.rsplit(" ", 1)[0] for ln in text.splitlines()
              if ln.startswith("xmargin_") and not ln.startswith("xmargin_what_if_fast")}
    return counts, series


def test_fast_path_answers_what_the_route_answers(data_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "srv"
    with ServerProcess(work, data_dir=data_dir, members=2, customers=3, extra=SLOW_PRICING) as fast:
        got = _answers(fast)
        got_counts = _request_counts(fast)
        fast_answers = _fast_count(fast)
    with ServerProcess(work, data_dir=data_dir, members=2, customers=3, extra=[*SLOW_PRICING, "--no-fast-what-if"]) as route:
        want = _answers(route)
        want_counts = _request_counts(route)
        assert _fast_count(route) == 0
    assert got.keys() == want.keys()
    for label in want:
        assert got[label] == want[label], label
    assert got_counts == want_counts, "the same requests counted under the same labels, the same series"
    assert sum(want_counts[0].values()) == len(want) - 1, "each counted once by route (the 413 before routing)"
    statuses = {label: s for label, (s, *_) in want.items()}
    assert statuses["held future, admin"] == 200 and statuses["instrument priced for the what-if"] == 200
    assert statuses["no key"] == 401 and statuses["another member's account"] == 404
    assert statuses["extra field"] == 422 and statuses["not JSON"] == 422
    assert statuses["over the size limit"] == 413 and statuses["chunked"] == 200
    assert sum(s == 200 for s in statuses.values()) >= 6
    # every answer came from the fast path but the chunked body's (no Content-Length: Guard bounds it)
    assert fast_answers == sum(s == 200 for s in statuses.values()) - 1


@pytest.mark.parametrize("header, expected", [
    ({b"x-api-key": b"k1"}, "k1"),
    ({b"x-api-key": b"k1", b"authorization": b"Bearer k2"}, "k1"),
    ({b"x-api-key": b"", b"authorization": b"Bearer k2"}, "k2"),
    ({b"authorization": b"bearer k2"}, "k2"),
    ({b"authorization": b"Basic k2"}, None),
    ({b"authorization": b"Bearer"}, None),
    ({}, None),
])
def test_presented_key_reads_the_routes_headers(header: dict[bytes, bytes], expected: str | None) -> None:
    from xmargin.service.fastpath import presented_key

    assert presented_key({"headers": list(header.items())}) == expected
