"""Mutation testing of the margin core, the ledger checks and access control (cosmic-ray).

Usage (from the repository root; ``pip install -e .[mutation]``)::

    python tools/mutation.py                 # every module below, smallest first
    python tools/mutation.py cross var       # some of them
    python tools/mutation.py --list          # the modules, their files and their tests

For each module, cosmic-ray (https://cosmic-ray.readthedocs.io) generates every mutant of one
source file (operators swapped, comparisons flipped, constants changed, ``break``/``continue``
swapped, ...) and runs that module's fast tests on each; a mutant is **killed** when a test
fails, **survives** when they all pass, and is **incompetent** when it cannot run (a timeout
or a crash: cosmic-ray counts those as killed; they are reported apart).  The run works on a
copy of ``src`` and ``tests`` in a temporary folder (the checkout is never mutated), under
``nice``, with pytest's plugin autoload off, and each test run is a fork of a warm process
(``tools/pytest_forkserver.py``) that has already imported NumPy, SciPy, QuantLib and pytest.

Printed: a table per module (mutants, killed, survived, incompetent, score, seconds) and each
survivor's diff; written: ``out/mutation/<module>.txt`` (survivors) and ``out/mutation/summary.md``.
Known equivalent mutants (no test can tell them from the original) are listed in
``EQUIVALENT`` with the reason, and the score is given with and without them.  The run takes
minutes per module (each mutant starts a Python process), so it stays outside CI; see
``docs/testing.md`` for the latest scores and timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    path: str  # source file, relative to the repository root
    tests: str  # pytest arguments: the fast tests that guard it
    timeout: float = 120.0  # seconds per mutant run (an endless loop is a kill, reported incompetent)


TARGETS: dict[str, Target] = {
    "cross": Target("src/xmargin/margin/cross.py",
                    "tests/test_cross.py tests/test_mutation_holes_cross.py "
                    "tests/test_mutation_holes_margin.py::test_cftc_sample_portfolio_through_reduction_factors"),
    "ficc": Target("src/xmargin/margin/ficc.py", "tests/test_mutation_holes_ficc.py"),
    "var": Target("src/xmargin/margin/var.py",
                  "tests/test_var.py tests/test_mutation_holes_var.py tests/test_mutation_holes_var_apc.py "
                  "tests/test_filtered.py::test_model_var_tools_by_hand "
                  "tests/test_filtered.py::test_weighted_var_partial_sort_equals_full_sort"),
    "span": Target("src/xmargin/margin/span.py",
                   "tests/test_mutation_holes_spanrules.py tests/test_span.py -k 'not calibrat and not calendar_spreads_are and not ordered_by "
                   "and not inter_commodity_pairs and not zn_scanning and not two_windows'"),
    "verify": Target("src/xmargin/ledger/verify.py", "tests/test_mutation_holes_verify.py"),
    "collateral": Target("src/xmargin/clearing/collateral.py", "tests/test_mutation_holes_collateral.py"),
    # the fast unit tests first (-x stops at the first failure): most mutants die before a server starts
    "auth": Target("src/xmargin/service/auth.py", "tests/test_mutation_holes_auth.py tests/test_service_auth.py "
                   "tests/test_service_keys_file.py", timeout=300.0),
}

#: ``(module, line, key) -> why no test can kill it``: ``key`` is an operator-name prefix
#: (``core/...``) or else a piece of the mutated line as cosmic-ray writes it.
EQUIVALENT: dict[tuple[str, int, str], str] = {
    ("cross", 43, "core/ReplaceBinaryOperator_BitOr"): "a type annotation: never evaluated (__future__ annotations)",
    ("cross", 47, "core/ReplaceBinaryOperator_BitAnd"): "& on two boolean arrays: * and // give the same truth",
    ("cross", 48, "core/ReplaceBinaryOperator_BitAnd"): "& on two boolean arrays: * and // give the same truth",
    ("cross", 47, "core/ReplaceComparisonOperator_Gt"): "stand-alone figures are VaRs and SPAN, floored at 0: "
                                                        "> 0 and != 0 agree",
    **{("cross", 51, k): "safe_total matters only where both sides are > 0 (so total > 0); other rows are masked"
       for k in ("total > -1", "total, 2.0)", "total, 0.0)", "total >= 0", "total != 0")},
    ("var", 60, "core/ReplaceComparisonOperator_NotEq_Lt"): "a row that never loses has VaR 0 whether or not it "
                                                             "is skipped",
    ("span", 91, "core/ReplaceUnaryOperator_"): "the 16 scenarios are symmetric (+-moves): the largest "
                                                           "loss is the same with the sign flipped",
    ("span", 92, "-1.0)"): "the zero-move scenarios make every root's largest loss >= 0 before the floor",
    ("span", 99, "remaining != 0"): "remaining is an absolute value: != 0 is > 0",
    ("span", 100, "core/ReplaceComparisonOperator_Gt"): "held only skips pairs that form no spread in any account",
    ("span", 100, "remaining > -1"): "held only skips pairs that form no spread in any account",
    **{("span", 99, k): "the weighted price risk of an empty leg is multiplied by a spread of 0"
       for k in ("remaining, -1.0)", "remaining, 1.0)")},
    ("span", 110, "credit, -1.0)"): "each leg's credit is at most rate x its scan risk (rate <= 1): the sum is never "
                                    "negative, so the floor at 0 never binds",
    ("span", 102, "core/ReplaceAndWithOr"): "a pair with one root held forms spreads of size 0: no credit",
    ("span", 104, "core/"): "a sign product of 0 means one leg is empty: the spread s is 0 either way",
    ("verify", 43, "core/ReplaceBinaryOperator_BitOr"): "a type annotation: never evaluated (__future__ annotations)",
    ("verify", 51, "core/ReplaceComparisonOperator_Gt_GtE"): "in that branch e.seq != expected, so >= is >",
    ("verify", 74, "e.seq != 1"): "seq numbers start at 1: != 1 is > 1",
    ("verify", 104, "core/ReplaceBinaryOperator_BitOr"): "a type annotation: never evaluated (__future__ annotations)",
    ("verify", 52, "core/ReplaceComparisonOperator_Eq_LtE"): "in that branch e.seq > expected, so <= expected + 1 "
                                                              "is == expected + 1",
    ("verify", 61, "core/ReplaceFalseWithTrue"): "doc is None there, so the entry is malformed whatever canonical says",
    ("var", 60, "pnl != 1.0"): "a row that gains 1 in every scenario has VaR 0 whether or not it is skipped",
    ("var", 61, "core/"): "the early return for no active row is a shortcut: the general path gives the same zeros",
    ("var", 63, "core/ReplaceComparisonOperator_Lt"): "pnl[active] with every row active is a copy of pnl",
    ("var", 65, "core/"): "without stressed columns the general path gives the same VaR and no stress flag",
    ("var", 78, "], -1.0)"): "the full-set VaR only counts through max(base, full) with base >= 0",
    ("var", 87, "used[ -1]"): "used has one element",
    ("var", 75, "n_base) - 2})"): "the 28th place of the base partition matters only when no stressed scenario is "
                                  "among the 28 worst, and then the full-set VaR is below the base VaR anyway",
    ("var", 33, ", 10)))"): "10 decimals instead of 9 changes k only for a product within 5e-10 of a whole number "
                            "but not within 5e-11",
    # weighted_var / model_var (issue 11's anti-procyclicality tools), lines as of 148742a
    ("var", 107, "core/NumberReplacer"): "1 - a rounded to 11 or 13 decimals instead of 12: the same for any "
                                         "confidence given with fewer than 11 decimals",
    ("var", 108, "core/"): "weights are >= 0, so != 0 is > 0; with < 0 or > 1 no weight counts as positive, K = S "
                           "and the full sort gives the same VaR",
    ("var", 109, "core/"): "a larger n_zero only makes K larger: more columns sorted, the same VaR",
    ("var", 110, "core/ReplaceComparisonOperator_Eq_"): "weights sum to 1, so some are positive: K = S (the full "
                                                        "sort, the same VaR) or the original bound",
    ("var", 110, "core/AddNot"): "weights sum to 1, so some are positive: K = S, the full sort, the same VaR",
    **{("var", 110, k): "K = S (the full sort) or a larger K: the same VaR"
       for k in ("len(positive) == 1 else", "len(positive) == -1 else", "+ 2 + n_zero")},
    ("var", 111, "core/"): "the partial sort is a shortcut: the full-sort branch gives the same VaR for any K <= S",
    **{("var", 112, k): "a partition at k (< S) also leaves the k smallest first; at k - 2 the k - 1 smallest, and "
                        "the k-th column is read only on a rounding edge, where NumPy's selection left the k-th "
                        "smallest in place in 200 random orders tried: not killable in practice"
       for k in ("k - 0,", "core/ReplaceBinaryOperator_Sub_Mul", "k - 2,")},
    ("var", 120, "core/ReplaceComparisonOperator_GtE_Gt"): "> and >= differ only for a cumulative weight exactly "
                                                           "1 - a - 1e-12 (the target already has a 1e-12 slack)",
    ("var", 127, "core/ReplaceBinaryOperator_BitOr"): "a type annotation: never evaluated (__future__ annotations)",
    ("var", 129, "core/ReplaceBinaryOperator_Mul_Div"): "/ makes the four data arguments positional-only: every "
                                                        "caller passes them by position and the tools by keyword",
    ("var", 130, "core/NumberReplacer"): "a default stress weight of -1 acts as 0 (only > 0 is read; the floor's "
                                         "inner call passes the weight explicitly)",
    ("var", 142, "core/ReplaceComparisonOperator_Gt_NotEq"): "a negative stress weight is refused when the "
                                                             "ScenarioSpec is built ([0, 1)), so != 0 is > 0",
    ("collateral", 71, "core/ReplaceComparisonOperator_NotEq_Lt"): "a NaN bound is refused before (not > 0, or not "
                                                                    "increasing): the last bound is a number, never "
                                                                    "above inf, so != inf is < inf",
    ("collateral", 84, 'b >= float("inf")'): "bounds are positive numbers or inf (validated): none is above inf, "
                                             "so >= inf is == inf",
    **{("collateral", 98, k): "the default table's open bucket given as inf instead of None: from_dict reads both "
                              "as inf, so the schedule is the same" for k in ("b >= math.inf", "b > math.inf")},
    **{("collateral", ln, "core/ReplaceBinaryOperator_BitOr"): "a type annotation: never evaluated "
                                                               "(__future__ annotations)" for ln in (92, 170)},
    ("collateral", 111, "core/NumberReplacer"): "the default amount is never read: a status's amount is read only "
                                                "for a margin call, and is set when the call is issued or restored",
    ("collateral", 135, "core/NumberReplacer"): "one instrument priced under the snapshot's one curve: index -1 is "
                                                "index 0 on both axes",
    **{("auth", ln, "core/ReplaceBinaryOperator_BitOr"): "a type annotation: never evaluated (__future__ annotations)"
       for ln in (44, 93, 98, 152, 171)},
    ("auth", 48, 'scope <= "admin"'): "a scope is 'admin' or 'member' (checked on load; a Literal type): nothing sorts "
                                      "below 'admin', so <= is ==",
    **{("auth", ln, 'scope >= "member"'): "a scope is 'admin' or 'member' (checked just before / a Literal type): "
                                          "nothing sorts above 'member', so >= is =="
       for ln in (78, 132, 133)},
    ("auth", 182, "core/NumberReplacer"): "the keys file's indentation: the same JSON either way",
    ("collateral", 197, 'kind >= "margin_call"'): "restore gets only 'margin_call' or 'excess' (replay, checkpoint), "
                                                  "and 'excess' < 'margin_call': >= is ==",
}


def _workspace(tmp: Path) -> Path:
    """A copy of the checkout's code and tests beside the real data (tests find it at ../shared)."""
    repo = tmp / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    shutil.copytree(ROOT / "src", repo / "src", ignore=ignore)
    shutil.copytree(ROOT / "tests", repo / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", repo / "pyproject.toml")
    (tmp / "shared").symlink_to((ROOT.parent / "shared").resolve())
    return repo


#: The reduced operator set (default).  Arithmetic operators are swapped among ``+ - * /`` and
#: ``&``/``|`` with each other; replacements by ``^ << >> ** // % @``, arithmetic <-> bitwise
#: swaps and comparisons turned into ``is``/``is not`` are left out: on this code they mostly
#: raise type errors or repeat what the plain swaps show, and they triple the run time.
#: ``--full`` runs every cosmic-ray operator.
REDUCED_EXCLUDE = (
    "core/ReplaceBinaryOperator_[A-Za-z]+_(BitXor|LShift|RShift|Pow|FloorDiv|Mod|MatMult)$",
    "core/ReplaceBinaryOperator_(Add|Sub|Mul|Div|FloorDiv|Mod|Pow|MatMult)_(BitAnd|BitOr)$",
    "core/ReplaceBinaryOperator_(BitAnd|BitOr|BitXor|LShift|RShift)_(Add|Sub|Mul|Div)$",
    "core/ReplaceComparisonOperator_(Eq|NotEq|Lt|LtE|Gt|GtE)_(Is|IsNot)$",
)


def _config(target: Target, socket_path: Path) -> str:
    """cosmic-ray's configuration: its test command is the fork server's client."""
    command = (f"{sys.executable} {ROOT / 'tools' / 'pytest_forkserver.py'} run {socket_path} {target.timeout} -- "
               f"-x -q -p no:cacheprovider {target.tests}")
    return (f'[cosmic-ray]\nmodule-path = "{target.path}"\ntimeout = {target.timeout + 30}\nexcluded-modules = []\n'
            f"test-command = {json.dumps(command)}\n[cosmic-ray.distributor]\nname = \"local\"\n"
            f"[cosmic-ray.filters.operators-filter]\nexclude-operators = {json.dumps(list(REDUCED_EXCLUDE))}\n")


def _line_of(item: object) -> int:
    return int(item.mutations[0].start_pos[0])  # type: ignore[attr-defined]


def run_module(name: str, target: Target, out: Path, full: bool = False,
               max_seconds: float | None = None, resume: bool = False) -> dict[str, object]:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"xmargin-mutation-{name}-") as tmpdir:
        tmp = Path(tmpdir)
        repo = _workspace(tmp)
        env = {**os.environ, "PYTHONPATH": str(repo / "src"), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
               "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        sock = tmp / "pytest.sock"
        (repo / "cr.toml").write_text(_config(target, sock))
        server = subprocess.Popen([sys.executable, str(ROOT / "tools" / "pytest_forkserver.py"), "serve", str(sock)],
                                  cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            cr = [sys.executable, "-m", "cosmic_ray.cli"]
            filt = [sys.executable, "-m", "cosmic_ray.tools.filters.operators_filter"]
            kept = out / f"{name}.sqlite"
            if resume and kept.exists():  # go on with the mutants a capped run left
                shutil.copy2(kept, repo / "session.sqlite")
                steps = [[*cr, "exec", "cr.toml", "session.sqlite"]]
            else:
                steps = [[*cr, "init", "cr.toml", "session.sqlite"], [*cr, "baseline", "cr.toml"],
                         *([] if full else [[*filt, "session.sqlite", "cr.toml"]]),
                         [*cr, "exec", "cr.toml", "session.sqlite"]]
            for step in steps:
                try:
                    proc = subprocess.run(step, cwd=repo, env=env, capture_output=True, text=True,
                                          timeout=max_seconds if "exec" in step else None)
                except subprocess.TimeoutExpired:  # --max-minutes: keep what was done
                    break
                if proc.returncode != 0:
                    raise SystemExit(f"{name}: {' '.join(step[2:4])} failed ({proc.returncode}):\n"
                                     f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        finally:
            server.kill()
            server.wait()
        shutil.copy2(repo / "session.sqlite", out / f"{name}.sqlite")  # kept for cr-report / re-analysis
    return analyse(name, target, out, time.monotonic() - t0)


def analyse(name: str, target: Target, out: Path, seconds: float) -> dict[str, object]:
    """Counts and survivors of the session ``out/<name>.sqlite`` (``EQUIVALENT`` applied now)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    killed = survived = incompetent = equivalent = 0
    lines: list[str] = []
    with use_db(str(out / f"{name}.sqlite"), WorkDB.Mode.open) as db:
        pending = sum(1 for _ in db.pending_work_items)
        items = {w.job_id: w for w in db.work_items}
        for job_id, result in db.results:
            item = items[job_id]
            if result.worker_outcome == WorkerOutcome.SKIPPED:  # filtered out (reduced set)
                continue
            if result.test_outcome == TestOutcome.KILLED:
                killed += 1
            elif result.test_outcome == TestOutcome.INCOMPETENT:
                incompetent += 1
            else:
                line = _line_of(item)
                op = item.mutations[0].operator_name
                added = "".join(x for x in (result.diff or "").splitlines() if x.startswith("+") and not x.startswith("+++"))
                why = next((w for (m, ln, k), w in EQUIVALENT.items()
                            if m == name and ln == line and (op.startswith(k) if k.startswith("core/") else k in added)),
                           None)
                if why is not None:
                    equivalent += 1
                    lines.append(f"--- equivalent ({why}): line {line} {op}\n{result.diff}\n")
                else:
                    survived += 1
                    lines.append(f"--- SURVIVED: line {line} {op}\n{result.diff}\n")
    total = killed + survived + incompetent + equivalent
    (out / f"{name}.txt").write_text("".join(lines))
    caught = killed + incompetent
    return {"module": name, "file": target.path, "mutants": total, "killed": killed, "survived": survived,
            "incompetent": incompetent, "equivalent": equivalent,
            "score": 100.0 * caught / total if total else 100.0,
            "score_net": 100.0 * caught / (total - equivalent) if total > equivalent else 100.0,
            "seconds": seconds, "pending": pending, "survivors": "".join(lines)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    parser.add_argument("--list", action="store_true", help="show the modules and their tests")
    parser.add_argument("--full", action="store_true", help="every cosmic-ray operator (default: reduced set)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop each module's run after this long and report the mutants done (pending ones "
                             "are counted apart)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the sessions kept in --out (the mutants a --max-minutes run left)")
    parser.add_argument("--report", action="store_true",
                        help="no run: re-read the sessions kept in --out (after editing EQUIVALENT)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "mutation")
    args = parser.parse_args(argv)
    if args.list:
        for name, t in TARGETS.items():
            print(f"{name:11} {t.path:38} {t.tests}")
        return 0
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {list(TARGETS)}")
    os.nice(10)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    header = f"| module ({'full' if args.full else 'reduced'} set) | file | mutants | killed | survived | incompetent | equivalent | score | net score | seconds | not run |"
    print(header)
    for name in args.modules or list(TARGETS):
        r = (analyse(name, TARGETS[name], args.out, float('nan')) if args.report
             else run_module(name, TARGETS[name], args.out, args.full,
                            None if args.max_minutes is None else 60 * args.max_minutes, args.resume))
        rows.append(r)
        print(f"| {r['module']} | {r['file']} | {r['mutants']} | {r['killed']} | {r['survived']} | "
              f"{r['incompetent']} | {r['equivalent']} | {r['score']:.1f}% | {r['score_net']:.1f}% | "
              f"{r['seconds']:.0f} | {r['pending']} |", flush=True)
        if r["survivors"]:
            print(r["survivors"], flush=True)
    with (args.out / "summary.md").open("a") as fh:
        fh.write(f"\n{time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} cores, load "
                 f"{os.getloadavg()[0]:.1f}\n{header}\n")
        for r in rows:
            fh.write(f"| {r['module']} | {r['file']} | {r['mutants']} | {r['killed']} | {r['survived']} | "
                     f"{r['incompetent']} | {r['equivalent']} | {r['score']:.1f}% | {r['score_net']:.1f}% | "
                     f"{r['seconds']:.0f} | {r['pending']} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
