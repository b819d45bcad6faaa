"""The record files: rows appended round by round, marked by checkpoints, cut back on resume."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pandas as pd
import pytest

import pwfl.checkpoint
import pwfl.records
from pwfl.callbacks import RoundRecord
from pwfl.checkpoint import CHECKPOINT_FILE, Checkpointer, load_checkpoint
from pwfl.config import load_config
from pwfl.errors import PwflError
from pwfl.records import RunRecorder, csv_text, rows_from_csv
from pwfl.runner import run_experiment
from pwfl.schema import CLIENTS, ROUNDS, SERVER, TABLES, is_empty

from .conftest import CONFIGS, ROOT

HOST = ("_wall_s", "_measured_s")
"""Columns measured on the host: they change from run to run."""


def _round(r: int, evaluated: bool = False) -> RoundRecord:
    """One round's rows of two weight sets, with the cells that make CSV writers slip:
    counts that some rows lack (from round 3 on only), NaN, float32 and numpy scalars,
    flags that some rows lack, a note holding a comma, a quote and a line break, and a
    note that reads like pandas' NA."""
    record = RoundRecord(r)
    for ws in range(2):
        record.rounds.append(
            ROUNDS.row(
                strategy="pwfl",
                seed=0,
                round=r,
                weight_set=str(ws),
                status="ok",
                accuracy=float(np.float32(0.1 * r + 0.01 * ws)),
                loss=math.nan if r == 2 else 0.1 + 0.2,
                num_clients=np.int64(2),
                bytes_up=91_860 * r,
                idle_s=1e-5 * r,
                elapsed_wall_s=0.5 * r,
            )
        )
        record.clients.append(
            CLIENTS.row(
                strategy="pwfl",
                seed=0,
                round=r,
                sent_round=r,
                phase="train",
                client=ws,
                weight_set=str(ws),
                attempt=0,
                num_examples=160,
                loss=np.float32(2.31742),
                status="failed" if ws else "ok",
                aggregated=np.bool_(not ws),
                error='bad, "worse"\nsecond line' if ws else None,
                staleness=0,
                bytes_down=45_930,
                bytes_up=0 if ws else 45_930,
                rtt_s=1.366758688 * r,
            )
        )
        record.server.append(
            SERVER.row(
                strategy="pwfl",
                seed=0,
                round=r,
                weight_set=str(ws),
                busy_start_s=1.0 * r,
                busy_end_s=1.0 * r + 0.1,
            )
        )
    if evaluated:  # an evaluation message: no bytes, no flags, no staleness
        record.clients.append(
            CLIENTS.row(
                strategy="pwfl",
                seed=0,
                round=r,
                phase="evaluate",
                client=3,
                weight_set="0",
                num_examples=40,
                accuracy=0.75,
                status="NA",
            )
        )
    return record


def _rows(records: list[RoundRecord], table: str) -> list[dict]:
    return [row for record in records for row in getattr(record, table)]


def test_appended_files_are_a_rewrite_of_every_row(tmp_path):
    records = [_round(r, evaluated=r >= 3) for r in range(1, 6)]
    recorder = RunRecorder(tmp_path)
    for record in records:
        recorder.on_round_end(record)
    for table, attr in ((ROUNDS, "rounds"), (CLIENTS, "clients"), (SERVER, "server")):
        written = (tmp_path / table.file).read_bytes()
        assert written == csv_text(table, _rows(records, attr), header=True).encode()
    # Where pandas' own inference keeps every column's type whatever the rows (no count
    # column with an empty cell), the file is byte for byte the old writer's rewrite.
    for table, attr in ((ROUNDS, "rounds"), (SERVER, "server")):
        old = pd.DataFrame(_rows(records, attr), columns=table.names).to_csv(index=False)
        assert (tmp_path / table.file).read_bytes() == old.encode()
    # Elsewhere pandas reads the same frame from both: only "160" versus "160.0" differ.
    old = pd.DataFrame(_rows(records, "clients"), columns=CLIENTS.names).to_csv(index=False)
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / CLIENTS.file), pd.read_csv(io.StringIO(old)), check_exact=True
    )
    # The rows read back are the values written: floats exact, an empty cell None.
    back = rows_from_csv(CLIENTS, (tmp_path / CLIENTS.file).read_text())
    assert len(back) == len(_rows(records, "clients"))
    for got, wrote in zip(back, _rows(records, "clients"), strict=True):
        for name in CLIENTS.names:
            if wrote[name] is None:
                assert got[name] is None, name
            else:
                assert got[name] == wrote[name] and not isinstance(got[name], np.generic), name


