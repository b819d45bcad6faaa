"""Helpers several analysis modules use: the weight-set rows of a table, a new figure, colours."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pwfl.schema import MERGED


def weight_set_rows(rounds: pd.DataFrame) -> pd.DataFrame:
    """The rows of the weight sets, without those of the merged model."""
    return rounds[rounds["weight_set"].astype(str) != MERGED]


def new_figure(nrows: int, ncols: int, figsize: tuple[float, float], **kwargs: Any):
    """A pyplot-free figure with a 2-D array of axes, laid out by constrained layout."""
    from matplotlib.figure import Figure  # here: the summaries use this module too

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def colour_cycle() -> list[str]:
    """The colours of matplotlib's property cycle; weight set k is drawn in colour k."""
    import matplotlib

    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
