"""Run records: tidy CSV tables written atomically after every round.

``rounds.csv`` has one row per round and weight set, ``clients.csv`` one row per
client message, ``server.csv`` one row per aggregation interval on the simulated
clock, ``summary.json`` the run's headline numbers. Every file is written
to a temporary name and renamed, so a run killed mid-write leaves the last good
version behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pwfl.callbacks import RoundRecord

ROUND_COLUMNS = [
    "strategy",
    "seed",
    "round",
    "weight_set",
    "status",
    "accuracy",
    "loss",
    "client_accuracy",
    "client_loss",
    "train_loss",
    "num_clients",
    "num_sent",
    "num_examples",
    "train_s",
    "aggregate_s",
    "round_wall_s",
    "wall_time_s",
    "round_sim_s",
    "sim_time_s",
    "idle_s",
    "bytes_down",
    "bytes_up",
]
CLIENT_COLUMNS = [
    "strategy",
    "seed",
    "round",
    "phase",
    "client",
    "weight_set",
    "attempt",
    "num_examples",
    "train_time_s",
    "loss",
    "accuracy",
    "status",
    "error",
    "straggler",
    "local_epochs",
    "bytes_down",
    "bytes_up",
    "download_s",
    "compute_s",
    "upload_s",
    "rtt_s",
    "offset_s",
    "sim_start_s",
    "sim_end_s",
]
SERVER_COLUMNS = ["strategy", "seed", "round", "weight_set", "busy_start_s", "busy_end_s"]


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


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Write rows as CSV with a fixed column order (extra keys kept at the end)."""
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c not in columns]
    frame = frame.reindex(columns=columns + extra)
    atomic_write_text(path, frame.to_csv(index=False))


class RunRecorder:
    """Collects round and client rows and keeps the run's files up to date."""

    def __init__(self, out_dir: str | Path, strategy: str, seed: int, target: float):
        self.out_dir = Path(out_dir)
        self.strategy = strategy
        self.seed = seed
        self.target = target
        self.rounds: list[dict[str, Any]] = []
        self.clients: list[dict[str, Any]] = []
        self.server: list[dict[str, Any]] = []
        self.stopped = ""
        """Why the run stopped early (empty when it ran all its rounds)."""

    def restore(self, records: dict[str, list[dict[str, Any]]]) -> None:
        """Start from the rows a checkpoint saved (a resumed run)."""
        self.rounds = list(records.get("rounds", []))
        self.clients = list(records.get("clients", []))
        self.server = list(records.get("server", []))

    def on_round_end(self, record: RoundRecord) -> None:
        """Append one round's rows and rewrite the CSV files."""
        tag = {"strategy": self.strategy, "seed": self.seed}
        self.rounds.extend({**tag, **row} for row in record.rounds)
        self.clients.extend({**tag, **row} for row in record.clients)
        self.server.extend({**tag, **row} for row in record.server)
        write_csv(self.out_dir / "rounds.csv", self.rounds, ROUND_COLUMNS)
        write_csv(self.out_dir / "clients.csv", self.clients, CLIENT_COLUMNS)
        write_csv(self.out_dir / "server.csv", self.server, SERVER_COLUMNS)

    def on_run_end(self) -> None:
        """Write ``summary.json`` from the rounds recorded."""
        from pwfl.analysis import idle_fraction, summarize_run

        rounds = pd.DataFrame(self.rounds)
        summary = summarize_run(rounds, self.target)
        if math.isnan(summary["idle_fraction"]) and self.server:  # async: no round barrier
            span = float(rounds["sim_time_s"].max())
            summary["idle_fraction"] = idle_fraction(pd.DataFrame(self.server), span)
        summary.update(strategy=self.strategy, seed=self.seed)
        if self.stopped:
            summary["stopped"] = self.stopped
        atomic_write_text(self.out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
