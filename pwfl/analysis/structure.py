"""The diagram of PWFL's round structure: weight sets, client groups, groups over rounds."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

from pwfl.analysis._shared import colour_cycle


def plot_round_structure(groups: pd.DataFrame, at_round: int | None = None) -> Figure:
    """PWFL's round structure: K weight sets, K disjoint client groups, and the groups over rounds.

    Parameters
    ----------
    groups
        Rounds x clients table of weight sets (:func:`round_groups`).
    at_round
        The round drawn in the left panel; default the first.

    Returns
    -------
    matplotlib.figure.Figure
        Left: the server sends weight set k to group k in one push, the K
        groups train at once and the K aggregations run concurrently. Right:
        which weight set every client trained in every round (blank: not
        sampled), showing that the groups are disjoint and change each round.
    """
    sets = sorted({str(v) for v in groups.stack().dropna()}, key=lambda s: (len(s), s))
    k = len(sets)
    at_round = int(groups.index.min()) if at_round is None else at_round
    colours = colour_cycle()
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[1.25, 1])
    left.set_xlim(0, 10)
    left.set_ylim(0, 10)
    left.axis("off")
    left.set_title(f"one PWFL round (round {at_round}, K = {k})", fontsize=11)
    left.add_patch(
        FancyBboxPatch((0.3, 7.2), 9.4, 2.4, boxstyle="round,pad=0.1", fc="whitesmoke", ec="black")
    )
    left.text(0.55, 9.15, "server", fontsize=10, fontweight="bold", va="center")
    row = groups.loc[at_round]
    width = 9.0 / k
    names = ["S", "S'"] if k == 2 else [f"G{j}" for j in range(k)]
    for j, ws in enumerate(sets):
        centre = 0.5 + width * (j + 0.5)
        colour = colours[j % len(colours)]
        left.add_patch(
            FancyBboxPatch(
                (centre - width * 0.38, 7.55),
                width * 0.76,
                1.1,
                boxstyle="round,pad=0.05",
                fc=colour,
                alpha=0.35,
                ec=colour,
            )
        )
        left.text(centre, 8.1, f"weight set {ws}\naggregate {ws}", ha="center", va="center")
        members = sorted(int(c) for c in row[row.astype(str) == ws].index)
        left.add_patch(
            FancyBboxPatch(
                (centre - width * 0.42, 1.2),
                width * 0.84,
                2.2,
                boxstyle="round,pad=0.05",
                fc="white",
                ec=colour,
                lw=2,
            )
        )
        left.text(
            centre,
            2.3,
            f"group {names[j]}\nclient{'s' * (len(members) > 1)} "
            f"{', '.join(map(str, members))}\ntrain locally",
            ha="center",
            va="center",
        )
        left.annotate(
            "",
            xy=(centre - 0.35, 3.5),
            xytext=(centre - 0.35, 7.3),
            arrowprops={"arrowstyle": "->", "color": colour, "lw": 2},
        )
        left.annotate(
            "",
            xy=(centre + 0.35, 7.3),
            xytext=(centre + 0.35, 3.5),
            arrowprops={"arrowstyle": "->", "color": colour, "lw": 2, "linestyle": "--"},
        )
        left.text(centre - 0.45, 5.3, f"w{ws}", ha="right", va="center", color=colour)
        left.text(centre + 0.45, 5.3, "updates", ha="left", va="center", color=colour)
    left.text(
        5,
        0.0,
        "one push sends every group its weight set; the groups train at the same time,\n"
        "and the K aggregations run concurrently (Ray tasks)",
        ha="center",
        va="bottom",
        fontsize=8.5,
    )
    codes = groups.apply(
        lambda col: col.map(lambda v: sets.index(str(v)) if pd.notna(v) else np.nan)
    )
    cmap = ListedColormap([colours[j % len(colours)] for j in range(k)])
    right.imshow(
        codes.to_numpy(dtype=float),
        cmap=cmap,
        vmin=-0.5,
        vmax=k - 0.5,
        aspect="auto",
        alpha=0.8,
    )
    for (row_at, col_at), code in np.ndenumerate(codes.to_numpy(dtype=float)):
        if not np.isnan(code):
            right.text(col_at, row_at, sets[int(code)], ha="center", va="center", fontsize=8)
    # White lines between cells keep neighbouring clients of one group apart.
    right.set_xticks(np.arange(codes.shape[1] + 1) - 0.5, minor=True)
    right.set_yticks(np.arange(codes.shape[0] + 1) - 0.5, minor=True)
    right.grid(which="minor", color="white", linewidth=1.5)
    right.tick_params(which="minor", length=0)
    right.set_xticks(range(codes.shape[1]), [str(c) for c in codes.columns])
    right.set_yticks(range(codes.shape[0]), [str(r) for r in codes.index])
    right.set_xlabel("client")
    right.set_ylabel("round")
    right.set_title("weight set each client trained (blank: not sampled)", fontsize=11)
    right.legend(
        handles=[
            Patch(color=colours[j % len(colours)], label=f"weight set {ws}")
            for j, ws in enumerate(sets)
        ],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize=8,
    )
    return fig
