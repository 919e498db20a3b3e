"""``xmargin serve --workers 2``: a real two-process server on loopback, on SQLite and PostgreSQL.

Trades posted concurrently land once each and in the order each account's client sent them,
whichever worker took them; the chain verifies and a replay from the first entry gives the
recorded figures; every worker's ``/stream`` sees every update its key may see (and no
other member's); access control holds on every worker; ``/metrics`` adds up both workers.
A worker killed with SIGKILL during a burst loses and duplicates nothing (clients retry the
same ``trade_id``), the other keeps serving, and the replacement catches up from the ledger.

References: the ledger itself (``Ledger.entries``, ``verify_ledger``, ``replay``), never the
service's own answers.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from xmargin.clearing import replay
from xmargin.ledger import Ledger, verify_ledger
from xmargin.service.testing import ServerProcess

ACCOUNTS = {"CM01": ["CM01-HOUSE", "CM01-XA"], "CM02": ["CM02-HOUSE", "CM02-XB"]}
TRADES_PER_ACCOUNT = 6


def _new_account(name: str, member: str) -> dict[str, object]:
    return {"member": member, "account_type": "house" if name.endswith("HOUSE") else "customer"}


def _worker_clients(server: ServerProcess, n: int = 2, tries: int = 60) -> dict[str, httpx.Client]:
    """One client (connection) per worker process, found by the ``X-Xmargin-Worker`` header."""
    found: dict[str, httpx.Client] = {}
    for _ in range(tries):
        c = httpx.Client(base_url=server.api, timeout=60)
        pid = c.get("/health").headers["x-xmargin-worker"]
        if pid in found:
            c.close()
        else:
            found[pid] = c
        if len(found) == n:
            return found
    raise AssertionError(f"only workers {sorted(found)} answered")


class Stream(threading.Thread):
    """An SSE reader collecting ``margin`` events."""

    def __init__(self, client: httpx.Client, key: str) -> None:
        super().__init__(daemon=True)
        self.client, self.key, self.events = client, key, []
        self.open = threading.Event()

    def run(self) -> None:
        try:
            with self.client.stream("GET", "/stream", headers={"X-API-Key": self.key}, timeout=None) as r:
                self.open.set()
                kind = None
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: ") and kind == "margin":
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass


def _post_account(base: str, key: str, member: str, account: str, start: int, out: dict, pids: set) -> None:
    """Post this account's trades one after another (retrying the same id on a broken connection)."""
    for n in range(start, start + TRADES_PER_ACCOUNT):
        tid = f"{account}-T{n}"
        body = {"trade_id": tid, "account": account, "instrument": "ZNU24" if n % 2 else "ZFU24",
                "quantity": n + 1, **_new_account(account, member)}
        for _attempt in range(40):
            try:
                with httpx.Client(base_url=base, timeout=60) as c:  # a new connection: any worker
                    r = c.post("/trades", json=body, headers={"X-API-Key": key})
                if r.status_code in (200, 201):
                    pids.add(r.headers["x-xmargin-worker"])
                    out.setdefault(account, []).append(tid)
                    break
                if r.status_code != 503:
                    raise AssertionError(f"{tid}: {r.status_code} {r.text}")
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        else:
            raise AssertionError(f"{tid} never recorded")


def _ledger_trades(url: str) -> dict[str, list[str]]:
    per: dict[str, list[str]] = defaultdict(list)
    with Ledger(url, create=False) as lg:
        for e in lg.entries():
            if e.kind == "trade" and not e.ref.startswith("open-"):
                per[e.data["account"]].append(e.ref)
    return per


def _burst(server: ServerProcess, start: int) -> tuple[dict[str, list[str]], set[str]]:
    sent: dict[str, list[str]] = {}
    pids: set[str] = set()
    with ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(_post_account, server.api, server.keys[m], m, a, start, sent, pids)
                for m, accs in ACCOUNTS.items() for a in accs]
        for j in jobs:
            j.result()
    return sent, pids


@pytest.fixture
def workers_server(tmp_path: Path, data_dir: Path, ledger_url: str):
    extra = ["--workers", "2"]
    if ledger_url.startswith("postgresql"):  # the fallback look every 2 minutes: within the 30 s the
        extra += ["--follow-poll", "120"]    # checks below allow, only NOTIFY brings other workers' trades
    server = ServerProcess(tmp_path, data_dir=data_dir, members=2, customers=3, ledger=ledger_url,
                           extra=extra, timeout=400)
    with server:
        yield server


