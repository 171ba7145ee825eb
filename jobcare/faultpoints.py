"""Named points where a fault-injection test can stop a real process (``kill -9`` at a known moment).

Off unless ``JOBCARE_PAUSE_AT`` names the point (comma-separated names allowed) and ``JOBCARE_PAUSE_DIR``
a folder: on reaching the point the process writes ``<dir>/<point>.reached`` (its pid) and waits until
``<dir>/<point>.go`` exists, at most ``JOBCARE_PAUSE_TIMEOUT`` seconds (default 300), then goes on.
A test waits for the marker, kills the process or lets it continue; nothing else reads these variables.

Points: ``ranker_fit`` (a LambdaRank fit starts), ``registered`` (a version is registered, its digests
and alias not yet written), ``before_promotion`` (the gate has decided, the alias is not moved yet).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def pause_point(name: str) -> None:
    """Stop here if a test asked for this point (see the module docstring); a no-op otherwise."""
    wanted = os.environ.get("JOBCARE_PAUSE_AT")
    if not wanted or name not in wanted.split(","):
        return
    folder = Path(os.environ.get("JOBCARE_PAUSE_DIR", "."))
    folder.mkdir(parents=True, exist_ok=True)
    # written whole, then renamed: a watcher that sees the marker always reads the pid (a plain write_text
    # creates the file empty first, and a test read it in between once)
    tmp = folder / f".{name}.reached.{os.getpid()}"
    tmp.write_text(str(os.getpid()))
    os.replace(tmp, folder / f"{name}.reached")
    go = folder / f"{name}.go"
    deadline = time.monotonic() + float(os.environ.get("JOBCARE_PAUSE_TIMEOUT", "300"))
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
