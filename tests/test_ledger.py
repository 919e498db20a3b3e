"""The ledger on a real SQLite file and a real PostgreSQL server.

Every store test runs on both backends.  PostgreSQL comes from ``XMARGIN_TEST_POSTGRES_URL``
(each test gets a fresh database); without it those variants skip, or fail when
``XMARGIN_REQUIRE_POSTGRES=1``.  Hashes are recomputed here with :mod:`hashlib`; tampering is
done with plain SQL after dropping the append-only triggers, as someone with database rights
could.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from xmargin.clearing import (
    AccountView,
    HaircutSchedule,
    LedgerSession,
    Mismatch,
    engine_view,
    load_market,
    reconcile,
    replay,
    views_from_ledger,
)
from xmargin.clearing.replay import market_data, params_from_dict
from xmargin.engine.trades import parse_row
from xmargin.errors import InputError
from xmargin.ledger import (
    ConflictError,
    Event,
    Ledger,
    LedgerError,
    OutOfOrderError,
    UnknownTradeError,
    verify_export,
    verify_ledger,
)
from xmargin.ledger.hashing import GENESIS, canonical_json
from xmargin.ledger.store import normalize_url
from xmargin.margin.params import MarginParams
from xmargin.reference.lookup import parse_instrument

AS_OF = date(2025, 10, 31)


@pytest.fixture(scope="module")
def market(data_dir):
    return load_market(AS_OF, data_dir=data_dir)


def _t(minute: int, second: int = 0) -> str:
    return f"2025-10-31T14:{minute:02d}:{second:02d}.000000Z"


def trade_event(tid: str, qty: float = 1_000_000.0, minute: int = 0, source: str = "FICC") -> Event:
    return Event("trade", source, {"trade_id": tid, "account": "A", "quantity": qty, "note": "café"},
                 ref=tid, time=_t(minute))


def _raw(url: str, *statements: str | tuple[str, dict]) -> None:
    """Run SQL as a privileged user would: triggers dropped first."""
    eng = create_engine(normalize_url(url))
    drops = (["DROP TRIGGER IF EXISTS ledger_entries_no_update", "DROP TRIGGER IF EXISTS ledger_entries_no_delete"]
             if eng.dialect.name == "sqlite" else
             ["DROP TRIGGER IF EXISTS ledger_entries_no_change ON ledger_entries"])
    with eng.begin() as conn:
        for s in [*drops, *statements]:
            sql, params = (s, {}) if isinstance(s, str) else s
            conn.execute(text(sql), params)
    eng.dispose()


# ----------------------------------------------------------------------------- hashing


def test_canonical_json_rules():
    assert canonical_json({"b": 0.1, "a": [1, 2.5, True, None], "c": "é"}) == '{"a":[1,"2.5",true,null],"b":"0.1","c":"é"}'
    assert canonical_json({"x": 1e6, "y": 10}) == '{"x":"1000000.0","y":10}'
    assert float(json.loads(canonical_json({"x": 0.1 + 0.2}))["x"]) == 0.1 + 0.2  # exact round trip
    with pytest.raises(ValueError, match="nan"):
        canonical_json({"x": math.nan})
    with pytest.raises(TypeError):
        canonical_json({1: "a"})


def test_params_round_trip_through_the_ledger_encoding(tmp_path):
    from xmargin.margin.params import load_params

    cfg = tmp_path / "m.toml"
    cfg.write_text('[ficc]\nconfidence = 0.995\nfloor_table = [[2, 0.002], ["inf", 0.01]]\n'
                   '[ficc.scenarios]\nlookback_years = 3\nstress = "2020-03"\n'
                   '[cme]\nstandalone_model = "var"\nscan_range_override = {ZN = 1500.0}\n[cross]\nreduction_cap = 0.7\n')
    for p in (MarginParams(), load_params(cfg)):
        decoded = params_from_dict(json.loads(canonical_json(p.to_dict())))
        assert decoded == p


# ----------------------------------------------------------------------------- store


def test_chain_is_sha256_of_previous_hash_and_canonical_payload(ledger_url):
    with Ledger(ledger_url) as lg:
        lg.append([[trade_event("T1", 0.1)], [trade_event("T2", 2.0, 1)],
                   [Event("margin_result", "engine", {"account": "A", "total": 12.5})]])
        rows = list(lg.entries())
        assert [e.seq for e in rows] == [1, 2, 3]
        prev = "0" * 64
        for e in rows:
            assert e.prev_hash == prev
            assert e.hash == hashlib.sha256((prev + e.payload).encode("utf-8")).hexdigest()
            doc = json.loads(e.payload)
            assert e.payload == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            assert (doc["seq"], doc["kind"], doc["source"], doc["ref"]) == (e.seq, e.kind, e.source, e.ref)
            prev = e.hash
        assert json.loads(rows[0].payload)["data"] == {"trade_id": "T1", "account": "A", "quantity": "0.1",
                                                       "note": "café"}
        assert rows[2].time is None and rows[0].time == _t(0)
        assert lg.head() == (3, prev)
        assert verify_ledger(lg).ok
        assert [e.timestamp for e in rows] == sorted(e.timestamp for e in rows)


def test_head_seq_sees_what_another_connection_commits(ledger_url):
    """The follower's cheap poll (``head_seq``, one kept connection) reads the head row as
    ``head()`` does, and never a stale snapshot: each look sees the other writer's commit."""
    with Ledger(ledger_url) as writer, Ledger(ledger_url) as poller:
        assert poller.head_seq() == writer.head()[0] == 0
        for minute, n in ((0, 1), (1, 3), (5, 1)):
            writer.append([[trade_event(f"T{minute}-{i}", minute=minute + i)] for i in range(n)])
            assert poller.head_seq() == writer.head()[0] == poller.head()[0]
        assert poller.head_seq() == 5
        poller._poll.close()  # the kept connection fails: a clear error, then a fresh one
        with pytest.raises(LedgerError, match="cannot read the head"):
            poller.head_seq()
        assert poller.head_seq() == 5


