"""Run records: tidy CSV tables, each round's rows appended to the files.

``rounds.csv`` has one row per round and weight set, ``clients.csv`` one row per
client message, ``server.csv`` one row per aggregation interval on the simulated
clock; their columns are :mod:`pwfl.schema`'s. Each column is written in the
format of its schema type whatever the other rows hold, so a round's rows are
appended and the rows before them never change: writing a round costs its own
rows, not the run's.

A file's first write (its header and the first round's rows) goes to a
temporary name and is renamed, so a fresh run replaces an earlier run's file in
one step. A checkpoint does not copy the rows: it stores each file's
:class:`FileMark` (rows, bytes and digest of the part that belongs to its
state), and a resumed run cuts each file back to that mark before it appends,
so rows of a round after the checkpoint, written before a kill, are not kept
twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pwfl.callbacks import RoundRecord
from pwfl.errors import PwflError
from pwfl.schema import CLIENTS, COUNT, FLAG, FLOAT, INT, NOTE, ROUNDS, SERVER, TABLES, TEXT, Table

ENCODING = "utf-8"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append(path: Path, data: bytes) -> None:
    # One write of a round's bytes at the end of the file; a kill that cuts it short
    # leaves a tail that a resume cuts off (it lies past the checkpoint's mark).
    with path.open("ab") as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    _atomic_write(path, text.encode(ENCODING))


def atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save arrays as ``.npz`` at ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            # NumPy's stubs match a ``**dict`` against savez's own allow_pickle keyword too;
            # these keys are array names.
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# The pandas dtype each schema type is written from. Numbers are cast so that a
# cell's text depends on its own value only: pandas would otherwise infer a
# column's dtype from all the rows written together (a count column with one empty
# cell turns float, ``160`` becoming ``160.0``), and an appended row could then be
# formatted unlike the rows before it. Text and flags are written as given.
_WRITTEN_AS = {INT: "int64", COUNT: "Int64", FLOAT: "float64"}


def csv_text(table: Table, rows: list[dict[str, Any]], header: bool = False) -> str:
    """``rows`` of ``table`` as CSV lines (with the header line first when ``header``).

    Raises
    ------
    ValueError
        When a row does not hold exactly the table's columns, in order.
    """
    for row in rows:
        if list(row) != table.names:
            raise ValueError(f"a row for {table.file} does not hold its columns: {sorted(row)}")
    frame = pd.DataFrame(rows, columns=table.names)
    for column in table.columns:
        if column.dtype in _WRITTEN_AS:
            frame[column.name] = frame[column.name].astype(_WRITTEN_AS[column.dtype])
    return frame.to_csv(index=False, header=header)


def _read_types(table: Table) -> dict[str, str]:
    """How :func:`rows_from_csv` reads each column back: text as text, the rest as written."""
    read = {TEXT: "str", NOTE: "str", FLAG: "boolean", **_WRITTEN_AS}
    return {c.name: read[c.dtype] for c in table.columns}


def _native(value: Any) -> Any:
    if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def rows_from_csv(table: Table, text: str) -> list[dict[str, Any]]:
    """The rows of a CSV text written by :func:`csv_text` (header included), as the
    writer was given them: Python values, ``None`` for an empty cell.

    pandas reads every float back to the value written (its parser rounds exactly).
    """
    frame = pd.read_csv(
        io.StringIO(text),
        dtype=_read_types(table),
        keep_default_na=False,  # only an empty cell is empty: a note may read "NA"
        na_values={name: [""] for name in table.names},
    )
    if list(frame.columns) != table.names:
        raise ValueError(f"{table.file} does not have this pwfl's columns")
    return [
        {name: _native(value) for name, value in zip(table.names, values, strict=True)}
        for values in frame.itertuples(index=False, name=None)
    ]


@dataclass(frozen=True)
class FileMark:
    """How far a record file belongs to a checkpointed state: its first ``rows`` rows,
    ``size`` bytes (header included) whose SHA-256 is ``sha256``."""

    rows: int
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """The mark as a checkpoint stores it."""
        return {"rows": self.rows, "bytes": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, value: Any) -> FileMark:
        """A mark read back from a checkpoint (``KeyError``/``TypeError`` when malformed)."""
        return cls(int(value["rows"]), int(value["bytes"]), str(value["sha256"]))


class RecordFile:
    """One CSV record file that rows are appended to, and how much of it is written."""

    def __init__(self, path: Path, table: Table):
        self.path = path
        self.table = table
        self.rows = 0
        self.size = 0
        self._digest = hashlib.sha256()
        self._started = False

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows``; the first call writes the header and replaces any earlier file."""
        data = csv_text(self.table, rows, header=not self._started).encode(ENCODING)
        if self._started:
            _append(self.path, data)
        else:
            _atomic_write(self.path, data)
            self._started = True
        self.rows += len(rows)
        self.size += len(data)
        self._digest.update(data)

    def mark(self) -> FileMark:
        """Where the file stands now."""
        return FileMark(self.rows, self.size, self._digest.hexdigest())

    def kept(self, mark: FileMark) -> str:
        """The text of the file up to ``mark``, checked against it.

        Raises
        ------
        PwflError
            When the file is missing, shorter than the mark, or its first bytes
            are not the ones the checkpoint was written with.
        """
        fix = "start the run again with pwfl run --overwrite"
        if not self.path.is_file():
            raise PwflError(f"'{self.path}' is missing but the checkpoint needs it; {fix}")
        with self.path.open("rb") as handle:
            kept = handle.read(mark.size)
        if len(kept) < mark.size:
            raise PwflError(
                f"'{self.path}' holds {len(kept)} bytes, fewer than the {mark.size} the "
                f"checkpoint was written after; {fix}"
            )
        if hashlib.sha256(kept).hexdigest() != mark.sha256:
            raise PwflError(
                f"'{self.path}' is not the file the checkpoint was written with "
                f"(its first {mark.size} bytes differ); {fix}"
            )
        text = kept.decode(ENCODING)
        rows = sum(1 for _ in csv.reader(io.StringIO(text))) - 1 if text else 0
        if rows != mark.rows:
            raise PwflError(
                f"'{self.path}' holds {rows} rows where the checkpoint says {mark.rows}; {fix}"
            )
        return text

    def cut_back(self, mark: FileMark, text: str) -> None:
        """Cut the file back to ``mark``, whose ``text`` :meth:`kept` returned, and
        append after it from now on (a resume)."""
        os.truncate(self.path, mark.size)
        self.rows, self.size, self._started = mark.rows, mark.size, bool(text)
        self._digest = hashlib.sha256(text.encode(ENCODING))


