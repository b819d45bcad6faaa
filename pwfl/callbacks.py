"""Callbacks a strategy calls at the end of each round: records, progress display."""

from __future__ import annotations

import sys
from typing import Any, Protocol


class Callback(Protocol):
    """Something that watches a run round by round."""

    def on_round_end(
        self, server_round: int, round_rows: list[dict[str, Any]], client_rows: list[dict[str, Any]]
    ) -> None:
        """Called once per round with that round's ``rounds.csv`` and ``clients.csv`` rows."""

    def on_run_end(self) -> None:
        """Called once after the last round."""


class Progress:
    """A progress bar on stderr with the latest accuracy of every weight set."""

    def __init__(self, total_rounds: int, label: str):
        from tqdm import tqdm

        self._bar = tqdm(
            total=total_rounds,
            desc=label,
            unit="round",
            file=sys.stderr,
            leave=True,
            dynamic_ncols=True,
        )

    def on_round_end(
        self, server_round: int, round_rows: list[dict[str, Any]], client_rows: list[dict[str, Any]]
    ) -> None:
        """Advance one round and show the accuracies."""
        accs = " ".join(f"{r['weight_set']}:{r['accuracy']:.3f}" for r in round_rows)
        self._bar.set_postfix_str(f"acc {accs}")
        self._bar.update(1)

    def on_run_end(self) -> None:
        """Close the bar."""
        self._bar.close()