def test_the_committed_run_records_are_written_again_byte_for_byte():
    """Every run's CSV file under results/, read back to its values and written by
    this writer, is the committed file: the format is the one those runs were
    published in."""
    files = [p for p in sorted((ROOT / "results").rglob("*.csv")) if p.name in TABLES]
    assert files, "no committed run records under results/"
    for path in files:
        text, table = path.read_text(), TABLES[path.name]
        assert csv_text(table, rows_from_csv(table, text), header=True) == text, path


def test_a_row_without_its_tables_columns_is_refused(tmp_path):
    with pytest.raises(ValueError, match="rounds.csv does not hold its columns"):
        RunRecorder(tmp_path).on_round_end(RoundRecord(1, rounds=[{"round": 1}]))


class _Engine:
    """A run whose state is the same size after every round (the records' part alone
    changes)."""

    checkpoint_round = 0

    def checkpoint_state(self):
        return {"sim_time_s": 1.0}, {"weights/0/w": np.zeros(64, dtype=np.float32)}

    def quiet(self) -> bool:
        return True


def test_bytes_written_per_round_do_not_grow_with_the_round(tmp_path, monkeypatch):
    written: list[int] = []
    for name in ("_append", "_atomic_write"):
        real = getattr(pwfl.records, name)

        def counted(path, data, real=real):
            if path.name in TABLES:
                written[-1] += len(data)
            real(path, data)

        monkeypatch.setattr(pwfl.records, name, counted)
    rounds = 150
    cfg = load_config(None, [f"strategy.num_rounds={rounds}", "checkpoint.every=1"])
    recorder = RunRecorder(tmp_path)
    checkpointer = Checkpointer(tmp_path / CHECKPOINT_FILE, cfg, "pwfl", _Engine(), recorder)
    sizes = []
    for r in range(1, rounds + 1):
        written.append(0)
        record = _round(1, evaluated=True)  # the same rows every round
        record.server_round = r
        recorder.on_round_end(record)
        checkpointer.on_round_end(record)
        sizes.append((tmp_path / CHECKPOINT_FILE).stat().st_size)
    assert len(set(written[1:])) == 1  # each round writes its own rows, no more
    # The checkpoint grows only by the digits of its marks, far less than by one
    # round's rows (what a checkpoint holding the rows grows by every round).
    assert sizes[-1] - sizes[1] < written[1] / 4
    marks = load_checkpoint(tmp_path / CHECKPOINT_FILE).files
    assert marks[ROUNDS.file].rows == 2 * rounds
    assert marks[CLIENTS.file].size == (tmp_path / CLIENTS.file).stat().st_size