def test_trade_id_is_recorded_once_and_a_different_trade_under_it_is_refused(ledger_url):
    with Ledger(ledger_url) as lg:
        first = lg.append([[trade_event("T1"), Event("margin_result", "engine", {"account": "A"})]])
        again = lg.append([[trade_event("T1"), Event("margin_result", "engine", {"account": "A"})]])
        assert len(first.recorded) == 2 and again.recorded == []
        assert [e.seq for e in again.duplicates] == [1]
        head = lg.head()
        with pytest.raises(ConflictError, match="different content"):
            lg.append([[trade_event("T2", minute=1)], [trade_event("T1", qty=5.0, minute=2)]])
        assert lg.head() == head and lg.count() == 2  # T2 was in the refused batch: not written
        # the database itself refuses a second (kind, ref), whatever the code above it does
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            _raw(ledger_url, "INSERT INTO ledger_entries (seq, recorded_at, source, kind, ref, payload, "
                             "prev_hash, hash) VALUES (99, 'x', 'FICC', 'trade', 'T1', '{}', 'p', 'h')")


def test_cancel_needs_a_recorded_trade_and_is_recorded_once(ledger_url):
    with Ledger(ledger_url) as lg:
        lg.append([[trade_event("T1")]])
        with pytest.raises(UnknownTradeError, match="T9"):
            lg.append([[trade_event("T2", minute=1)], [Event("cancel", "FICC", {"trade_id": "T9"}, "T9", _t(2))]])
        assert lg.count() == 1
        r = lg.append([[trade_event("T3", minute=3)], [Event("cancel", "FICC", {"trade_id": "T3"}, "T3", _t(4))]])
        assert len(r.recorded) == 2  # a cancel of a trade earlier in the same batch
        r = lg.append([[Event("cancel", "FICC", {"trade_id": "T3", "why": "again"}, "T3", _t(5))]])
        assert r.recorded == [] and len(r.duplicates) == 1


def test_out_of_order_events_are_refused_whole_batch(ledger_url):
    with Ledger(ledger_url) as lg:
        lg.append([[trade_event("T1", minute=10)]])
        with pytest.raises(OutOfOrderError, match="earlier than the latest FICC event"):
            lg.append([[trade_event("T2", minute=12)], [trade_event("T3", minute=11)]])
        assert lg.count() == 1
        with pytest.raises(OutOfOrderError):
            lg.append([[trade_event("T4", minute=9)]])
        lg.append([[trade_event("C1", minute=1, source="CME")]])  # each source has its own clock
        assert lg.count() == 2
        with pytest.raises(LedgerError, match="canonical UTC"):
            lg.append([[Event("trade", "FICC", {}, "T5", "2025-10-31 15:00")]])
        with pytest.raises(LedgerError, match="unknown source"):
            lg.append([[Event("trade", "LCH", {}, "T6")]])