def test_two_workers_one_ledger(workers_server: ServerProcess, ledger_url: str) -> None:
    server = workers_server
    clients = _worker_clients(server)
    assert len(clients) == 2
    # streams: a member key and the admin key on each worker
    streams = {(pid, who): Stream(c, server.keys[who]) for pid, c in clients.items() for who in ("CM01", "admin")}
    for s in streams.values():
        s.start()
        assert s.open.wait(30)
    # access control on every worker
    for c in clients.values():
        assert c.get("/accounts").status_code == 401
        assert c.get("/accounts/CM02-HOUSE", headers=server.headers("CM01")).status_code == 404
        assert c.get("/members/CM02", headers=server.headers("CM01")).status_code == 404
        assert c.get("/market", headers=server.headers("CM01")).status_code == 403
        r = c.post("/trades", headers=server.headers("CM01"),
                   json={"trade_id": "x-1", "account": "CM02-HOUSE", "instrument": "ZNU24", "quantity": 1})
        assert r.status_code == 404

    sent, pids = _burst(server, 0)
    assert len(pids) == 2, f"trades were all taken by {pids}"
    landed = _ledger_trades(ledger_url)
    for account in sent:
        assert landed[account] == [f"{account}-T{n}" for n in range(TRADES_PER_ACCOUNT)]  # once each, in order
    with Ledger(ledger_url, create=False) as lg:
        assert verify_ledger(lg).ok
        state = replay(lg)
        assert state.mismatches == []
        head = lg.head()[0]
    # every worker applied every trade: same figures as the replay, whichever worker answers
    for c in clients.values():
        deadline = time.monotonic() + 30
        while c.get("/ready").json()["ledger_seq"] < head and time.monotonic() < deadline:
            time.sleep(0.1)
        for account in sent:
            member = account[:4]
            got = c.get(f"/accounts/{account}", headers=server.headers(member)).json()
            want = state.engine.margin(account)
            assert got["figures"]["total_after"] == pytest.approx(want["total_after"], rel=0, abs=0)
            assert {p["instrument"]: p["quantity"] for p in got["positions"]} == state.engine.positions(account)
    # streams: CM01's key on each worker saw exactly CM01's trades; the admin key saw all
    deadline = time.monotonic() + 30
    all_ids = {t for tids in sent.values() for t in tids}
    cm01_ids = {t for a in ACCOUNTS["CM01"] for t in sent[a]}
    while time.monotonic() < deadline:
        if all({e["trade_id"] for e in s.events} >= (cm01_ids if who == "CM01" else all_ids)
               for (_, who), s in streams.items()):
            break
        time.sleep(0.2)
    for (pid, who), s in streams.items():
        seen = [e["trade_id"] for e in s.events]
        want = cm01_ids if who == "CM01" else all_ids
        assert set(seen) == want, (pid, who, sorted(want - set(seen)), sorted(set(seen) - want))
        assert len(seen) == len(set(seen))  # each update once per stream
        per_account = defaultdict(list)
        for e in s.events:
            per_account[e["account"]].append(e["trade_id"])
        for account, tids in per_account.items():
            assert tids == sent[account]  # in ledger order
    # one more trade, taken by one worker, reaches the other worker's stream (PostgreSQL: by NOTIFY)
    before = {pid: len(s.events) for (pid, who), s in streams.items() if who == "admin"}
    sent_at = time.monotonic()
    with httpx.Client(base_url=server.api, timeout=60) as a:  # whichever worker takes the connection
        r = a.post("/trades", headers=server.headers("CM01"), json={"trade_id": "CM01-HOUSE-last",
                   "account": "CM01-HOUSE", "instrument": "ZNU24", "quantity": 3})
    assert r.status_code == 201, r.text
    pid_b = next(pid for pid in before if pid != r.headers["x-xmargin-worker"])  # the other worker
    seen_b, before = streams[(pid_b, "admin")], before[pid_b]
    while time.monotonic() - sent_at < 30 and not any(e["trade_id"] == "CM01-HOUSE-last"
                                                      for e in seen_b.events[before:]):
        time.sleep(0.01)
    assert any(e["trade_id"] == "CM01-HOUSE-last" for e in seen_b.events[before:]), "never reached the other worker"
    all_ids.add("CM01-HOUSE-last")
    metrics = clients[next(iter(clients))].get(server.base_url + "/metrics").text
    total = sum(float(line.split()[-1]) for line in metrics.splitlines()
                if line.startswith('xmargin_trades_total{outcome="recorded"}'))
    assert total == len(all_ids)  # both workers' counts, added up
    for c in clients.values():
        c.close()


