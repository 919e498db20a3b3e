"""Where the market data lives.

Order of precedence (first hit wins):

1. an explicit directory (``--data-dir`` on the command line);
2. the ``XMARGIN_DATA`` environment variable;
3. ``../shared/data`` beside the checkout (looked for above the current directory and above
   the installed package, so tests and CI find the shared real data);
4. the user cache filled by ``xmargin data fetch`` (``$XDG_CACHE_HOME/xmargin/data``, by
   default ``~/.cache/xmargin/data``).

The layout inside is the same everywhere: ``yields/par_yield_curve.csv``, ``sofr/sofr.csv``,
``fedfunds/dff.csv``, ``securities/auctions.csv`` and ``securities/fedinvest_prices_*.csv``.
"""

from __future__ import annotations

import os
from pathlib import Path

from xmargin.errors import MissingMarketDataError

PAR_YIELDS_FILE = Path("yields") / "par_yield_curve.csv"
SOFR_FILE = Path("sofr") / "sofr.csv"
FEDFUNDS_FILE = Path("fedfunds") / "dff.csv"
AUCTIONS_FILE = Path("securities") / "auctions.csv"
FEDINVEST_GLOB = "securities/fedinvest_prices_*.csv"


def file_stamp(path: Path) -> int:
    """Modification time of a data file, for caches: a rewritten file (``xmargin data fetch``)
    is read again; -1 when it does not exist."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xmargin" / "data"


def _shared_candidates() -> list[Path]:
    starts = [Path.cwd().resolve(), Path(__file__).resolve().parent]
    seen: list[Path] = []
    for start in starts:
        for parent in [start, *start.parents]:
            candidate = parent.parent / "shared" / "data"
            if candidate not in seen:
                seen.append(candidate)
    return seen


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory to read, by the precedence above.

    Raises :class:`MissingMarketDataError` naming every place looked at when none holds the
    par yield file.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not (path / PAR_YIELDS_FILE).is_file():
            raise MissingMarketDataError(
                f"--data-dir {path}: no {PAR_YIELDS_FILE} there (run 'xmargin data fetch --dest {path}')"
            )
        return path
    env = os.environ.get("XMARGIN_DATA")
    if env:
        path = Path(env).expanduser()
        if not (path / PAR_YIELDS_FILE).is_file():
            raise MissingMarketDataError(f"XMARGIN_DATA={env}: no {PAR_YIELDS_FILE} there")
        return path
    looked = []
    for candidate in [*_shared_candidates(), user_cache_dir()]:
        looked.append(str(candidate))
        if (candidate / PAR_YIELDS_FILE).is_file():
            return candidate
    raise MissingMarketDataError(
        "no market data found; looked in "
        + ", ".join(looked[-3:])
        + ". Run 'xmargin data fetch' to download it, or pass --data-dir / set XMARGIN_DATA."
    )
