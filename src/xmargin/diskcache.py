"""The on-disk cache of market contexts: build once per data and parameters, load in milliseconds.

What is slow to build and depends only on files and settings -- the securities master, the
market snapshot, the scenario sets, the SPAN calibration, the scenario P&L rows of a universe
-- is kept in one file per entry under the cache directory, keyed by

* the SHA-256 of the **contents** of the data files it was built from (not their times: a
  rewritten file with the same bytes hits, a changed byte misses),
* a hash of the parameters (canonical text of the settings) and
* the xmargin, Python and NumPy versions and this module's ``FORMAT``.

Entry file layout (``<namespace>-<key hash>.xmc``)::

    b"XMCACHE1" | header length (8 bytes, little endian) | header (JSON) | pickle | buffers

The header holds the full key, the lengths and offsets and the SHA-256 of everything after
it.  The pickle is written with protocol 5 and its NumPy arrays *out of band*: their bytes are
the ``buffers`` region (each aligned to 64 bytes), and on loading the file is memory-mapped and
the arrays are read-only views into the mapping.  So N processes loading the same entry share
one copy of the matrices in the page cache, never one copy each.

Trust: an entry is used only when its magic, its key and the SHA-256 of its contents agree;
anything else (a truncated file, a flipped bit, another version's entry, an unreadable pickle)
is rebuilt and rewritten.  Entries are written to a temporary file and renamed, so readers see
a whole entry or none.  Unpickling runs code chosen by whoever wrote the file, so the cache
directory is created 0700 and a directory that is not the user's own or that others may write
to is refused (the cache is then off).

Location (first that applies): ``$XMARGIN_CACHE_DIR`` (``off`` or empty: no cache),
``$XDG_CACHE_HOME/xmargin/context``, ``~/.cache/xmargin/context``.  Not bounded in size:
``xmargin cache clear`` (or deleting the directory) empties it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import pickle
import platform
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

FORMAT = "xmargin-cache/1"
MAGIC = b"XMCACHE1"
ENV = "XMARGIN_CACHE_DIR"
ALIGN = 64
T = TypeVar("T")

log = logging.getLogger("xmargin.cache")
_checksums: dict[tuple[str, int, int, int], str] = {}


def cache_dir() -> Path | None:
    """The cache directory (see the module docstring), or None when the cache is off."""
    env = os.environ.get(ENV)
    if env is not None:
        if env.strip() in ("", "off", "0", "none"):
            return None
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "xmargin" / "context"


def _usable(path: Path) -> bool:
    """Create ``path`` (0700) if needed; False if it is not a private directory of this user."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        log.warning("context cache %s unusable: %s", path, exc)
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        log.warning("context cache %s is not a private directory of this user: not used", path)
        return False
    return True


