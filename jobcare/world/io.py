"""Reading and writing a world folder: Parquet tables, truth/ files and manifest.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from jobcare.errors import JobcareError

MANIFEST = "manifest.json"
TRUTH_DIR = "truth"


class WorldNotFoundError(JobcareError):
    """The folder is not a generated world (no manifest.json)."""


def write_table(df: pd.DataFrame, path: Path) -> str:
    """Write ``df`` as Parquet (timestamps in microseconds, UTC); return the file's sha256."""
    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.DatetimeTZDtype):
            df[c] = df[c].astype("datetime64[us, UTC]")
    table = pa.Table.from_pandas(df, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", row_group_size=1_000_000)
    return sha256(path)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(world: str | Path) -> dict:
    p = Path(world) / MANIFEST
    if not p.is_file():
        raise WorldNotFoundError(
            f"{world}: not a world folder (no {MANIFEST}); run `jobcare world generate` first"
        )
    return json.loads(p.read_text())


def read_table(world: str | Path, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one table of a world by name (``truth/...`` names read from the truth folder)."""
    p = Path(world) / f"{name}.parquet"
    if not p.is_file():
        raise WorldNotFoundError(f"{world}: table {name!r} missing ({p})")
    return pq.read_table(p, columns=columns).to_pandas()


def read_tables(world: str | Path, names: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Read the world's tables listed in its manifest (or ``names``)."""
    manifest = read_manifest(world)
    names = names or [n for n in manifest["tables"] if not n.startswith(TRUTH_DIR + "/")]
    return {n: read_table(world, n) for n in names}
