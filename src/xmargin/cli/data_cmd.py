"""``xmargin data``: download the market history from its publishers.

``xmargin data fetch`` calls :func:`xmargin.market.fetch.fetch_all` and writes the data
directory layout of :mod:`xmargin.config` (default: the user cache,
``$XDG_CACHE_HOME/xmargin/data``), showing a progress bar and then a table of the files
written.  Sources can be redirected (mirrors, tests) with the environment variables
``XMARGIN_FETCH_BASE_URL_TREASURY``, ``XMARGIN_FETCH_BASE_URL_FRED`` and
``XMARGIN_FETCH_BASE_URL_FISCALDATA`` (scheme and host, e.g. ``http://127.0.0.1:8000``).
Errors print their message and exit with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from xmargin.cli.common import progress_reporter
from xmargin.config import user_cache_dir
from xmargin.errors import XMarginError

data_app = typer.Typer(
    help="Market data: download Treasury par yields, SOFR, fed funds and auction results.",
    no_args_is_help=True,
)


@data_app.callback()
def _data() -> None:
    """Market data: download Treasury par yields, SOFR, fed funds and auction results."""


@data_app.command("fetch")
def fetch(
    dest: Annotated[
        Path | None,
        typer.Option("--dest", help="Directory to write (default: the user cache, $XDG_CACHE_HOME/xmargin/data)."),
    ] = None,
    start_year: Annotated[int, typer.Option("--start-year", min=1900, help="First calendar year to fetch.")] = 1990,
    end_year: Annotated[
        int | None, typer.Option("--end-year", min=1900, help="Last calendar year (default: this year).")
    ] = None,
) -> None:
    """Download par yields, SOFR, DFF and auction results from their publishers.

    Sources: home.treasury.gov (par yield curve), FRED (SOFR, DFF), Treasury's Fiscal Data API (auction results).  Files are replaced only once every download has succeeded.
    """
    target = dest.expanduser() if dest is not None else user_cache_dir()
    out = Console()
    err = Console(stderr=True)
    try:
        with progress_reporter(transient=False) as progress:
            from xmargin.market.fetch import (
                fetch_all,  # here: urllib and the readers are slow to import
            )

            report = fetch_all(target, start_year=start_year, end_year=end_year, progress=progress)
    except (XMarginError, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None

    table = Table(title=f"Market data written to {report.dest}")
    table.add_column("File")
    table.add_column("Rows", justify="right")
    table.add_column("First date")
    table.add_column("Last date")
    for f in report.files:
        table.add_row(str(f.path.relative_to(report.dest)), f"{f.rows:,}", f.first_date.isoformat(), f.last_date.isoformat())
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