def file_checksum(path: Path) -> str:
    """SHA-256 of a file's contents ("missing" if absent), memoised per (path, size, mtime, inode)."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    memo = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    digest = _checksums.get(memo)
    if digest is None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        _checksums[memo] = digest
    return digest


def files_key(paths: Iterable[Path]) -> dict[str, str]:
    """``{path: checksum}`` of data files, for a key."""
    return {str(p): file_checksum(p) for p in paths}


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _full_key(namespace: str, key: Mapping[str, Any]) -> str:
    from xmargin import __version__

    return json.dumps({"format": FORMAT, "namespace": namespace, "xmargin": __version__,
                       "python": platform.python_version(), "numpy": np.__version__, "key": key},
                      sort_keys=True, separators=(",", ":"), default=str)


def entry_path(namespace: str, key: Mapping[str, Any], root: Path | None = None) -> Path | None:
    root = root if root is not None else cache_dir()
    if root is None:
        return None
    return root / f"{namespace}-{text_hash(_full_key(namespace, key))[:40]}.xmc"


def _pad(n: int) -> int:
    return (-n) % ALIGN


def write_entry(path: Path, full_key: str, obj: Any) -> None:
    """Write one entry atomically (temporary file, fsync, rename)."""
    buffers: list[pickle.PickleBuffer] = []
    body = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    offsets, pos = [], len(body) + _pad(len(body))
    for r in raws:
        offsets.append([pos, r.nbytes])
        pos += r.nbytes + _pad(r.nbytes)
    digest = hashlib.sha256()
    chunks: list[bytes | memoryview] = [body, b"\0" * _pad(len(body))]
    for r in raws:
        chunks += [r, b"\0" * _pad(r.nbytes)]
    for c in chunks:
        digest.update(c)
    header = json.dumps({"key": full_key, "pickle": len(body), "buffers": offsets, "size": pos,
                         "sha256": digest.hexdigest()}).encode()
    head_len = len(MAGIC) + 8 + len(header)
    header += b" " * _pad(head_len)  # the data starts aligned
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".xmc")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(MAGIC + len(header).to_bytes(8, "little") + header)
            for c in chunks:
                fh.write(c)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class CacheMiss(Exception):
    """The entry is absent, stale or corrupt (the message says which)."""


def read_entry(path: Path, full_key: str) -> Any:
    """The object of an entry, its arrays memory-mapped read-only; :class:`CacheMiss` otherwise."""
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < len(MAGIC) + 8:
                raise CacheMiss("truncated")
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise CacheMiss("absent") from None
    except (OSError, ValueError) as exc:
        raise CacheMiss(f"unreadable: {exc}") from None
    view = memoryview(mm)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        raise CacheMiss("not a cache entry")
    head_len = int.from_bytes(view[len(MAGIC): len(MAGIC) + 8], "little")
    start = len(MAGIC) + 8 + head_len
    try:
        header = json.loads(bytes(view[len(MAGIC) + 8: start]))
        if header["key"] != full_key:
            raise CacheMiss("another key")
        data = view[start:]
        if data.nbytes != header["size"]:
            raise CacheMiss("truncated")
        if hashlib.sha256(data).hexdigest() != header["sha256"]:
            raise CacheMiss("checksum mismatch")
        bufs = [data[o: o + n] for o, n in header["buffers"]]
        return pickle.loads(data[: header["pickle"]], buffers=bufs)
    except CacheMiss:
        raise
    except Exception as exc:  # noqa: BLE001 - any damage means: rebuild
        raise CacheMiss(f"corrupt: {type(exc).__name__}: {exc}") from None


def cached(namespace: str, key: Mapping[str, Any], build: Callable[[], T]) -> T:
    """The object cached under ``(namespace, key)``, or ``build()`` written there (see the module
    docstring).  With the cache off or unusable: ``build()``."""
    root = cache_dir()
    if root is None or not _usable(root):
        return build()
    path = entry_path(namespace, key, root)
    assert path is not None
    full = _full_key(namespace, key)
    try:
        return read_entry(path, full)  # type: ignore[no-any-return]
    except CacheMiss as why:
        if str(why) != "absent":
            log.warning("context cache entry %s %s: rebuilt", path.name, why)
    obj = build()
    try:
        write_entry(path, full, obj)
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        log.warning("context cache: could not write %s: %s", path.name, exc)
    return obj


def clear(root: Path | None = None) -> int:
    """Delete every entry; returns how many."""
    root = root if root is not None else cache_dir()
    if root is None or not root.is_dir():
        return 0
    n = 0
    for p in root.glob("*.xmc"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    for p in root.glob(".tmp-*.xmc"):
        with contextlib.suppress(OSError):
            p.unlink()
    return n


def entries(root: Path | None = None) -> list[tuple[str, int]]:
    """``(file name, bytes)`` of every entry."""
    root = root if root is not None else cache_dir()
    if root is None or not root.is_dir():
        return []
    return sorted((p.name, p.stat().st_size) for p in root.glob("*.xmc"))


__all__ = ["CacheMiss", "cache_dir", "cached", "clear", "entries", "file_checksum", "files_key", "read_entry",
           "text_hash", "write_entry"]


# ----------------------------------------------------------------------------- keys of the market data


def market_files_key(root: Path) -> dict[str, str]:
    """Checksums of the files a market snapshot and the scenario history are read from."""
    from xmargin.config import FEDFUNDS_FILE, PAR_YIELDS_FILE, SOFR_FILE

    return files_key([root / PAR_YIELDS_FILE, root / SOFR_FILE, root / FEDFUNDS_FILE])


def master_files_key(root: Path) -> dict[str, str]:
    """Checksums of the files the securities master is built from (the par curve derives coupons)."""
    from xmargin.config import AUCTIONS_FILE, FEDINVEST_GLOB, PAR_YIELDS_FILE

    return files_key([root / AUCTIONS_FILE, *sorted(root.glob(FEDINVEST_GLOB)), root / PAR_YIELDS_FILE])


def futures_files_key(path: Path | None) -> dict[str, str]:
    """Checksums of the futures price history the residual basis factors are read from (a file,
    or every ``*.csv`` of a directory, as :func:`xmargin.market.futures_history.load_futures_history`
    reads them); ``{}`` when there is none."""
    if path is None:
        return {}
    path = Path(path).resolve()
    return files_key(sorted(path.glob("*.csv")) if path.is_dir() else [path])
