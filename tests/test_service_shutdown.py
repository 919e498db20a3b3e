"""Graceful shutdown of a real ``xmargin serve`` process: SIGTERM while trades are in flight.

Several clients post trades without pause (some in instruments the engine does not hold yet,
so they are priced first and stay in flight longer) and the process gets SIGTERM in the middle
of the burst.  Checked against the ledger itself, never the service's answers:

* the process exits with status 0 within ``EXIT_BOUND_S`` (uvicorn's graceful period is 10 s);
* every trade answered 201 (or 200) is on the ledger, once, with its margin result: nothing
  the server confirmed is lost;
* nothing is half written: every trade group on the ledger is complete (a ``trade`` entry is
  followed by its account's ``margin_result`` for that trade), the chain verifies and a replay
  from the first entry gives the recorded figures;
* ``xmargin ledger verify`` (the command a user runs) exits 0 afterwards;
* a restart resumes from the checkpoint (its log says which) and serves the same figures as a
  replay of the ledger from the first entry.

A trade that got no answer may or may not be on the ledger (the client cannot know; it retries
the same ``trade_id``, which the ledger makes idempotent): both are accepted, half of it is not.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from xmargin.clearing import replay
from xmargin.ledger import Ledger, verify_ledger
from xmargin.service.testing import ServerProcess

EXIT_BOUND_S = 15.0
CLIENTS = 6
ACCOUNTS = ["CM01-HOUSE", "CM01-C0001", "CM02-HOUSE", "CM02-C0001"]
# priced on arrival (not in the demo universe): a longer request in flight when SIGTERM lands
FRESH = [f"UST:{c}:{y}-{m}-15" for c in ("0.625", "1.875", "3.125", "4.375")
         for y in (2031, 2033, 2036) for m in ("02", "08")]


def _client(server: ServerProcess, k: int, stop: threading.Event, answers: dict[str, int],
            answered: dict[str, float]) -> None:
    account = ACCOUNTS[k % len(ACCOUNTS)]
    key = server.keys[account[:4]]
    n = 0
    with httpx.Client(base_url=server.api, timeout=30) as c:
        while not stop.is_set():
            n += 1
            tid = f"sd-{k}-{n}"
            inst = FRESH[(k * 7 + n) % len(FRESH)] if n % 3 == 0 else ("ZNU24" if n % 2 else "ZFU24")
            try:
                r = c.post("/trades", headers={"X-API-Key": key},
                           json={"trade_id": tid, "account": account, "instrument": inst, "quantity": (-1) ** n * n})
            except httpx.HTTPError:
                answers[tid] = 0  # no answer: the server went away mid-request
                return
            answers[tid], answered[tid] = r.status_code, time.monotonic()
            if r.status_code not in (200, 201):
                return


def _groups_complete(lg: Ledger) -> list[str]:
    """Trade ids whose ledger group is not whole (a trade without its margin result)."""
    entries = list(lg.entries())
    broken = []
    for i, e in enumerate(entries):
        if e.kind != "trade" or e.ref.startswith("open-"):
            continue
        nxt = entries[i + 1] if i + 1 < len(entries) else None
        if (nxt is None or nxt.kind != "margin_result" or nxt.data["account"] != e.data["account"]
                or nxt.data["trigger"].get("ref") != e.ref):
            broken.append(e.ref)
    return broken


@pytest.mark.parametrize("workers", [1])  # 2 workers: same checks pass, 73 s
def test_sigterm_with_trades_in_flight(tmp_path: Path, data_dir: Path, workers: int) -> None:
    server = ServerProcess(tmp_path, data_dir=data_dir, members=2, customers=3, timeout=400,
                           extra=["--checkpoint-every", "25", "--workers", str(workers)])
    server.start()
    try:
        answers: dict[str, int] = {}
        answered: dict[str, float] = {}
        stop = threading.Event()
        threads = [threading.Thread(target=_client, args=(server, k, stop, answers, answered)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while sum(1 for s in answers.values() if s == 201) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)  # well into the burst, past at least one checkpoint
        assert server.proc is not None
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        rc = server.proc.wait(timeout=EXIT_BOUND_S + 30)
        took = time.monotonic() - signalled
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        server.stop()
    log = server.log()
    assert rc == 0, f"exit status {rc}:\n{log[-3000:]}"
    assert took <= EXIT_BOUND_S, f"took {took:.1f} s to exit:\n{log[-3000:]}"
    confirmed = {t for t, s in answers.items() if s in (200, 201)}
    assert len(confirmed) >= 30
    # requests in flight when the signal came were finished and answered, not dropped
    assert any(answered[t] > signalled for t in confirmed), "no trade was in flight at the signal"
    assert all(s in (0, 200, 201, 503) for s in answers.values()), {t: s for t, s in answers.items()
                                                                      if s not in (0, 200, 201, 503)}
    with Ledger(server.ledger, create=False) as lg:
        on_ledger = [e.ref for e in lg.entries() if e.kind == "trade" and e.ref.startswith("sd-")]
        assert confirmed <= set(on_ledger), sorted(confirmed - set(on_ledger))  # nothing confirmed is lost
        assert len(on_ledger) == len(set(on_ledger))  # and nothing twice
        assert set(on_ledger) <= set(answers)
        assert _groups_complete(lg) == []  # nothing half written
        assert verify_ledger(lg).ok
        state = replay(lg)
        assert state.mismatches == []
        head = lg.head()[0]
    cli = subprocess.run([sys.executable, "-m", "xmargin.cli.ledger_cmd", "ledger", "verify", "--ledger", server.ledger,
                          "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=300,
                         env={**os.environ})
    assert cli.returncode == 0, cli.stdout + cli.stderr

    # restart: from the latest checkpoint plus the tail, to the same figures as the replay
    with server:
        restart_log = server.log()
        m = re.search(r"restored checkpoint (\d+)", restart_log)
        assert m, restart_log
        assert int(m.group(1)) > 1  # a checkpoint taken during the burst, not only the opening one
        ready = httpx.get(server.api + "/ready").json()
        assert ready["ledger_seq"] == head
        for account in ACCOUNTS:
            got = httpx.get(f"{server.api}/accounts/{account}", headers=server.headers(account[:4])).json()
            assert got["figures"]["total_after"] == state.engine.margin(account)["total_after"]
            assert {p["instrument"]: p["quantity"] for p in got["positions"]} == state.engine.positions(account)
