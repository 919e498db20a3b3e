"""The front door: the README opens with the install-and-run command and the test command,
and CI runs exactly that test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_opens_with_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```bash")
    assert text[:first_block].count("\n") < 6, "the commands must come first"
    run, test = _commands()[:2]
    assert "pip install" in run and "xmargin " in run
    assert "pip install" in test and '".[test]"' in test and "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    test = _commands()[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test in ci, "the README's test command must appear verbatim in .ci/run"
    assert "-eq 5" in ci, "pytest exit code 5 (no tests) must fail CI"
