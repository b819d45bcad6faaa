"""Callbacks a strategy calls at the end of each round: records, progress display."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class RoundRecord:
    """What one round adds to the run's tables."""

    server_round: int
    rounds: list[dict[str, Any]] = field(default_factory=list)
    """``rounds.csv`` rows: one per weight set (and ``merged``)."""
    clients: list[dict[str, Any]] = field(default_factory=list)
    """``clients.csv`` rows: one per message sent."""
    server: list[dict[str, Any]] = field(default_factory=list)
    """``server.csv`` rows: the server's aggregation intervals on the simulated clock."""


class Callback(Protocol):
    """Something that watches a run round by round."""

    def on_round_end(self, record: RoundRecord) -> None:
        """Called once per round with that round's rows."""

    def on_run_end(self) -> None:
        """Called once after the last round."""


class Progress:
    """A progress bar on stderr with the latest accuracy of every weight set."""

    def __init__(self, total_rounds: int, label: str, done: int = 0):
        from tqdm import tqdm

        self._bar = tqdm(
            total=total_rounds,
            initial=done,
            desc=label,
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
        self._bar.close()