def test_entries_are_append_only(ledger_url):
    with Ledger(ledger_url) as lg:
        lg.append([[trade_event("T1")], [trade_event("T2", minute=1)]])
        eng = lg.engine
        with pytest.raises(Exception, match="append-only"), eng.begin() as conn:
            conn.execute(text("UPDATE ledger_entries SET payload = '{}' WHERE seq = 1"))
        with pytest.raises(Exception, match="append-only"), eng.begin() as conn:
            conn.execute(text("DELETE FROM ledger_entries WHERE seq = 2"))
        assert verify_ledger(lg).ok


def _eight(url: str) -> None:
    with Ledger(url) as lg:
        lg.append([[trade_event(f"T{i}", qty=1e6 * i, minute=i)] for i in range(1, 9)])


def _swap(a: int, b: int) -> list[str]:
    """Entries ``a`` and ``b`` trade places (each keeps its own content and hashes)."""
    return [f"UPDATE ledger_entries SET seq = -1 WHERE seq = {a}",
            f"UPDATE ledger_entries SET seq = {a} WHERE seq = {b}",
            f"UPDATE ledger_entries SET seq = {b} WHERE seq = -1"]


TAMPERS = {
    "payload": (["UPDATE ledger_entries SET payload = REPLACE(payload, '4000000.0', '9000000.0') WHERE seq = 4"],
                "altered", 4),
    "column": (["UPDATE ledger_entries SET source = 'CME' WHERE seq = 2"], "altered", 2),
    "delete": (["DELETE FROM ledger_entries WHERE seq = 5"], "missing", 5),
    "swap": (_swap(3, 4), "reordered", 3),
    "truncate": (["DELETE FROM ledger_entries WHERE seq >= 7"], "truncated", 7),
}


@pytest.mark.parametrize("tamper", [*TAMPERS, "rehash"])
def test_verify_names_the_first_bad_entry(ledger_url, tamper):
    _eight(ledger_url)
    with Ledger(ledger_url) as lg:
        assert verify_ledger(lg).ok
        if tamper == "rehash":  # alter entry 6 and recompute its own hash: entry 7 exposes it
            e6 = next(e for e in lg.entries() if e.seq == 6)
            forged = e6.payload.replace("6000000.0", "1.0")
            digest = hashlib.sha256((e6.prev_hash + forged).encode()).hexdigest()
            statements, problem, seq = ([("UPDATE ledger_entries SET payload = :p, hash = :h WHERE seq = 6",
                                          {"p": forged, "h": digest})], "altered", 6)
        else:
            statements, problem, seq = TAMPERS[tamper]
        _raw(ledger_url, *statements)
        report = verify_ledger(lg)
    assert not report.ok
    assert (report.problem, report.seq) == (problem, seq), report.message
    assert str(seq) in report.message


def test_concurrent_writers_share_one_chain(ledger_url):
    Ledger(ledger_url).close()  # create the schema once
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            with Ledger(ledger_url) as lg:
                for i in range(12):
                    lg.append([[Event("margin_result", "engine", {"writer": name, "i": i})]])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Ledger(ledger_url) as lg:
        assert [e.seq for e in lg.entries()] == list(range(1, 37))
        assert verify_ledger(lg).ok


def test_export_lines_verify_independently(ledger_url, tmp_path):
    _eight(ledger_url)
    out = tmp_path / "export.jsonl"
    with Ledger(ledger_url) as lg:
        out.write_text("".join(json.dumps(e.export()) + "\n" for e in lg.entries()))
    assert verify_export(out).ok
    lines = out.read_text().splitlines()
    doc = json.loads(lines[2])
    doc["payload"] = doc["payload"].replace("3000000.0", "3000001.0")
    lines[2] = json.dumps(doc)
    out.write_text("\n".join(lines) + "\n")
    report = verify_export(out)
    assert (report.ok, report.seq) == (False, 3)


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(LedgerError, match="no ledger at"):
        Ledger(f"sqlite:///{tmp_path / 'none.db'}", create=False)
    assert not (tmp_path / "none.db").exists()
    with pytest.raises(LedgerError, match="only sqlite"):
        Ledger("mysql://u@h/db")
    with pytest.raises(LedgerError, match="cannot open ledger"):
        Ledger("postgresql://nobody@127.0.0.1:1/none")
    plain = tmp_path / "plain.db"
    with Ledger(str(plain)) as lg, lg.engine.connect() as conn:  # a bare path is a SQLite file, in WAL mode
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert plain.is_file()


