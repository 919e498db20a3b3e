"""Signed ledger costs: checkpoint, anchored verify, member proof and replica sync.

A synthetic SQLite ledger (synthetic because only the store is measured: trade-shaped events of
200 accounts, each followed by a margin result) of N groups = 2N entries.  Baseline: the plain
hash-chain ``verify_ledger`` of the same ledger in the same run; every other figure is a ratio
to it.  No target: the point is that signing and proving stay within a small multiple of
reading the chain once.

``python benchmarks/bench_ledger_signing.py [--quick]`` prints the table.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path


def main(quick: bool = False) -> None:
    from xmargin.ledger import Event, Ledger, verify_ledger
    from xmargin.ledger.replica import check_member_proof, member_proof, sync, verify_anchored
    from xmargin.ledger.signing import (
        generate_keys,
        load_private_key,
        load_public_keys,
        sign_checkpoint,
    )

    n = 1_000 if quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate_keys(root / "keys")
        url = f"sqlite:///{root / 'a.db'}"
        with Ledger(url) as lg:
            groups = []
            for i in range(n):
                acc = f"M{i % 10}-A{i % 200}"
                t = f"2025-10-31T{10 + i // 3600 % 12:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000000Z"
                groups.append([Event("trade", "FICC", {"trade_id": f"T{i}", "account": acc, "quantity": 1.0 * i},
                                     ref=f"T{i}", time=t, scope=acc),
                               Event("margin_result", "engine", {"account": acc, "total": 2.0 * i})])
            for k in range(0, n, 1000):
                lg.append(groups[k:k + 1000])
            keys = load_public_keys(root / "keys")
            rows = []

            def timed(label: str, fn):  # type: ignore[no-untyped-def]
                t0 = time.perf_counter()
                out = fn()
                rows.append((label, time.perf_counter() - t0))
                return out

            timed("verify_ledger (baseline)", lambda: verify_ledger(lg))
            cp = timed("sign_checkpoint", lambda: sign_checkpoint(lg, load_private_key(root / "keys" / "FICC.key"),
                                                                "FICC"))
            timed("verify --keys --anchor", lambda: verify_anchored(lg, keys, [cp]))
            doc = timed("member_proof (1 of 200 accounts)", lambda: member_proof(lg, "M3-A3", cp))
            timed("check_member_proof", lambda: check_member_proof(doc, keys))
            with Ledger(f"sqlite:///{root / 'b.db'}") as b:
                timed("sync to an empty replica", lambda: sync(lg, b))
    base = rows[0][1]
    print(f"signed ledger, {2 * n:,} entries (SQLite, {'quick' if quick else 'full'}); machine: shared, loaded")
    print(f"{'step':38s} {'seconds':>9s} {'x baseline':>11s}")
    for label, sec in rows:
        print(f"{label:38s} {sec:9.3f} {sec / base:11.2f}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
