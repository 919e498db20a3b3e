"""Crash safety: ``xmargin ingest`` killed with SIGKILL in the middle of a batch.

The ingest runs as a real subprocess (``python -m xmargin.cli.ledger_cmd``).  Two ways to kill
it: at a fixed point (the ledger's test hook ``XMARGIN_LEDGER_FAILPOINT=before_commit:N``
stops the N-th write transaction after its rows are inserted, just before COMMIT, and waits
to be killed) and at an arbitrary moment while it streams one-row transactions.  After the
kill the log must verify, hold whole groups only (each trade with its margin result), and a
restarted ingest of the same file must end in exactly the state of an uninterrupted run,
which is built here in-process into another ledger.  A small scenario look-back keeps the
subprocesses quick; the models are the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from xmargin.clearing import LedgerSession, load_market, replay
from xmargin.engine.trades import read_events
from xmargin.ledger import Ledger, verify_ledger

AS_OF = date(2025, 10, 31)
CONFIG = """[ficc.scenarios]
lookback_years = 3
[cme]
span_lookback_years = 3
[cme.var_scenarios]
lookback_years = 3
"""
CASH = ["91282CKN0", "912810QZ4", "91282CJN2", "9128283W8", "912828YS3"]
FUTURES = ["ZNZ25", "ZBZ25", "ZTZ25", "UBZ25"]


def _trades(path: Path, n: int = 60) -> Path:
    lines = ["trade_id,account,member,account_type,instrument,quantity,time,cross_margin"]
    for i in range(n):
        acc = ("XA", "XB", "PC")[i % 3]
        xm = "false" if acc == "PC" else "true"
        if i % 2:
            inst, qty = FUTURES[i % len(FUTURES)], (-1) ** (i // 2) * (5 + i % 7)
        else:
            inst, qty = CASH[i % len(CASH)], (-1) ** (i // 3) * (1 + i % 5) * 1_000_000
        lines.append(f"T{i:03d},{acc},M{acc[-1]},house,{inst},{qty},2025-10-31T14:{i // 60:02d}:{i % 60:02d}Z,{xm}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _command(tmp_path: Path, url: str, trades: Path, batch: int, data_dir: Path) -> list[str]:
    config = tmp_path / "model.toml"
    config.write_text(CONFIG)
    return [sys.executable, "-m", "xmargin.cli.ledger_cmd", "ingest", str(trades), "--ledger", url,
            "--as-of", AS_OF.isoformat(), "--data-dir", str(data_dir), "--config", str(config),
            "--batch-size", str(batch)]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XMARGIN_LEDGER_FAILPOINT"}
    env.update(extra)
    return env


def _check_whole_groups(url: str) -> list[str]:
    """The trade ids recorded; asserts the chain and that no group was cut."""
    with Ledger(url, create=False) as lg:
        report = verify_ledger(lg)
        assert report.ok, report.message
        entries = list(lg.entries())
    trades = []
    for i, e in enumerate(entries):
        if e.kind == "trade":
            trades.append(e.ref)
            nxt = entries[i + 1] if i + 1 < len(entries) else None
            assert nxt is not None and nxt.kind == "margin_result", f"trade {e.ref} without its margin result"
            assert nxt.data["trigger"]["ref"] == e.ref
        if e.kind == "margin_result" and e.data["trigger"]["kind"] == "trade":
            assert entries[i - 1].ref == e.data["trigger"]["ref"]
    return trades


def _reference(tmp_path: Path, trades: Path, data_dir: Path, batch: int) -> dict:
    """The state of an uninterrupted ingest of the same file, built in this process."""
    config = tmp_path / "model.toml"
    config.write_text(CONFIG)
    with Ledger(f"sqlite:///{tmp_path / 'reference.db'}") as lg:
        session = LedgerSession.open(lg)
        session.use_market(load_market(AS_OF, data_dir=data_dir, config=config))
        rows = read_events(trades, as_of=AS_OF, master=session.market.master)
        session.ingest(rows, batch_size=batch)
        return _state(session.state)


def _state(state) -> dict:
    eng = state.engine
    return {a: (eng.positions(a), eng.margin(a)) for a in eng.accounts}


def _finish_and_compare(tmp_path, url, trades, data_dir, batch, n: int = 60) -> None:
    done = subprocess.run(_command(tmp_path, url, trades, batch, data_dir), env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    recorded = _check_whole_groups(url)
    assert recorded == [f"T{i:03d}" for i in range(n)]
    with Ledger(url, create=False) as lg:
        state = replay(lg, data_dir=data_dir)
    assert state.mismatches == []
    assert _state(state) == _reference(tmp_path, trades, data_dir, batch)


def test_kill_inside_a_batch_transaction_leaves_whole_batches(ledger_url, tmp_path, data_dir):
    trades = _trades(tmp_path / "trades.csv")
    # write 1 is the market snapshot, write 2 rows 1-10, write 3 (rows 11-20) is stopped before COMMIT
    proc = subprocess.Popen(_command(tmp_path, ledger_url, trades, 10, data_dir),
                            env=_env(XMARGIN_LEDGER_FAILPOINT="before_commit:3"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if "FAILPOINT before_commit reached" in line:
                break
        else:
            pytest.fail("the ingest ended without reaching the failpoint:\n" + "".join(seen))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _check_whole_groups(ledger_url) == [f"T{i:03d}" for i in range(10)]
    _finish_and_compare(tmp_path, ledger_url, trades, data_dir, 10)


def test_kill_at_an_arbitrary_moment_then_restart(ledger_url, tmp_path, data_dir):
    trades = _trades(tmp_path / "trades.csv", n=200)
    proc = subprocess.Popen(_command(tmp_path, ledger_url, trades, 1, data_dir), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with Ledger(ledger_url, create=False) as lg:
                    count = lg.count()
            except Exception:  # noqa: BLE001 - not created yet
                count = 0
            if count >= 40:  # well inside the stream of one-row transactions
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the ingest finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    recorded = _check_whole_groups(ledger_url)
    assert 10 <= len(recorded) < 200
    assert recorded == [f"T{i:03d}" for i in range(len(recorded))]
    _finish_and_compare(tmp_path, ledger_url, trades, data_dir, 1, n=200)
