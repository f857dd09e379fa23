"""The run's tables (Parquet): per-frame measurements, one part per pullback written
atomically beside its results folder and joined into one table at the end of a run, and the
failures table (one row per file that could not be analysed, with its reason)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine.fleet.features import FRAME_COLUMNS

FRAME_SCHEMA = pa.schema([(name, getattr(pa, kind)()) for name, kind in FRAME_COLUMNS.items()])
FAILURE_SCHEMA = pa.schema([("source", pa.string()), ("pullback_id", pa.string()), ("reason", pa.string())])


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_frame_part(out: Path, pullback_id: str, rows: list[dict]) -> Path:
    """``out/measurements/<pullback_id>.parquet`` from one pullback's frame rows."""
    path = out / "measurements" / f"{pullback_id}.parquet"
    _write_atomic(pa.Table.from_pylist(rows, schema=FRAME_SCHEMA), path)
    return path


def join_frame_parts(out: Path, pullback_ids: list[str]) -> Path:
    """``out/measurements.parquet``: the parts of ``pullback_ids`` (those that exist) in order."""
    parts = [out / "measurements" / f"{p}.parquet" for p in pullback_ids]
    tables = [pq.read_table(p, schema=FRAME_SCHEMA) for p in parts if p.exists()]
    table = pa.concat_tables(tables) if tables else FRAME_SCHEMA.empty_table()
    path = out / "measurements.parquet"
    _write_atomic(table, path)
    return path


def write_failures(out: Path, failures: list[dict]) -> Path:
    """``out/failures.parquet``: ``source``, ``pullback_id``, ``reason`` per failed file."""
    path = out / "failures.parquet"
    _write_atomic(pa.Table.from_pylist(failures, schema=FAILURE_SCHEMA), path)
    return path


def read_frames_table(path: Path) -> pa.Table:
    """A measurements table: a run folder (its ``measurements.parquet``) or a Parquet file."""
    path = Path(path)
    return pq.read_table(path / "measurements.parquet" if path.is_dir() else path)