# ----------------------------------------------------------------------------- session


def _rows(market, specs: list[dict], start: int = 2) -> list:
    out = []
    for n, spec in enumerate(specs, start=start):
        row = {"member": "M1", "account_type": "house", **spec}
        ev, inst = parse_row(row, as_of=AS_OF, master=market.master, src="test.csv", n=n)
        out.append((n, ev, inst))
    return out


TRADES = [
    {"trade_id": "T1", "account": "XM1", "instrument": "91282CKN0", "quantity": "50000000", "time": "2025-10-31T14:00:00Z"},
    {"trade_id": "T2", "account": "XM1", "instrument": "ZNZ25", "quantity": "-420", "time": "2025-10-31T14:00:01Z"},
    {"trade_id": "T3", "account": "P1", "instrument": "912810QZ4", "quantity": "8000000", "time": "2025-10-31T14:00:02Z",
     "cross_margin": "false", "account_type": "customer", "member": "M2"},
    {"trade_id": "T4", "account": "XM1", "instrument": "91282CJN2", "quantity": "20000000", "time": "2025-10-31T14:00:03Z",
     "repo_start": "2025-10-30", "repo_end": "2025-11-06", "repo_rate": "4.2", "cash_amount": "20100000"},
    {"trade_id": "T5", "account": "P1", "instrument": "ZBZ25", "quantity": "-50", "time": "2025-10-31T14:00:04Z",
     "cross_margin": "false", "account_type": "customer", "member": "M2"},
]


def test_session_records_results_and_calls_and_replays_identically(ledger_url, market):
    with Ledger(ledger_url) as lg:
        session = LedgerSession.open(lg)
        assert session.use_market(market)
        assert not session.use_market(market)  # same market: nothing recorded
        report = session.ingest(_rows(market, TRADES), batch_size=2)
        assert report.recorded == 5
        entries = list(lg.entries())
        kinds = [e.kind for e in entries]
        assert kinds[0] == "market_snapshot"
        # each trade is followed by the margin result of its account (with model and parameters)
        for i, e in enumerate(entries):
            if e.kind == "trade":
                res = entries[i + 1]
                assert res.kind == "margin_result" and res.data["trigger"] == {"kind": "trade", "ref": e.ref}
                assert res.data["model"]["params"] == json.loads(canonical_json(market.params.to_dict()))
        # no collateral yet: each call is for the whole requirement at that moment
        calls = [e.data for e in entries if e.kind == "margin_call"]
        assert calls and all(float(c["amount_due"]) == float(c["requirement"]) for c in calls)
        xm = session.engine.margin("XM1")
        assert session.status("XM1")["call"] == xm["total_after"]
        assert xm["applied_reduction_factor"] > 0

        # collateral: cash and a Treasury at its haircut, the call met, an excess recorded
        col = _rows(market, [
            {"trade_id": "C1", "account": "XM1", "instrument": "CASH", "quantity": "100000",
             "time": "2025-10-31T15:00:00Z", "action": "collateral"},
            {"trade_id": "C2", "account": "XM1", "instrument": "912810QZ4", "quantity": "5000000",
             "time": "2025-10-31T15:00:01Z", "action": "collateral"},
        ], start=10)
        report = session.ingest(col)
        bond = parse_instrument("912810QZ4", as_of=AS_OF, master=market.master)
        j = session.engine.context.universe.index(bond)
        price = session.engine.context.attributes.market_value[j]  # P1 holds it: priced by the context
        years = (bond.maturity - AS_OF).days / 365.25
        assert 10 < years <= 20
        expected = 100_000 + 5_000_000 * price * (1 - 0.05)
        assert session.collateral.value("XM1") == pytest.approx(expected, rel=1e-12)
        excess = [c for c in report.calls if c["kind"] == "excess"]
        assert len(excess) == 1 and excess[0]["call_met"] is True
        assert excess[0]["excess"] == pytest.approx(expected - xm["total_after"], rel=1e-9)

        # a withdrawal of more than is held: refused naming row and field, nothing written
        count = lg.count()
        bad = _rows(market, [{"trade_id": "C3", "account": "XM1", "instrument": "CASH", "quantity": "-100001",
                              "time": "2025-10-31T15:00:02Z", "action": "collateral"}], start=20)
        with pytest.raises(InputError, match=r"test.csv, row 20, field 'quantity'"):
            session.ingest(bad, src="test.csv")
        assert lg.count() == count

        # a cancel, and then the whole log replayed by a fresh reader
        session.ingest(_rows(market, [{"trade_id": "T2", "time": "2025-10-31T14:30:00Z", "action": "cancel"}], 30))
        live = {a: session.engine.margin(a) for a in session.engine.accounts}
        state = replay(lg)
        assert state.mismatches == []
        assert {a: state.engine.margin(a) for a in state.engine.accounts} == live
        assert state.engine.positions("XM1") == session.engine.positions("XM1")
        assert "ZNZ25" not in state.engine.positions("XM1")
        assert state.collateral.holdings == session.collateral.holdings
        assert {a: vars(s) for a, s in state.collateral.status.items()} == {
            a: vars(s) for a, s in session.collateral.status.items() if s.kind is not None}
        assert verify_ledger(lg).ok


