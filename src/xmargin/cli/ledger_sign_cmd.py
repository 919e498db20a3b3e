"""``xmargin ledger keygen|checkpoint|sync|compare|prove|check-proof``: a ledger both clearinghouses can hold.

* ``keygen --dir DIR``: an Ed25519 key pair per party (``FICC``, ``CME``, ``engine``);
* ``checkpoint --key FILE --signer PARTY [--out FILE]``: sign the head (sequence, hash, Merkle
  root, time), store it in the ledger and append it to ``--out`` (the file a party keeps and
  passes to ``xmargin ledger verify --anchor FILE``);
* ``sync --from URL --to URL``: copy a ledger to a second database and verify the copy;
* ``compare --ledger URL --other URL``: reconcile two replicas, naming the first divergent entry;
* ``prove --account A --checkpoint FILE --out FILE``: an account's entries with Merkle
  inclusion proofs; ``check-proof FILE [--keys DIR]``: what a member runs on it.

See :mod:`xmargin.ledger.signing` and :mod:`xmargin.ledger.replica`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from xmargin.cli.common import FormatOption, OutputFormat, console, emit_json, handle_errors

DEFAULT_LEDGER = "sqlite:///xmargin-ledger.db"
Url = Annotated[str, typer.Option("--ledger", help="Ledger database URL.")]


@handle_errors
def keygen(
    directory: Annotated[Path, typer.Option("--dir", help="Folder for <party>.key (private) and <party>.pub.")],
    party: Annotated[list[str] | None, typer.Option("--party", help="FICC, CME or engine (default: all three).")] = None,
) -> None:
    """Generate an Ed25519 key pair per party."""
    from xmargin.ledger.signing import PARTIES, generate_keys

    for p in generate_keys(directory, party or PARTIES):
        console.print(str(p), highlight=False)


@handle_errors
def checkpoint(
    key: Annotated[Path, typer.Option("--key", help="The signer's private key (PEM).")],
    signer: Annotated[str, typer.Option("--signer", help="FICC, CME or engine.")],
    ledger: Url = DEFAULT_LEDGER,
    out: Annotated[Path | None, typer.Option("--out", help="Append the checkpoint to this file (JSON lines).")] = None,
) -> None:
    """Sign the ledger's head; store the checkpoint in the ledger and export it."""
    from xmargin.ledger import Ledger
    from xmargin.ledger.signing import load_private_key, sign_checkpoint

    private = load_private_key(key)
    with Ledger(ledger, create=False) as lg:
        cp = sign_checkpoint(lg, private, signer)
    if out is not None:
        with out.open("a", encoding="utf-8") as fh:
            fh.write(cp.to_json() + "\n")
    console.print(cp.to_json(), highlight=False, soft_wrap=True)


@handle_errors
def sync_cmd(
    source: Annotated[str, typer.Option("--from", help="Ledger to copy (URL).")],
    dest: Annotated[str, typer.Option("--to", help="Replica to bring up to date (URL; created if missing).")],
    format: FormatOption = OutputFormat.table,
) -> None:
    """Copy a ledger to a second database and verify the copy; exit 1 if it does not verify."""
    from xmargin.ledger import Ledger
    from xmargin.ledger.replica import sync

    with Ledger(source, create=False) as a, Ledger(dest) as b:
        report = sync(a, b)
    v = report.verified
    if format is OutputFormat.json:
        emit_json({"copied": report.copied, "checkpoints": report.checkpoints, "ok": v.ok, "seq": v.seq,
                   "problem": v.problem, "message": v.message, "last_seq": v.last_seq, "last_hash": v.last_hash})
    else:
        console.print(f"copied {report.copied} entries and {report.checkpoints} checkpoint(s); replica "
                      f"{'verified' if v.ok else 'FAILED'}: {v.message}; head {v.last_seq} {v.last_hash}",
                      highlight=False, soft_wrap=True)
    if not v.ok:
        raise typer.Exit(code=1)


@handle_errors
def compare(
    ledger: Url = DEFAULT_LEDGER,
    other: Annotated[str, typer.Option("--other", help="The other replica (URL).")] = "",
) -> None:
    """Reconcile two replicas entry by entry; exit 1 naming the first divergent entry."""
    from xmargin.errors import InputError
    from xmargin.ledger import Ledger
    from xmargin.ledger.replica import first_divergence

    if not other:
        raise InputError("--other URL is required", field="--other")
    with Ledger(ledger, create=False) as a, Ledger(other, create=False) as b:
        d = first_divergence(a, b)
        n = a.head()[0]
    if d is None:
        console.print(f"the replicas agree: {n} entries", highlight=False)
        return
    console.print(f"[bold red]DIVERGE[/] at entry {d.seq}: {d.message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


@handle_errors
def prove(
    account: Annotated[str, typer.Option("--account", help="The member's account.")],
    checkpoint_file: Annotated[Path, typer.Option("--checkpoint", help="Signed checkpoint file (the last one is used).")],
    out: Annotated[Path, typer.Option("--out", help="Write the proof here (JSON).")],
    ledger: Url = DEFAULT_LEDGER,
) -> None:
    """An account's entries with Merkle inclusion proofs against a signed checkpoint."""
    from xmargin.ledger import Ledger
    from xmargin.ledger.replica import member_proof
    from xmargin.ledger.signing import read_checkpoints

    cp = read_checkpoints(checkpoint_file)[-1]
    with Ledger(ledger, create=False) as lg:
        doc = member_proof(lg, account, cp)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    console.print(f"{len(doc['entries'])} entries of {account} proved against {cp.signer}'s checkpoint at "
                  f"entry {cp.seq}: {out}", highlight=False)


@handle_errors
def check_proof(
    proof: Annotated[Path, typer.Argument(help="A proof written by 'xmargin ledger prove'.")],
    keys: Annotated[Path | None, typer.Option("--keys", help="Directory of the parties' public keys.")] = None,
) -> None:
    """Check a member proof: each entry's hash, its inclusion, the checkpoint's signature."""
    from xmargin.ledger.replica import check_member_proof, read_json
    from xmargin.ledger.signing import load_public_keys

    public = load_public_keys(keys) if keys is not None else None
    seqs = check_member_proof(read_json(proof), public, source=str(proof))
    console.print(f"ok: {len(seqs)} entries in the signed chain", highlight=False)


def add_commands(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
    app.command("checkpoint")(checkpoint)
    app.command("sync")(sync_cmd)
    app.command("compare")(compare)
    app.command("prove")(prove)
    app.command("check-proof")(check_proof)
