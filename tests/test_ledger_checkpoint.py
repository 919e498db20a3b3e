"""Ledger checkpoints (:mod:`xmargin.clearing.checkpoint`): a restart from a checkpoint and the tail
reaches exactly the state of a replay from the first entry; a checkpoint that disagrees with
the log is never used and ``xmargin ledger verify`` names it.

The reference is always the full replay (``xmargin.clearing.replay``) of the same database,
compared figure by figure with ``==`` (bit for bit).
"""

from __future__ import annotations

import math
from datetime import date

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from xmargin.clearing import LedgerSession, load_market, replay
from xmargin.clearing.checkpoint import checkpoints, resume, take_checkpoint, verify_checkpoints
from xmargin.cli.main import app
from xmargin.engine.trades import parse_row
from xmargin.ledger import Ledger

AS_OF = date(2025, 10, 31)
BEFORE = [
    {"trade_id": "T1", "account": "XM1", "instrument": "91282CKN0", "quantity": "50000000", "time": "14:00:00"},
    {"trade_id": "T2", "account": "XM1", "instrument": "ZNZ25", "quantity": "-420", "time": "14:00:01"},
    {"trade_id": "T3", "account": "P1", "instrument": "912810QZ4", "quantity": "8000000", "time": "14:00:02",
     "cross_margin": "false", "account_type": "customer", "member": "M2"},
    {"trade_id": "T4", "account": "XM1", "instrument": "91282CJN2", "quantity": "20000000", "time": "14:00:03",
     "repo_start": "2025-10-30", "repo_end": "2025-11-06", "repo_rate": "4.2", "cash_amount": "20100000"},
    {"trade_id": "C1", "account": "XM1", "instrument": "CASH", "quantity": "100000", "time": "14:00:04",
     "action": "collateral"},
]
AFTER = [
    {"trade_id": "T5", "account": "P1", "instrument": "ZBZ25", "quantity": "-50", "time": "14:10:00",
     "cross_margin": "false", "account_type": "customer", "member": "M2"},
    {"trade_id": "T2", "time": "14:10:01", "action": "cancel"},
    {"trade_id": "T6", "account": "XM1", "instrument": "91282CKN0", "quantity": "-10000000", "time": "14:10:02"},
    {"trade_id": "T7", "account": "XM2", "instrument": "ZFZ25", "quantity": "30", "time": "14:10:03"},
]


@pytest.fixture(scope="module")
def market(data_dir):
    return load_market(AS_OF, data_dir=data_dir)


def _rows(market, specs, start=2):
    out = []
    for n, spec in enumerate(specs, start=start):
        row = {"member": "M1", "account_type": "house", **spec, "time": f"2025-10-31T{spec['time']}Z"}
        ev, inst = parse_row(row, as_of=AS_OF, master=market.master, src="test.csv", n=n)
        out.append((n, ev, inst))
    return out


def _figures(state):
    return {a: state.engine.margin(a) for a in state.engine.accounts}


def _same(a, b):
    assert a.keys() == b.keys()
    for acc in a:
        for k, v in a[acc].items():
            w = b[acc][k]
            assert v == w or (isinstance(v, float) and math.isnan(v) and math.isnan(w)), (acc, k, v, w)


def _build(lg, market):
    session = LedgerSession.open(lg)
    session.use_market(market)
    session.ingest(_rows(market, BEFORE))
    info = take_checkpoint(session)
    session.ingest(_rows(market, AFTER, start=20))
    return session, info


def test_resume_from_checkpoint_equals_full_replay(ledger_url, market):
    with Ledger(ledger_url) as lg:
        session, info = _build(lg, market)
        assert info.seq < lg.head()[0]
        said: list[str] = []
        resumed = resume(lg, progress=said.append)
        assert any(f"restored checkpoint {info.seq}" in s for s in said)
        full = replay(lg)
        assert full.mismatches == [] and resumed.mismatches == []
        _same(_figures(resumed), _figures(full))
        _same(_figures(resumed), _figures(session.state))  # the live session took the same checkpoint
        for a in full.engine.accounts:
            assert resumed.engine.positions(a) == full.engine.positions(a)
            assert resumed.collateral.value(a) == full.collateral.value(a)
        assert resumed.trades.keys() == full.trades.keys() and resumed.cancelled == full.cancelled == {"T2"}
        assert resumed.entries == full.entries == lg.head()[0]
        assert list(resumed.engine.context.universe.ids) == list(full.engine.context.universe.ids)
        # a session opened with resume carries on recording where the log ends
        again = LedgerSession.open(lg, resume=True)
        again.ingest(_rows(market, [{"trade_id": "T8", "account": "XM1", "instrument": "ZNZ25", "quantity": "5",
                                     "time": "14:20:00"}], start=40))
        assert replay(lg).mismatches == []
        reports = verify_checkpoints(lg, replay=True)
        assert [r.ok for r in reports] == [True], reports


@pytest.mark.parametrize("tamper", ["state", "hash"])
def test_tampered_checkpoint_is_not_used_and_verify_names_it(tmp_path, market, tamper, data_dir):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as lg:
        _build(lg, market)
        with lg.engine.begin() as conn:
            if tamper == "state":
                import zlib

                doc = zlib.decompress(conn.execute(checkpoints.select()).one().state)
                doc = doc.replace(b'"-10000000', b'"-10000001').replace(b"50000000", b"60000000")
                conn.execute(update(checkpoints).values(state=zlib.compress(doc)))
            else:
                conn.execute(update(checkpoints).values(entry_hash="0" * 64))
        said: list[str] = []
        resumed = resume(lg, progress=said.append)
        assert any("not used" in s for s in said) and not any("restored" in s for s in said)
        _same(_figures(resumed), _figures(replay(lg)))
        (report,) = verify_checkpoints(lg)
        assert not report.ok and ("altered" in report.message if tamper == "state" else "hashes to" in report.message)
    out = CliRunner().invoke(app, ["ledger", "verify", "--ledger", url])
    assert out.exit_code == 1, out.output
    assert "FAILED" in out.output and "checkpoint" in out.output


def test_cli_checkpoint_and_verify(tmp_path, market, data_dir):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with Ledger(url) as lg:
        session = LedgerSession.open(lg)
        session.use_market(market)
        session.ingest(_rows(market, BEFORE))
    runner = CliRunner()
    made = runner.invoke(app, ["ledger", "engine-checkpoint", "--ledger", url, "--data-dir", str(data_dir)])
    assert made.exit_code == 0, made.output
    assert "checkpoint at entry" in made.output
    ok = runner.invoke(app, ["ledger", "verify", "--ledger", url, "--replay-checkpoints", "--data-dir", str(data_dir)])
    assert ok.exit_code == 0, ok.output
    assert "agrees with the log and with a replay" in ok.output
    rep = runner.invoke(app, ["ledger", "replay", "--ledger", url, "--data-dir", str(data_dir)])
    assert rep.exit_code == 0, rep.output  # the checkpoint entry replays with identical figures
