"""The command line prints xmargin's named data warnings as one line each (``cli.main.show_warning``)."""

from __future__ import annotations

import io
import warnings

from xmargin.cli.main import show_warning
from xmargin.market.futures_history import GapWarning, OffTickWarning


def test_named_data_warnings_print_as_one_line_naming_the_kind() -> None:
    buf = io.StringIO()
    show_warning(OffTickWarning("ZN.csv: 2 price(s) off the 1/256 tick grid of ZN"), OffTickWarning,
                 "/src/xmargin/scenarios/residual.py", 161, file=buf)
    show_warning(GapWarning("ZN.csv (ZNU24): no prices from 2024-06-05 to 2024-06-23"), GapWarning, "x.py", 1, file=buf)
    assert buf.getvalue() == ("warning (OffTickWarning): ZN.csv: 2 price(s) off the 1/256 tick grid of ZN\n"
                              "warning (GapWarning): ZN.csv (ZNU24): no prices from 2024-06-05 to 2024-06-23\n")


def test_other_warnings_keep_pythons_format() -> None:
    buf = io.StringIO()
    show_warning(DeprecationWarning("old"), DeprecationWarning, "/lib/thing.py", 7, file=buf, line="x = 1")
    assert buf.getvalue() == warnings.formatwarning(DeprecationWarning("old"), DeprecationWarning, "/lib/thing.py", 7,
                                                    "x = 1")


def test_the_installed_command_is_main_which_installs_the_hook(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``[project.scripts] xmargin`` must be ``main`` (not the Typer app itself): ``main`` installs
    the warning format and builds only the invoked command (the warm ``xmargin price`` path)."""
    import importlib
    import sys
    import tomllib
    from pathlib import Path

    import pytest

    script = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]["xmargin"]
    module, _, name = script.partition(":")
    entry = getattr(importlib.import_module(module), name)
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after the test
    monkeypatch.setattr(sys, "argv", ["xmargin", "price", "--help"])
    with pytest.raises(SystemExit) as done:
        entry()
    assert done.value.code == 0
    assert warnings.showwarning is show_warning


def test_python_dash_m_runs_the_same_command() -> None:
    """``python -m xmargin`` and ``python -m xmargin.cli.main`` run the CLI (the latter printed
    nothing and exited 0 before it had a ``__main__`` block)."""
    import subprocess
    import sys

    for module in ("xmargin", "xmargin.cli.main"):
        out = subprocess.run([sys.executable, "-m", module, "ledger", "--help"], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        assert "Usage:" in out.stdout and "verify" in out.stdout, (module, out.stdout)
