"""``xmargin ingest``, ``watch`` and ``ledger verify|replay|export|reconcile`` through Typer.

The commands are mounted on a fresh Typer app with :func:`xmargin.cli.ledger_cmd.register`
(what ``xmargin.cli.main`` does) and run with real files, a real SQLite ledger and, for the
round trip, a real PostgreSQL server when ``XMARGIN_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import typer
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from xmargin.clearing import AccountView, LedgerSession
from xmargin.cli.ledger_cmd import register
from xmargin.engine.trades import read_events
from xmargin.errors import InputError
from xmargin.ledger import Ledger, verify_ledger
from xmargin.ledger.store import normalize_url

AS_OF = date(2025, 10, 31)
TRADES = """trade_id,account,member,account_type,instrument,quantity,time,cross_margin,repo_start,repo_end,repo_rate,cash_amount
T1,ACC1,M1,house,91282CKN0,10000000,2025-10-31T14:00:00Z,true,,,,
T2,ACC1,M1,house,ZNZ25,-80,2025-10-31T14:00:01Z,true,,,,
T3,ACC2,M2,customer,912810QZ4,5000000,2025-10-31T14:00:02Z,false,,,,
T4,ACC2,M2,customer,ZBZ25,-30,2025-10-31T14:00:03Z,false,,,,
T5,ACC1,M1,house,91282CJN2,20000000,2025-10-31T14:00:04Z,true,2025-10-30,2025-11-06,4.2,20100000
T6,ACC1,M1,house,UST:0:2026-03-19,1000000,2025-10-31T14:00:05Z,true,,,,
"""
MORE = """{"trade_id": "T2", "time": "2025-10-31T15:00:00Z", "action": "cancel"}
{"trade_id": "C1", "account": "ACC1", "instrument": "CASH", "quantity": 500000, "time": "2025-10-31T15:00:01Z", "action": "collateral"}
{"trade_id": "T7", "account": "ACC3", "member": "M1", "account_type": "house", "instrument": "SR3Z25", "quantity": 25, "time": "2025-10-31T15:00:02Z"}
"""


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    register(a)
    return a


@pytest.fixture
def run(app, data_dir):
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, data: bool = True):
        extra = ["--data-dir", str(data_dir)] if data else []
        return runner.invoke(app, [*args, *extra], input=input)

    return invoke


def _files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "trades.csv", tmp_path / "more.jsonl"
    a.write_text(TRADES)
    b.write_text(MORE)
    return a, b


def test_ingest_verify_export_replay(run, ledger_url, tmp_path):
    trades, more = _files(tmp_path)
    r = run("ingest", str(trades), "--ledger", ledger_url, "--as-of", "2025-10-31", "--format", "json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["recorded"] == 6 and first["duplicates"] == []
    assert {c["kind"] for c in first["calls"]} == {"margin_call"}
    r = run("ingest", str(more), "--ledger", ledger_url, "--format", "json")
    assert r.exit_code == 0, r.output
    second = json.loads(r.stdout)
    assert second["recorded"] == 3 and set(second["accounts"]) == {"ACC1", "ACC3"}
    assert "ZNZ25" not in second["accounts"]["ACC1"]
    r = run("ledger", "verify", "--ledger", ledger_url, data=False)
    assert r.exit_code == 0 and r.stdout.startswith("ok:"), r.output
    out = tmp_path / "export.jsonl"
    r = run("ledger", "export", "--ledger", ledger_url, "-o", str(out), data=False)
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == list(range(1, len(lines) + 1))
    assert run("ledger", "verify", "--file", str(out), data=False).exit_code == 0
    r = run("ledger", "replay", "--ledger", ledger_url, "--format", "json")
    assert r.exit_code == 0, r.output
    rebuilt = json.loads(r.stdout)
    assert rebuilt["identical"] is True and rebuilt["mismatches"] == []
    for acc in ("ACC1", "ACC3"):
        live = second["accounts"][acc]
        for k, v in rebuilt["accounts"][acc].items():
            if k not in ("positions", "collateral"):
                assert v == live[k], (acc, k)
    assert rebuilt["accounts"]["ACC2"]["total_after"] == first["accounts"]["ACC2"]["total_after"]
    assert rebuilt["accounts"]["ACC1"]["collateral"]["collateral_value"] == 500000.0
    # the same file again: every row is already there
    r = run("ingest", str(trades), "--ledger", ledger_url)
    assert r.exit_code == 0 and "recorded 0 row(s)" in r.stdout and "6 already in the ledger" in r.stdout
    with Ledger(ledger_url, create=False) as lg:
        assert lg.count() == len(lines)


@pytest.mark.parametrize(
    ("row", "where"),
    [
        ("T9,ACC1,M1,house,91282CKN0,lots,2025-10-31T16:00:00Z,true,,,,", "row 3, field 'quantity'"),
        ("T9,ACC1,M1,house,NOTACUSIP9,5,2025-10-31T16:00:00Z,true,,,,", "row 3, field 'instrument'"),
        ("T9,ACC1,M1,house,ZNZ25,1.5,2025-10-31T16:00:00Z,true,,,,", "row 3, field 'quantity'"),
        ("T9,ACC1,M1,house,91282CKN0,5,yesterday,true,,,,", "row 3, field 'time'"),
        ("T9,ACC1,M1,house,91282CJN2,5,2025-10-31T16:00:00Z,true,2025-10-30,,4.2,100", "row 3, field 'repo_end'"),
        ("T9,ACC1,M9,house,91282CKN0,5,2025-10-31T16:00:00Z,true,,,,", "row 3, field 'member'"),
        ("T1,ACC1,M1,house,91282CKN0,5,2025-10-31T16:00:00Z,true,,,,", "row 3, field 'trade_id'"),
        ("T9,ACC1,M1,house,91282CKN0,5,2025-10-31T13:00:00Z,true,,,,", "row 3, field 'time'"),
    ],
)
def test_bad_row_is_named_and_nothing_is_recorded(run, tmp_path, row, where):
    ledger = f"sqlite:///{tmp_path / 'l.db'}"
    trades, _ = _files(tmp_path)
    assert run("ingest", str(trades), "--ledger", ledger, "--as-of", "2025-10-31").exit_code == 0
    with Ledger(ledger, create=False) as lg:
        head = lg.head()
    bad = tmp_path / "bad.csv"
    good = "T8,ACC1,M1,house,91282CKN0,1000000,2025-10-31T15:59:00Z,true,,,,"
    bad.write_text(TRADES.splitlines()[0] + "\n" + good + "\n" + row + "\n")
    r = run("ingest", str(bad), "--ledger", ledger)
    assert r.exit_code == 2, r.output
    assert f"{bad}, {where}" in r.output
    with Ledger(ledger, create=False) as lg:
        assert lg.head() == head  # not even the good row before it


def test_an_account_that_cannot_be_margined_reports_null(run, tmp_path):
    # no 2-year note deliverable into ZTZ30 can have been issued by 2025-10-31: no price, ever
    ledger = f"sqlite:///{tmp_path / 'l.db'}"
    cfg = tmp_path / "var.toml"
    cfg.write_text('[cme]\nstandalone_model = "var"\n')  # futures margined by VaR: no price, no margin
    f = tmp_path / "zf.csv"
    f.write_text("trade_id,account,member,account_type,instrument,quantity,time\n"
                 "Z1,ZACC,M1,house,ZTZ30,10,2025-10-31T14:00:00Z\n")
    r = run("ingest", str(f), "--ledger", ledger, "--as-of", "2025-10-31", "--config", str(cfg),
            "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["accounts"]["ZACC"]["total_after"] is None and out["accounts"]["ZACC"]["computable"] is False
    assert out["calls"] == []  # nothing to call on a figure that does not exist
    r = run("ledger", "replay", "--ledger", ledger, "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)["identical"] is True


def test_cancel_of_unknown_trade_is_refused(run, tmp_path):
    ledger = f"sqlite:///{tmp_path / 'l.db'}"
    f = tmp_path / "c.csv"
    f.write_text("trade_id,time,action\nX1,2025-10-31T14:00:00Z,cancel\n")
    r = run("ingest", str(f), "--ledger", ledger, "--as-of", "2025-10-31")
    assert r.exit_code == 2 and f"{f}, row 2, field 'trade_id'" in r.output and "no such trade" in r.output


def test_verify_names_the_tampered_entry(run, tmp_path):
    ledger = f"sqlite:///{tmp_path / 'l.db'}"
    trades, _ = _files(tmp_path)
    assert run("ingest", str(trades), "--ledger", ledger, "--as-of", "2025-10-31").exit_code == 0
    eng = create_engine(normalize_url(ledger))
    with eng.begin() as conn:
        conn.execute(text("DROP TRIGGER ledger_entries_no_update"))
        conn.execute(text("UPDATE ledger_entries SET payload = REPLACE(payload, '-30.0', '-3.0') "
                          "WHERE kind = 'trade' AND ref = 'T4'"))
        seq = conn.execute(text("SELECT seq FROM ledger_entries WHERE ref = 'T4'")).scalar()
    eng.dispose()
    r = run("ledger", "verify", "--ledger", ledger, data=False)
    assert r.exit_code == 1
    assert f"FAILED at entry {seq} (altered)" in r.output
    r = run("ledger", "verify", "--ledger", ledger, "--format", "json", data=False)
    assert json.loads(r.stdout)["seq"] == seq


def test_watch_streams_a_file_and_skips_bad_lines(run, tmp_path):
    ledger = f"sqlite:///{tmp_path / 'w.db'}"
    lines = TRADES.splitlines()
    f = tmp_path / "stream.csv"
    f.write_text("\n".join([lines[0], lines[1], "T9,ACC1,M1,house,91282CKN0,oops,2025-10-31T14:00:00Z,true,,,,",
                            lines[2], lines[3]]) + "\n")
    r = run("watch", str(f), "--ledger", ledger, "--as-of", "2025-10-31")
    assert r.exit_code == 2, r.output
    assert f"{f}, row 3, field 'quantity'" in r.output
    assert "ACC1" in r.stdout and "ACC2" in r.stdout and "Live margin as of 2025-10-31" in r.stdout
    with Ledger(ledger, create=False) as lg:
        assert [e.ref for e in lg.entries() if e.kind == "trade"] == ["T1", "T2", "T3"]
        assert verify_ledger(lg).ok


def test_watch_reads_standard_input_json_lines_dry_run(run, tmp_path):
    ledger = tmp_path / "never.db"
    lines = [json.dumps({"trade_id": "S1", "account": "X", "member": "M", "account_type": "house",
                         "instrument": "91282CKN0", "quantity": 2_000_000, "time": "2025-10-31T10:00:00Z"}),
             json.dumps({"trade_id": "S2", "account": "X", "member": "M", "account_type": "house",
                         "instrument": "ZNZ25", "quantity": -16, "time": "2025-10-31T10:00:01Z"})]
    r = run("watch", "-", "--ledger", f"sqlite:///{ledger}", "--dry-run", "--as-of", "2025-10-31",
            input="\n".join(lines) + "\n")
    assert r.exit_code == 0, r.output
    assert "X " in r.stdout and "yes" in r.stdout
    assert not ledger.exists()


def test_reconcile_command(run, tmp_path, data_dir):
    ledger = f"sqlite:///{tmp_path / 'r.db'}"
    trades, _ = _files(tmp_path)
    assert run("ingest", str(trades), "--ledger", ledger, "--as-of", "2025-10-31").exit_code == 0
    r = run("ledger", "reconcile", "--ledger", ledger, data=False)
    assert r.exit_code == 0 and "reconciled 0 account(s)" in r.stdout
    with Ledger(ledger) as lg:
        session = LedgerSession.open(lg, data_dir=data_dir)
        view = session.state.views["engine"]["ACC1"]  # recorded by ingest
        session.record_view("FICC", "ACC1", view)
        session.record_view("CME", "ACC1", AccountView(view.positions, 0.5))
    r = run("ledger", "reconcile", "--ledger", ledger, "--format", "json", data=False)
    assert r.exit_code == 1
    assert json.loads(r.stdout)["mismatches"] == [
        {"account": "ACC1", "field": "reduction_factor", "ficc": view.reduction_factor, "cme": 0.5}]


def test_missing_ledger_and_bad_url_are_errors(run, tmp_path):
    r = run("ledger", "verify", "--ledger", f"sqlite:///{tmp_path / 'none.db'}", data=False)
    assert r.exit_code == 2 and "no ledger at" in r.output
    r = run("ledger", "replay", "--ledger", "oracle://x@y/z")
    assert r.exit_code == 2 and "only sqlite" in r.output
    r = run("ingest", str(tmp_path / "absent.csv"), "--ledger", f"sqlite:///{tmp_path / 'l.db'}",
            "--as-of", "2025-10-31")
    assert r.exit_code == 2 and "absent.csv" in r.output and "cannot read trades file" in r.output


@pytest.mark.parametrize(
    ("text", "row", "field"),
    [
        ("trade_id,account\nT1,A\n", 1, "time"),
        ("trade_id,time,colour\nT1,2025-10-31T10:00:00Z,red\n", 1, "colour"),
        ("trade_id,time,action\nT1,2025-10-31T10:00:00Z,amend\n", 2, "action"),
        ('{"trade_id": "T1", "time": "2025-10-31T10:00:00Z", "action": "cancel"}\n[1, 2]\n', 2, None),
        ('{"trade_id": "T1", "time": "2025-10-31T10:00:00Z", "action": "cancel", "price": 1}\n', 1, "price"),
        ("trade_id,account,member,account_type,instrument,quantity,time\n"
         "T1,A,M,desk,91282CKN0,1,2025-10-31T10:00:00Z\n", 2, "account_type"),
        ("trade_id,account,member,account_type,instrument,quantity,time\n"
         "\nT1,A,M,house,91282CKN0,0,2025-10-31T10:00:00Z\n", 3, "quantity"),
        ("trade_id,account,member,account_type,instrument,quantity,time\n"
         "T1,A,M,house,ZNZ25,1,2025-10-31T10:00:00Z,extra\n", 2, None),
    ],
)
def test_trades_file_errors_name_row_and_field(tmp_path, data_dir, text, row, field):
    from xmargin.masterdata import load_master

    f = tmp_path / "t.csv"
    f.write_text(text)
    with pytest.raises(InputError) as exc:
        read_events(f, as_of=AS_OF, master=load_master(data_dir))
    assert (exc.value.source, exc.value.row, exc.value.field) == (str(f), row, field)
