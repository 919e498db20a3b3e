"""A pytest fork server for mutation runs: each test run forks a warm process.

Starting Python and importing NumPy, SciPy, QuantLib, SQLAlchemy, pytest and hypothesis takes
seconds on a loaded machine, and a mutation run starts pytest once per mutant.  The server
imports those third-party libraries once (never ``xmargin``: each run must import the mutated
source from disk) and forks a child per request that runs ``pytest.main(args)`` in the given
folder; the client is a bare Python process that forwards the arguments and exits with
pytest's status.  A child that runs past the request's timeout is killed (status 124).

    python tools/pytest_forkserver.py serve SOCKET          # in the background
    python tools/pytest_forkserver.py run SOCKET TIMEOUT -- pytest args...

Used by ``tools/mutation.py`` as cosmic-ray's test command; not part of the package.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

PRELOAD = ("numpy", "scipy", "scipy.sparse", "scipy.optimize", "scipy.stats", "QuantLib", "sqlalchemy", "httpx",
           "pytest", "hypothesis", "hypothesis.strategies", "fastapi", "pydantic", "typer", "rich")


def serve(path: str) -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            req = json.loads(_read(conn))
            if req.get("stop"):
                return
            rc = _run(req["cwd"], req["args"], float(req["timeout"]), srv)
            conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")


def _read(conn: socket.socket) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def _run(cwd: str, args: list[str], timeout: float, srv: socket.socket) -> int:
    pid = os.fork()
    if pid == 0:  # the child: a fresh import of xmargin from disk, then pytest
        srv.close()
        os.setsid()
        os.chdir(cwd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        import pytest

        try:
            rc = int(pytest.main(args))
        except BaseException:  # noqa: BLE001 - any crash of the run is a failed run
            rc = 3
        os._exit(rc)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 125
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return 124
        time.sleep(0.02)


def run(path: str, timeout: float, args: list[str]) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(json.dumps({"cwd": os.getcwd(), "args": args, "timeout": timeout}).encode() + b"\n")
        return int(json.loads(_read(s))["rc"])


def stop(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(b'{"stop": true}\n')


if __name__ == "__main__":
    cmd, sock = sys.argv[1], sys.argv[2]
    if cmd == "serve":
        serve(sock)
    elif cmd == "stop":
        stop(sock)
    else:
        rest = sys.argv[4:]
        sys.exit(run(sock, float(sys.argv[3]), rest[1:] if rest[:1] == ["--"] else rest))
