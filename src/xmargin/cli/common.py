"""Shared pieces of the command line: options, date parsing, output and error handling."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xmargin.errors import InputError, XMarginError


def _console(stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    # piped output: Rich would wrap tables at 80 columns; give them room instead
    return probe if probe.is_terminal else Console(stderr=stderr, width=200)


console = _console()
err_console = _console(stderr=True)

#: Help-type labels without Typer's ``<bool>``/``<str>`` noise: flags show none, others a word.
_PLAIN_TYPES = {"<str>": "TEXT", "<path>": "PATH", "<int>": "INTEGER", "<float>": "NUMBER", "<file>": "FILE",
                "<directory>": "DIR", "<bool>": ""}


def _quiet_help_types() -> None:
    """Make ``--help`` read like a man page: no type for flags, ``TEXT``/``PATH``/``NUMBER`` for
    values, ``PORTFOLIO`` (not ``{portfolio}``) for arguments.  Typer 0.2x renders these in
    ``display_type_rich`` and ``_usage_display_name``; if a later Typer renames them, help
    falls back to its own labels."""
    from typer import core

    option_type = getattr(core.TyperOption, "display_type_rich", None)
    argument_type = getattr(core.TyperArgument, "display_type_rich", None)
    if option_type is None or argument_type is None or getattr(core.TyperOption, "_xmargin_quiet", False):
        return

    def plain(label: object) -> str | None:
        text = None if label is None else str(label)
        if text is None:
            return None
        return _PLAIN_TYPES.get(text, text[1:-1] if text.startswith("<") and text.endswith(">") else text) or None

    def option_display(self: Any, ctx: Any) -> str | None:
        if self.metavar is not None:
            return str(self.metavar)
        return None if self.is_flag else plain(option_type(self, ctx))

    def argument_display(self: Any, ctx: Any) -> str | None:
        return plain(argument_type(self, ctx))

    core.TyperOption.display_type_rich = option_display  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = argument_display  # type: ignore[method-assign]
    if hasattr(core.TyperArgument, "_usage_display_name"):
        def usage_name(self: Any) -> str:
            name = str(self.metavar or self.name).upper()
            name = name if self.nargs == 1 else f"{name}..."
            return name if self.required else f"[{name}]"

        core.TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]
    core.TyperOption._xmargin_quiet = True  # type: ignore[attr-defined]


_quiet_help_types()

F = TypeVar("F", bound=Callable[..., Any])


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Market data directory (default: $XMARGIN_DATA, ../shared/data, user cache)."),
]
AsOfOption = Annotated[
    str | None,
    typer.Option("--as-of", metavar="DATE", help="As-of date YYYY-MM-DD (default: the latest date on which curves, "
                 "securities master and fixings are all complete; 'latest': the latest curve)."),
]
PrevBusinessDayOption = Annotated[
    bool,
    typer.Option("--previous-business-day", help="If the as-of date has no curve, use the nearest earlier one."),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]


def parse_date(text: str, what: str = "--as-of") -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"'{text}' is not a date (expected YYYY-MM-DD)", source="command line", field=what) from None


def as_of_rule(as_of: str | None) -> str:
    """How :func:`resolve_as_of` chooses the date for this ``--as-of`` value (for provenance)."""
    if as_of is None:
        from xmargin.market.asof import RULE

        return f"default: {RULE}"
    return "latest par curve (--as-of latest)" if as_of.lower() == "latest" else "given on the command line"


def resolve_as_of(as_of: str | None, data_dir: Path | None) -> date:
    """The as-of date the user asked for; by default :func:`xmargin.workflow.default_as_of`
    (stated on stderr, with a warning when it is more than 5 business days old); ``latest``:
    the last date with a curve."""
    if as_of is not None and as_of.lower() == "latest":
        from xmargin.market.snapshot import latest_curve_date

        return latest_curve_date(data_dir)
    if as_of is None:
        from xmargin.market.asof import RULE, stale_warning
        from xmargin.workflow import default_as_of

        day = default_as_of(data_dir)
        err_console.print(f"as of {day} (default: {RULE})", highlight=False, soft_wrap=True)
        stale = stale_warning(day)
        if stale:
            err_console.print(f"[yellow]warning:[/] {escape(stale)}", highlight=False, soft_wrap=True)
        return day
    return parse_date(as_of)


def handle_errors(func: F) -> F:
    """Print an :class:`XMarginError` as one line on stderr and exit with status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except XMarginError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def emit_json(payload: Any) -> None:
    """Write JSON to stdout (plain, so it pipes cleanly into other tools)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str, allow_nan=False) + "\n")


def fmt(value: Any, digits: int = 6) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


LEFT_COLUMNS = ("instrument", "account", "member", "tenor", "figure", "parameter", "type", "status", "set by")


class FittedTable:
    """A table that fits the terminal: printed whole when it fits, otherwise split into
    several tables of the columns that fit side by side, each repeating the first (key)
    column.  No figure is ever cut short (Rich would otherwise squeeze columns to ``1…``)."""

    def __init__(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], digits: int) -> None:
        self.title = title
        self.columns = list(columns)
        self.cells = [[escape(fmt(v, digits)) for v in r] for r in rows]

    def build(self, keep: Sequence[int], title: str) -> Table:
        t = Table(title=title, header_style="bold cyan")
        for k in keep:
            c = self.columns[k]
            t.add_column(c, justify="left" if c in LEFT_COLUMNS else "right", overflow="fold")
        for r in self.cells:
            t.add_row(*[r[k] for k in keep])
        return t

    def groups(self, console: Console, options: Any) -> list[list[int]]:
        """Column groups (indices) that each fit ``options.max_width``."""
        from rich.measure import Measurement

        wide = options.update_width(1_000_000)  # measure unclamped: Rich clamps to the terminal

        def width(keep: list[int]) -> int:
            return Measurement.get(console, wide, self.build(keep, "")).maximum

        everything = list(range(len(self.columns)))
        if width(everything) <= options.max_width or len(self.columns) < 2:
            return [everything]
        out: list[list[int]] = []
        current = [0]
        for k in everything[1:]:
            if len(current) == 1 or width([*current, k]) <= options.max_width:
                current.append(k)
            else:
                out.append(current)
                current = [0, k]
        out.append(current)
        return out

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Table]:
        groups = self.groups(console, options)
        for n, keep in enumerate(groups):
            suffix = "" if len(groups) == 1 else f" ({n + 1}/{len(groups)})"
            yield self.build(keep, self.title + suffix)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int = 6) -> FittedTable:
    return FittedTable(title, columns, rows, digits)


ProgressCallback = Callable[[str, int, int], None]


@contextlib.contextmanager
def progress_reporter(*, transient: bool = True) -> Iterator[ProgressCallback]:
    """A Rich progress display on stderr, one bar per label: yields ``progress(label, done, total)``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=transient) as bar:
        tasks: dict[str, Any] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        yield progress
