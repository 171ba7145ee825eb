"""Run `bentoml serve serving.service:JobCare` as a subprocess on 127.0.0.1 (tests and the load benchmark).

The server's output goes to a log file: an unread pipe fills up and blocks the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from jobcare.errors import JobcareError

ROOT = Path(__file__).resolve().parents[1]


class ServerStartError(JobcareError):
    """`bentoml serve` exited or did not become ready in time."""


@dataclass
class Server:
    proc: subprocess.Popen
    base_url: str
    log_path: Path

    def stop(self, timeout: float = 30.0) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(config: Path, log_path: Path, env: dict | None = None, ready_timeout: float = 300.0) -> Server:
    """Start the service with ``JOBCARE_CONFIG=config``; return once ``/readyz`` answers 200.

    Each server gets its own ``BENTOML_HOME`` (next to ``log_path``) unless ``env`` sets one: every
    `bentoml serve` start empties ``$BENTOML_HOME/prometheus_multiproc_dir``, so two services sharing it
    (two tests, a test and a benchmark) would zero each other's ``/metrics`` counters."""
    import httpx

    port = free_port()
    env = dict(env if env is not None else os.environ)
    env.setdefault("BENTOML_HOME", str(Path(log_path).parent / f"bentoml-home-{port}"))
    env |= {"JOBCARE_CONFIG": str(config), "OPENBLAS_NUM_THREADS": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bentoml",
                "serve",
                "serving.service:JobCare",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", Path(log_path))
    deadline = time.time() + ready_timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"bentoml serve exited: {Path(log_path).read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.stop()
    raise ServerStartError(f"bentoml serve did not become ready in {ready_timeout:.0f} s; log in {log_path}")
