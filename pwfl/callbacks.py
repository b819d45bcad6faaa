"""Callbacks the round engine calls: at the start, after each round, at the end.

The records writer (:class:`pwfl.records.RunRecorder`), the checkpoints
(:class:`pwfl.checkpoint.Checkpointer`) and the progress bar below watch a run
this way; none of them is part of the round loop.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class RoundRecord:
    """What one round adds to the run's tables (rows built by :mod:`pwfl.schema`)."""

    server_round: int
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """``rounds.csv`` rows: one per weight set of the round (and ``merged``)."""
    clients: list[dict[str, Any]] = field(default_factory=list)
    """``clients.csv`` rows: one per message sent."""
    server: list[dict[str, Any]] = field(default_factory=list)
    """``server.csv`` rows: the server's aggregation intervals on the simulated clock."""


class Callback(Protocol):
    """Something that watches a run round by round."""

    def on_run_start(self, total_rounds: int, done: int) -> None:
        """Called once before the first round: rounds the records will hold, rounds
        already done (a resumed run)."""

    def on_round_end(self, record: RoundRecord) -> None:
        """Called once per round of the records with that round's rows."""

    def on_run_end(self) -> None:
        """Called once after the last round."""


class Progress:
    """A progress bar on stderr with the latest accuracy of every weight set."""

    def __init__(self, label: str):
        self.label = label
        self._bar: Any = None

    def on_run_start(self, total_rounds: int, done: int) -> None:
        """Open the bar."""
        from tqdm import tqdm

        self._bar = tqdm(
            total=total_rounds,
            initial=done,
            desc=self.label,
            unit="round",
            file=sys.stderr,
            leave=True,
            dynamic_ncols=True,
        )

    def on_round_end(self, record: RoundRecord) -> None:
        """Advance one round and show the accuracies."""
        accs = " ".join(f"{r['weight_set']}:{r['accuracy']:.3f}" for r in record.rounds)
        self._bar.set_postfix_str(f"acc {accs}")
        self._bar.update(1)

    def on_run_end(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
