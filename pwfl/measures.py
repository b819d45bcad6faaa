"""A run's headline quantities, each defined once: time to target and bytes moved.

The summaries (:mod:`pwfl.analysis.summaries`) report them and the invariants
(:mod:`pwfl.invariants`) check ``summary.json`` and the records against them, both
through these functions; the server's idle time is :func:`pwfl.clock.idle_time`.
"""

from __future__ import annotations

import pandas as pd


def first_reaching(rows: pd.DataFrame, target: float, column: str) -> float:
    """``column`` (round, simulated or host time) of the first row whose accuracy
    reaches ``target``: the time to target of one weight set; NaN when none does.

    Parameters
    ----------
    rows
        ``rounds.csv`` rows of one weight set of one run.
    target
        The accuracy to reach.
    column
        ``round``, ``sim_time_s`` or ``elapsed_wall_s``.
    """
    hit = rows[rows["accuracy"] >= target]
    return float(hit[column].min()) if len(hit) else float("nan")


def total_bytes(rows: pd.DataFrame, column: str) -> int:
    """Bytes moved: the sum of ``column`` (``bytes_up`` or ``bytes_down``) over
    ``rounds.csv`` or ``clients.csv`` rows, an empty cell counting as none."""
    return int(rows[column].fillna(0).sum())
