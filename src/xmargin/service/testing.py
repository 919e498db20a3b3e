"""A real ``xmargin serve`` process on loopback, for tests and benchmarks.

:class:`ServerProcess` starts ``python -m xmargin.cli.serve_cmd serve --port 0 ...`` (the OS
picks a free port; the server names it when ready), waits for ``/api/v1/ready``, reads the
keys it wrote (``--write-keys``, mode 0600) and stops the process (SIGINT, then SIGKILL) on
exit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

READY_LINE = re.compile(r"dashboard\s+http://[^\s/]+:(\d+)/")
KEY_LINE = re.compile(r"^  (\S+)\s+(admin|member)\s+(xmk_\S+)$", re.M)


class ServerProcess:
    """See the module docstring.  ``workdir`` holds the ledger, the keys and the log."""

    def __init__(self, workdir: Path, *, data_dir: Path | None = None, members: int = 2, customers: int = 20,
                 extra: list[str] | None = None, timeout: float = 120.0, ledger: str | None = None,
                 write_keys: bool = True) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.ledger = ledger or f"sqlite:///{self.workdir / 'ledger.db'}"
        self.keys_path = self.workdir / "keys.json"
        self.log_path = self.workdir / "serve.log"
        self.args = ["--members", str(members), "--customers", str(customers), *(extra or [])]
        self.write_keys = write_keys
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.keys: dict[str, str] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ledger_head(self) -> tuple[int, str]:
        """``(sequence, hash)`` of the server's last ledger entry: unchanged means nothing written."""
        from xmargin.ledger import Ledger

        with Ledger(self.ledger, create=False) as lg:
            return lg.head()

    @property
    def api(self) -> str:
        return self.base_url + "/api/v1"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "xmargin.cli.serve_cmd", "serve", "--host", "127.0.0.1", "--port", "0",
               "--ledger", self.ledger, *self.args]
        if self.write_keys and "--keys" not in self.args:
            if self.keys_path.exists():
                cmd += ["--keys", str(self.keys_path)]
            else:
                cmd += ["--write-keys", str(self.keys_path)]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        return cmd

    def start(self) -> ServerProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.port = None
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.workdir)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xmargin serve exited with {self.proc.returncode}:\n{self.log()}")
            if self.port is None:
                m = READY_LINE.search(self.log())
                if m:
                    self.port = int(m.group(1))
            if self.port is not None and self._ready():
                break
            time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError(f"xmargin serve not ready within {self.timeout:.0f} s:\n{self.log()}")
        if self.write_keys:
            data = json.loads(self.keys_path.read_text())
            self.keys = {k["name"]: k["key"] for k in data["keys"] if "key" in k}
        else:  # printed on standard output at start-up
            self.keys = {name: key for name, _, key in KEY_LINE.findall(self.log())}
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.api + "/ready", timeout=2) as resp:  # noqa: S310 - loopback
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        """What this run of the server wrote (stdout and stderr)."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(getattr(self, "_offset", 0))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self._log.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def headers(self, name: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[name]}

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def info(self) -> dict[str, Any]:
        return {"url": self.base_url, "ledger": self.ledger, "keys": sorted(self.keys)}


class StreamListener(threading.Thread):
    """Reads one ``/stream`` (server-sent events) until told to stop; keeps the ``(event, data)``
    pairs in arrival order, notifying ``got`` on each (tests only: needs ``httpx``)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.hello = threading.Event()
        self.got = threading.Condition()
        self.stop = False
        self.status: int | None = None

    def run(self) -> None:
        import httpx

        try:
            with httpx.Client(timeout=httpx.Timeout(30, read=60)) as c, \
                    c.stream("GET", self.url, headers=self.headers) as r:
                self.status = r.status_code
                self._read(r.iter_lines())
        except httpx.HTTPError:  # the server went away (a restart test stops it)
            pass

    def _read(self, lines: Any) -> None:
        event, data = "message", []
        for line in lines:
            if self.stop:
                return
            if line == "":
                if data:
                    with self.got:
                        self.events.append((event, json.loads("\n".join(data))))
                        self.got.notify_all()
                    if event == "hello":
                        self.hello.set()
                event, data = "message", []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())