def test_a_resume_cuts_the_files_back_to_the_checkpoints_marks(tmp_path):
    records = [_round(r, evaluated=r == 3) for r in range(1, 5)]
    whole = tmp_path / "whole"
    uninterrupted = RunRecorder(whole)
    for record in records:
        uninterrupted.on_round_end(record)

    killed = tmp_path / "killed"
    first = RunRecorder(killed)
    for record in records[:2]:
        first.on_round_end(record)
    marks = first.marks()  # the checkpoint of round 2
    first.on_round_end(records[2])  # round 3 written, its checkpoint never was
    with (killed / CLIENTS.file).open("a") as handle:
        handle.write("pwfl,0,4,4,train,")  # and a row of round 4 cut short by the kill

    resumed = RunRecorder(killed)
    resumed.restore(marks)
    for table in TABLES.values():
        assert (killed / table.file).stat().st_size == marks[table.file].size
    assert resumed.marks() == marks
    for record in records[2:]:
        resumed.on_round_end(record)
    for table in TABLES.values():
        assert (killed / table.file).read_bytes() == (whole / table.file).read_bytes()
    assert resumed.marks() == uninterrupted.marks()
    # The summary's rows: those read back from the files, then the new ones.
    for attr in ("rounds", "server"):
        got, wrote = getattr(resumed, attr), getattr(uninterrupted, attr)
        assert len(got) == len(wrote)
        for a, b in zip(got, wrote, strict=True):
            assert all((is_empty(a[k]) and is_empty(b[k])) or a[k] == b[k] for k in a), (a, b)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "fewer than the"),
        (lambda p: p.write_bytes(p.read_bytes().replace(b"pwfl", b"PWFL", 1)), "not the file"),
        (lambda p: p.unlink(), "is missing"),
    ],
    ids=["shorter", "changed", "missing"],
)
def test_files_unlike_the_checkpoints_are_one_clear_error(tmp_path, damage, message):
    recorder = RunRecorder(tmp_path)
    for r in (1, 2):
        recorder.on_round_end(_round(r))
    marks = recorder.marks()
    recorder.on_round_end(_round(3))
    damage(tmp_path / ROUNDS.file)
    with pytest.raises(PwflError, match=f"{message}.*pwfl run --overwrite"):
        RunRecorder(tmp_path).restore(marks)
    # No file is cut unless all of them match.
    assert (tmp_path / CLIENTS.file).stat().st_size == recorder.marks()[CLIENTS.file].size
    with pytest.raises(PwflError, match="no mark for rounds.csv"):
        RunRecorder(tmp_path).restore({CLIENTS.file: marks[CLIENTS.file]})


class _Killed(BaseException):
    """The process dies (SIGKILL): nothing after this point runs."""


def _cells(path) -> list[list[str]]:
    """A CSV file's cells as text, those measured on the host blanked."""
    rows = list(csv.reader(path.open()))
    host = [i for i, name in enumerate(rows[0]) if name.endswith(HOST)]
    return [[("" if i in host else cell) for i, cell in enumerate(row)] for row in rows]


def _repeatable(summary: dict) -> dict:
    return {
        k: _repeatable(v) if isinstance(v, dict) else v
        for k, v in summary.items()
        if "wall" not in k and k != "provenance"
    }


def test_a_run_killed_between_its_rows_and_its_checkpoint_resumes_to_the_same_files(
    tmp_path, monkeypatch
):
    tiny = CONFIGS / "tiny.toml"
    cfg = load_config(tiny, ["strategy.num_rounds=4", "checkpoint.every=1"])
    killed = tmp_path / "killed"
    real = pwfl.checkpoint.save_checkpoint

    def dies_at_round_3(path, ckpt):
        if ckpt.round == 3:
            raise _Killed
        real(path, ckpt)

    monkeypatch.setattr(pwfl.checkpoint, "save_checkpoint", dies_at_round_3)
    with pytest.raises(_Killed):
        run_experiment(cfg, killed, quiet=True)
    monkeypatch.undo()
    ckpt = load_checkpoint(killed / CHECKPOINT_FILE)
    assert ckpt.round == 2
    on_disk = pd.read_csv(killed / ROUNDS.file)
    assert on_disk["round"].max() == 3  # round 3's rows were written before the kill
    run_experiment(ckpt.config, killed, quiet=True, label=ckpt.label, resume=ckpt)

    full = tmp_path / "full"
    run_experiment(cfg, full, quiet=True)
    for table in TABLES.values():
        assert _cells(killed / table.file) == _cells(full / table.file), table.file
    assert pd.read_csv(killed / ROUNDS.file)["round"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    summaries = [json.loads((d / "summary.json").read_text()) for d in (killed, full)]
    assert _repeatable(summaries[0]) == _repeatable(summaries[1])
