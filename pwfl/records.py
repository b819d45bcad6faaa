"""Run records: tidy CSV tables written atomically after every round.

``rounds.csv`` has one row per round and weight set, ``clients.csv`` one row per
client message, ``server.csv`` one row per aggregation interval on the simulated
clock; their columns are :mod:`pwfl.schema`'s. Every file is written to a
temporary name and renamed, so a run killed mid-write leaves the last good
version behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pwfl.callbacks import RoundRecord
from pwfl.errors import PwflError
from pwfl.schema import CLIENTS, ROUNDS, SERVER, Table


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays as ``.npz`` at ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(path: Path, table: Table, rows: list[dict[str, Any]]) -> None:
    """Write rows of ``table`` as CSV, atomically; every row holds exactly its columns."""
    for row in rows:
        if list(row) != table.names:
            raise ValueError(f"a row for {table.file} does not hold its columns: {sorted(row)}")
    frame = pd.DataFrame(rows, columns=table.names)
    atomic_write_text(path, frame.to_csv(index=False))


class RunRecorder:
    """Collects a run's rows and keeps its CSV files up to date."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.rounds: list[dict[str, Any]] = []
        self.clients: list[dict[str, Any]] = []
        self.server: list[dict[str, Any]] = []

    def restore(self, records: dict[str, list[dict[str, Any]]]) -> None:
        """Start from the rows a checkpoint saved (a resumed run), checked against the schema.

        Raises
        ------
        PwflError
            When a saved row does not hold its table's columns.
        """
        try:
            self.rounds = [ROUNDS.row(**row) for row in records.get("rounds", [])]
            self.clients = [CLIENTS.row(**row) for row in records.get("clients", [])]
            self.server = [SERVER.row(**row) for row in records.get("server", [])]
        except KeyError as err:
            raise PwflError(
                f"the checkpoint's records do not match this pwfl's tables ({err.args[0]}); "
                "start the run again with pwfl run --overwrite"
            ) from None

    def on_run_start(self, total_rounds: int, done: int) -> None:
        """Nothing to write before the first round."""

    def on_round_end(self, record: RoundRecord) -> None:
        """Append one round's rows and rewrite the CSV files."""
        self.rounds.extend(record.rounds)
        self.clients.extend(record.clients)
        self.server.extend(record.server)
        write_table(self.out_dir / ROUNDS.file, ROUNDS, self.rounds)
        write_table(self.out_dir / CLIENTS.file, CLIENTS, self.clients)
        write_table(self.out_dir / SERVER.file, SERVER, self.server)

    def on_run_end(self) -> None:
        """The files are complete after every round."""