def test_kill_9_of_a_worker_during_a_burst(workers_server: ServerProcess, ledger_url: str) -> None:
    server = workers_server
    clients = _worker_clients(server)
    victim = int(next(iter(clients)))
    for c in clients.values():
        c.close()
    result: dict[str, object] = {}

    def burst() -> None:
        result["sent"], result["pids"] = _burst(server, 100)

    t = threading.Thread(target=burst)
    t.start()
    time.sleep(1.0)
    os.kill(victim, signal.SIGKILL)
    t.join(timeout=300)
    assert not t.is_alive()
    sent = result["sent"]
    landed = _ledger_trades(ledger_url)
    for account in sent:
        assert landed[account] == [f"{account}-T{n}" for n in range(100, 100 + TRADES_PER_ACCOUNT)]
    with Ledger(ledger_url, create=False) as lg:
        assert verify_ledger(lg).ok
        assert replay(lg).mismatches == []
        head = lg.head()[0]
    # the replacement worker (a new pid) answers and has caught up with the ledger
    deadline = time.monotonic() + 120
    seen: set[str] = set()
    while time.monotonic() < deadline:
        try:
            with httpx.Client(base_url=server.api, timeout=10) as c:
                r = c.get("/ready")
        except httpx.HTTPError:
            continue
        if r.status_code == 200 and r.json()["ledger_seq"] >= head:
            seen.add(r.headers["x-xmargin-worker"])
        if len(seen - {str(victim)}) >= 2:
            break
        time.sleep(0.1)
    assert str(victim) not in seen and len(seen) >= 2, seen


def test_pricing_bound_metrics_and_json_logs(tmp_path: Path, data_dir: Path) -> None:
    """One process, pricing bounded at 1 ms: a what-if in an instrument the engine does not hold
    is refused with a 422 naming the field (and counted), one in a held instrument is answered;
    ``/metrics`` is the Prometheus text format with per-route latency histograms; every log
    line is a JSON object."""
    server = ServerProcess(tmp_path, data_dir=data_dir, members=2, customers=3, timeout=400,
                           extra=["--pricing-timeout", "0.001", "--log-format", "json"])
    with server, httpx.Client(base_url=server.api, timeout=60) as c:
        h = server.headers("CM01")
        held = c.get("/accounts/CM01-HOUSE", headers=h).json()["positions"]
        inst = next(p["instrument"] for p in held if not p["instrument"].startswith("REPO"))
        ok = c.post("/what-if/trade", headers=h, json={"account": "CM01-HOUSE", "instrument": inst, "quantity": 1})
        assert ok.status_code == 200, ok.text
        held_ids = {p["instrument"] for p in held}
        universe = {p["instrument"] for a in c.get("/accounts", headers=server.headers("admin")).json()["accounts"]
                    for p in c.get(f"/accounts/{a['account']}", headers=server.headers("admin")).json()["positions"]}
        fresh = next(f"UST:{cpn}:2039-05-15" for cpn in ("1.125", "2.375", "3.625", "4.875")
                     if f"UST:{cpn}:2039-05-15" not in universe | held_ids)
        r = c.post("/what-if/trade", headers=h, json={"account": "CM01-HOUSE", "instrument": fresh,
                                                      "quantity": 1_000_000})
        assert r.status_code == 422, r.text
        (err,) = r.json()["detail"]
        assert err["type"] == "pricing_timeout" and err["loc"] == ["body", "instrument"]
        text = httpx.get(server.base_url + "/metrics").text
    assert 'xmargin_what_ifs_total{kind="trade"} 1.0' in text
    assert "xmargin_pricing_refused_total 1.0" in text
    buckets = [ln for ln in text.splitlines() if ln.startswith("xmargin_request_seconds_bucket")]
    assert any('route="/api/v1/what-if/trade"' in ln and 'status="422"' in ln for ln in buckets)
    assert "xmargin_ledger_seq" in text
    lines = [ln for ln in server.log().splitlines() if ln.strip()]
    assert lines
    for ln in lines:
        rec = json.loads(ln)  # every line is one JSON object
        assert {"time", "level", "logger", "pid"} <= rec.keys()
