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


ROW_GROUP = 1_000_000


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """A pandas frame as an Arrow table with timestamps in microseconds, UTC."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.timestamp("us", tz="UTC")))
    return table


def write_table(df: pd.DataFrame, path: Path) -> str:
    """Write ``df`` as Parquet (timestamps in microseconds, UTC); return the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(df), path, compression="zstd", row_group_size=ROW_GROUP)
    return sha256(path)


class TableStream:
    """Write a large table in chunks (each a pandas frame) without holding it whole."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = 0
        self._writer = None

    def write(self, df: pd.DataFrame) -> None:
        table = to_arrow(df)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
        self._writer.write_table(table, row_group_size=ROW_GROUP)
        self.rows += len(df)

    def close(self, empty: pd.DataFrame) -> str:
        """Finish the file (writing ``empty`` for its schema if nothing came); return its sha256."""
        if self._writer is None:
            self.write(empty)
        self._writer.close()
        return sha256(self.path)


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


def read_table(
    world: str | Path, name: str, columns: list[str] | None = None, categories: bool = False
) -> pd.DataFrame:
    """Read one table of a world by name (``truth/...`` names read from the truth folder). ``categories``:
    string columns as pandas categoricals (no Python string per row: the data contracts read 66M rows)."""
    p = Path(world) / f"{name}.parquet"
    if not p.is_file():
        raise WorldNotFoundError(f"{world}: table {name!r} missing ({p})")
    return pq.read_table(p, columns=columns).to_pandas(strings_to_categorical=categories)


def read_tables(world: str | Path, names: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Read the world's tables listed in its manifest (or ``names``)."""
    manifest = read_manifest(world)
    names = names or [n for n in manifest["tables"] if not n.startswith(TRUTH_DIR + "/")]
    return {n: read_table(world, n) for n in names}