class RunRecorder:
    """Appends each round's rows to the run's CSV files.

    ``rounds`` and ``server`` keep the rows of those two (small) tables for the
    run's summary; client rows are written and not kept.
    """

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.rounds: list[dict[str, Any]] = []
        self.server: list[dict[str, Any]] = []
        self.files = {
            name: RecordFile(self.out_dir / name, table) for name, table in TABLES.items()
        }

    def marks(self) -> dict[str, FileMark]:
        """Each file's mark now (what a checkpoint stores)."""
        return {name: record.mark() for name, record in self.files.items()}

    def restore(self, marks: dict[str, FileMark]) -> None:
        """Continue the files a checkpoint marked: check each against its mark, then
        cut each back to it (no file is cut unless every one matches).

        Raises
        ------
        PwflError
            When a file is not the one the checkpoint was written with, or was
            written with other columns.
        """
        texts = {}
        for name, record in self.files.items():
            if name not in marks:
                raise PwflError(
                    f"the checkpoint holds no mark for {name}; start the run again with "
                    "pwfl run --overwrite"
                )
            texts[name] = record.kept(marks[name])
        for name, record in self.files.items():
            record.cut_back(marks[name], texts[name])
        try:
            self.rounds = rows_from_csv(ROUNDS, texts[ROUNDS.file]) if texts[ROUNDS.file] else []
            self.server = rows_from_csv(SERVER, texts[SERVER.file]) if texts[SERVER.file] else []
        except ValueError as err:
            raise PwflError(
                f"the run's records do not match this pwfl's tables ({err}); "
                "start the run again with pwfl run --overwrite"
            ) from None

    def on_run_start(self, total_rounds: int, done: int) -> None:
        """Nothing to write before the first round."""

    def on_round_end(self, record: RoundRecord) -> None:
        """Append one round's rows to the CSV files."""
        self.files[ROUNDS.file].append(record.rounds)
        self.files[CLIENTS.file].append(record.clients)
        self.files[SERVER.file].append(record.server)
        self.rounds.extend(record.rounds)
        self.server.extend(record.server)

    def on_run_end(self) -> None:
        """The files are complete after every round."""
