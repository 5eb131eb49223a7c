"""Running ``sanbos serve`` for tests: a real server process on loopback, stopped by its own handle."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


class Server:
    """``sanbos serve --port 0`` as a child process; ``url`` once started.

    Stopped (terminate, then kill) through its own Popen handle, never by name.
    """

    def __init__(self, registry: Path, fabric: Path | None = None, log: Path | None = None,
                 extra: list[str] | None = None) -> None:
        self.registry, self.fabric, self.extra = registry, fabric, extra or []
        self.log = log or registry.with_suffix(".serve.log")
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> "Server":
        cmd = [sys.executable, "-m", "console.cli", "serve", "--host", "127.0.0.1", "--port", "0",
               "--registry", str(self.registry)]
        cmd += ["--fabric", str(self.fabric)] if self.fabric else ["--no-disk-check"]
        cmd += self.extra
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=logf, text=True, env=env)
        logf.close()
        sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline and "://" not in line:
            if self.proc.poll() is not None:
                break
            if sel.select(timeout=0.2):
                line = self.proc.stdout.readline()
        sel.close()
        if "://" not in line:
            self.stop()
            raise RuntimeError(f"sanbos serve did not start: {line!r}\n{self.log.read_text()[-3000:]}")
        self.url = line.split(" on ", 1)[1].split("/ ", 1)[0].rstrip("/")
        # wait until it answers
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/v1/health", timeout=2, verify=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"sanbos serve at {self.url} does not answer\n{self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL by PID: no graceful shutdown at all."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console.cli", *args], cwd=ROOT, input=input,
                          capture_output=True, text=True, timeout=60)


def login(url: str, name: str, password: str) -> tuple[httpx.Client, str]:
    """An httpx client holding a session, and its CSRF token."""
    c = httpx.Client(base_url=url, timeout=30)
    r = c.post("/api/login", json={"name": name, "password": password})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf_token"]
