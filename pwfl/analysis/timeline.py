"""The timeline: client work and server aggregations on the simulated clock."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from pwfl.analysis._shared import colour_cycle, new_figure
from pwfl.analysis.summaries import summarize_idle


def plot_timeline(
    clients: pd.DataFrame, server: pd.DataFrame, rounds: int = 3, seed: int | None = None
) -> Figure:
    """Gantt chart of client work, coloured by weight set, with the server's busy time.

    Parameters
    ----------
    clients
        ``clients.csv`` rows with ``sim_start_s`` and ``sim_end_s``.
    server
        ``server.csv`` rows.
    rounds
        The first ``rounds`` rounds are shown.
    seed
        The run of each strategy shown; default its lowest seed.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per strategy on the simulated clock. The server's row shows
        its aggregation intervals; the gaps between them are its idle time.
    """
    train = clients[(clients["phase"] == "train") & clients["sim_start_s"].notna()]
    strategies = list(dict.fromkeys(train["strategy"]))
    # One time axis for every panel, so the strategies' rounds compare by length.
    fig, axes = new_figure(
        len(strategies),
        1,
        (12, 1.5 + 0.28 * train["client"].nunique() * len(strategies)),
        sharex=True,
    )
    colours = colour_cycle()
    for ax, strategy in zip(axes[:, 0], strategies, strict=True):
        mine = train[train["strategy"] == strategy]
        run_seed = mine["seed"].min() if seed is None else seed
        mine = mine[(mine["seed"] == run_seed) & (mine["round"] <= rounds)]
        busy = server[
            (server["strategy"] == strategy)
            & (server["seed"] == run_seed)
            & (server["round"] <= rounds)
        ]
        for client, rows in mine.groupby("client"):
            ax.broken_barh(
                list(
                    zip(rows["sim_start_s"], rows["sim_end_s"] - rows["sim_start_s"], strict=True)
                ),
                (client - 0.4, 0.8),
                facecolors=[colours[int(ws) % len(colours)] for ws in rows["weight_set"]],
                edgecolor="white",
            )
        ids = sorted(mine["client"].unique())
        server_y = (max(ids) if ids else 0) + 1.5
        # A minimum width keeps millisecond aggregations visible at this scale.
        ax.broken_barh(
            list(
                zip(
                    busy["busy_start_s"],
                    (busy["busy_end_s"] - busy["busy_start_s"]).clip(lower=1e-3),
                    strict=True,
                )
            ),
            (server_y - 0.4, 0.8),
            facecolors="black",
        )
        idle = summarize_idle(busy, mine)
        ax.set_title(
            f"{strategy} (seed {run_seed}): server idle {idle:.0%} of the time shown", fontsize=10
        )
        ax.set_yticks([*ids, server_y], [*(str(c) for c in ids), "server"])
        ax.set_ylabel("client")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("simulated time (s); colour = weight set, black = server aggregating")
    return fig
