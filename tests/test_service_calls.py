"""``POST /api/v1/reconcile-calls`` on a real ``xmargin serve`` process (demo book, SQLite).

The expected differences are computed here from the service's own ``/accounts`` figures:
``called - ours`` and its share of the call, flagged beyond the tolerance.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