def test_session_rejects_bad_rows_before_writing_anything(ledger_url, market):
    with Ledger(ledger_url) as lg:
        session = LedgerSession.open(lg)
        session.use_market(market)
        session.ingest(_rows(market, TRADES[:2]))
        count = lg.count()
        cases = [
            ({"trade_id": "T9", "time": "2025-10-31T14:40:00Z", "action": "cancel"}, "trade_id", "no such trade"),
            ({**TRADES[0], "quantity": "1"}, "trade_id", "different content"),
            ({**TRADES[0], "trade_id": "T8", "time": "2025-10-31T13:00:00Z"}, "time", "out of order"),
            ({**TRADES[0], "trade_id": "T7", "member": "OTHER", "time": "2025-10-31T14:50:00Z"}, "member",
             "disagrees"),
        ]
        for spec, fld, msg in cases:
            rows = _rows(market, [TRADES[2], spec], start=2)  # a good row first: it must not be written either
            with pytest.raises(InputError, match=msg) as exc:
                session.ingest(rows, src="test.csv")
            assert (exc.value.source, exc.value.row, exc.value.field) == ("test.csv", 3, fld)
            assert lg.count() == count
        again = session.ingest(_rows(market, TRADES[:2]))
        assert again.recorded == 0 and [i for _, i in again.duplicates] == ["T1", "T2"]
        assert lg.count() == count


def test_intraday_market_is_recorded_and_replayed(ledger_url, market):
    from xmargin.clearing import Market
    from xmargin.engine import intraday_snapshot

    with Ledger(ledger_url) as lg:
        session = LedgerSession.open(lg)
        session.use_market(market)
        session.ingest(_rows(market, TRADES))
        before = session.engine.margin("P1")
        shifted = intraday_snapshot(market.snapshot, market.snapshot.par_yields + 0.0010)
        assert session.use_market(Market(shifted, market.master, market.params, market.eligibility,
                                         HaircutSchedule()), label="intraday")
        after = session.engine.margin("P1")
        assert after["ficc_floor"] != before["ficc_floor"]
        last = list(lg.entries())
        snap = [e for e in last if e.kind == "market_snapshot"][-1]
        assert snap.data["label"] == "intraday"
        assert [float(v) for v in snap.data["par_yields"]] == list(shifted.par_yields)
        results = [e for e in last if e.kind == "margin_result" and e.seq > snap.seq]
        assert {e.data["account"] for e in results} == {"XM1", "P1"}
        assert all(e.data["model"]["market_seq"] == snap.seq for e in results)
        state = replay(lg)
        assert state.mismatches == []
        assert state.engine.margin("P1") == after


# ----------------------------------------------------------------------------- reconcile


def test_reconcile_reports_each_account_and_field():
    ficc = {"A": AccountView({"91282CKN0": 5e6, "ZNZ25": -40.0}, 0.62),
            "B": AccountView({"91282CKN0": 1e6}, 0.0),
            "C": AccountView({}, 0.0)}
    cme = {"A": AccountView({"91282CKN0": 5e6, "ZNZ25": -41.0, "ZBZ25": 3.0}, 0.60),
           "B": AccountView({"91282CKN0": 1e6}, 0.0),
           "D": AccountView({}, None)}
    assert reconcile(ficc, cme) == [
        Mismatch("A", "position:ZBZ25", 0.0, 3.0),
        Mismatch("A", "position:ZNZ25", -40.0, -41.0),
        Mismatch("A", "reduction_factor", 0.62, 0.60),
        Mismatch("C", "account", "present", "missing"),
        Mismatch("D", "account", "missing", "present"),
    ]
    assert reconcile(ficc, ficc) == []


