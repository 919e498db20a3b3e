"""The import layers of docs/architecture.md, checked on the source with ``ast``.

Every ``import xmargin.X...`` / ``from xmargin.X... import`` in ``src/xmargin`` (at module level
or inside a function: a lazy import is still a dependency) must go to a package in a strictly
lower layer, or stay inside its own package.  Within the whole code base no two modules may
import each other, directly or round a longer cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "xmargin"

#: Bottom to top; the same table is in docs/architecture.md ("Layers").
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors"}),
    frozenset({"config", "ledger"}),
    frozenset({"reference", "diskcache"}),
    frozenset({"market"}),
    frozenset({"masterdata", "scenarios"}),
    frozenset({"pricing"}),
    frozenset({"portfolio"}),
    frozenset({"margin"}),
    frozenset({"reports", "engine", "validation", "formats"}),
    frozenset({"workflow", "optimise", "clearing"}),
    frozenset({"distributed"}),
    frozenset({"service"}),
    frozenset({"cli"}),
    frozenset({"__main__"}),
)
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}

#: Known breaks, each with the reason and who removes it.  Keep this empty where possible.
ALLOWED: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported xmargin module, line) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "xmargin":
                out += [(f"xmargin.{a.name}", node.lineno) for a in node.names if _exists(f"xmargin.{a.name}")]
            elif node.module.startswith("xmargin."):
                out.append((node.module, node.lineno))
                out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names
                        if _exists(f"{node.module}.{a.name}")]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("xmargin.")]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import; write xmargin.… in full")
    return out


def _exists(module: str) -> bool:
    path = SRC.parent / module.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _package(module: str) -> str:
    return module.split(".")[1]


def _graph() -> dict[str, list[tuple[str, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(SRC.rglob("*.py"))}


def upward_imports(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = []
    for module, imports in graph.items():
        if module == "xmargin":
            continue
        src = _package(module)
        for target, line in imports:
            dst = _package(target)
            if dst == src or (src, dst) in ALLOWED:
                continue
            if src not in RANK or dst not in RANK:
                bad.append(f"{module}:{line} -> {target}: package not in the layer table")
            elif RANK[dst] >= RANK[src]:
                bad.append(f"{module}:{line} -> {target}: layer {RANK[src]} may not import layer {RANK[dst]}")
    return bad


def module_cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Cycles among modules (a package's ``__init__`` importing its own modules is not one)."""
    edges = {m: sorted({t for t, _ in imps if t in graph and t != m and not m == t.rsplit(".", 1)[0]
                        and (_package(m), _package(t)) not in ALLOWED and (_package(t), _package(m)) not in ALLOWED})
             for m, imps in graph.items() if m != "xmargin"}
    cycles, state = [], dict.fromkeys(edges, 0)
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges.get(m, []):
            if _is_package_init(t) and m.startswith(t + "."):
                continue
            if state.get(t, 2) == 1:
                cycles.append([*stack[stack.index(t):], t])
            elif state.get(t) == 0:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in edges:
        if state[m] == 0:
            visit(m)
    return cycles


def _is_package_init(module: str) -> bool:
    return (SRC.parent / module.replace(".", "/") / "__init__.py").exists()


def test_every_package_is_in_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages - set(RANK) == set()


def test_no_upward_import() -> None:
    assert upward_imports(_graph()) == []


def test_no_import_cycle() -> None:
    assert module_cycles(_graph()) == []


def test_the_checks_catch_a_break(tmp_path: Path) -> None:
    """The checker itself: an upward import and a cycle are reported (synthetic graph)."""
    graph = {
        "xmargin.ledger.store": [("xmargin.engine.live", 3)],
        "xmargin.engine.live": [("xmargin.ledger.store", 5)],
        "xmargin.reference.securities": [("xmargin.market.history", 7)],
        "xmargin.market.history": [],
    }
    bad = upward_imports(graph)
    assert bad == ["xmargin.ledger.store:3 -> xmargin.engine.live: layer 1 may not import layer 8",
                   "xmargin.reference.securities:7 -> xmargin.market.history: layer 2 may not import layer 3"]
    assert module_cycles(graph) == [["xmargin.ledger.store", "xmargin.engine.live", "xmargin.ledger.store"]]


@pytest.mark.parametrize(("src", "dst"), [("ledger", "engine"), ("reference", "market"), ("ledger", "clearing")])
def test_the_issue_15_breaks_are_layer_violations(src: str, dst: str) -> None:
    assert RANK[dst] > RANK[src]