def test_views_recorded_in_the_ledger_reconcile(ledger_url, market):
    with Ledger(ledger_url) as lg:
        session = LedgerSession.open(lg)
        session.use_market(market)
        session.ingest(_rows(market, TRADES))
        mine = engine_view(session.engine, "XM1")
        assert set(mine.positions) == {"91282CKN0", "ZNZ25", next(i for i in mine.positions if i.startswith("REPO"))}
        session.record_view("FICC", "XM1", mine)
        wrong = AccountView({**mine.positions, "ZNZ25": -419.0}, mine.reduction_factor)
        session.record_view("CME", "XM1", wrong)
        session.record_positions(["XM1", "P1"])  # the engine's own view (P1 is not cross-margined)
        views = views_from_ledger(lg)
        assert set(views["engine"]) == {"XM1"}
        assert views["engine"]["XM1"] == mine
        assert reconcile(views["FICC"], views["CME"]) == [Mismatch("XM1", "position:ZNZ25", -420.0, -419.0)]
        assert reconcile(views["FICC"], views["engine"]) == []


def test_market_data_records_the_model(market):
    data = market_data(market.snapshot, market.params, market.eligibility, HaircutSchedule(), "eod")
    assert data["as_of"] == "2025-10-31" and data["tenors"] == list(market.snapshot.tenors)
    assert data["params"]["ficc"]["confidence"] == 0.99
    assert GENESIS == "0" * 64
    assert Path(market.snapshot.data_dir).is_dir()


def test_new_model_parameters_are_recorded_and_replayed(ledger_url, market):
    from dataclasses import replace as dc_replace

    with Ledger(ledger_url) as lg:
        session = LedgerSession.open(lg)
        session.use_market(market)
        session.ingest(_rows(market, TRADES))
        r_before = session.engine.margin("XM1")["applied_reduction_factor"]
        capped = dc_replace(market, params=dc_replace(market.params, cross=dc_replace(market.params.cross,
                                                                                        reduction_cap=0.1)))
        assert session.use_market(capped)
        row = session.engine.margin("XM1")
        assert r_before > 0.1 and row["applied_reduction_factor"] == 0.1
        snap = [e for e in lg.entries() if e.kind == "market_snapshot"][-1]
        assert snap.data["params"]["cross"]["reduction_cap"] == "0.1"
        state = replay(lg)
        assert state.mismatches == []
        assert state.engine.context.params.cross.reduction_cap == 0.1
        assert state.engine.margin("XM1") == row


def _reference_normalize(value):
    """The canonical form as the module docstring states it, written out independently (the
    form every existing ledger's hashes were computed with)."""
    import numpy as np

    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not math.isfinite(float(value)):
            raise ValueError("not finite")
        return repr(float(value))
    if isinstance(value, dict):
        return {k: _reference_normalize(v) for k, v in value.items()}
    return [_reference_normalize(v) for v in value]


def test_canonical_json_fast_path_equals_the_rules() -> None:
    """``normalize`` takes the exact built-in types first; for every JSON-like value (floats of
    every magnitude, NumPy scalars, tuples, nesting) it gives the text the rules give."""
    import numpy as np
    from hypothesis import given
    from hypothesis import strategies as st

    from xmargin.ledger.hashing import canonical_json

    scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=8)
               | st.floats(allow_nan=False, allow_infinity=False)
               | st.floats(allow_nan=False, allow_infinity=False).map(np.float64)
               | st.integers(-10**12, 10**12).map(np.int64))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)

    @given(values)
    def check(v) -> None:
        want = json.dumps(_reference_normalize(v), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert canonical_json(v) == want

    check()
    for bad in (float("nan"), float("inf"), -float("inf"), np.float64("nan"), {"a": [1.0, float("inf")]}):
        with pytest.raises(ValueError):
            canonical_json(bad)
    with pytest.raises(TypeError):
        canonical_json({1: "x"})
