"""Convergence, communication and round-trip figures, and saving a figure as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pwfl.analysis._shared import colour_cycle, new_figure, weight_set_rows
from pwfl.analysis.summaries import communication_per_round

AXIS_LABELS = {
    "round": "round",
    "elapsed_wall_s": "host wall time (s)",
    "sim_time_s": "simulated time (s)",
}


def plot_convergence(
    rounds: pd.DataFrame,
    x: Sequence[str] = ("round", "elapsed_wall_s", "sim_time_s"),
    weight_sets: str = "each",
) -> Figure:
    """Accuracy against round, host wall time and simulated time.

    Parameters
    ----------
    rounds
        ``rounds.csv`` / ``comparison.csv`` rows.
    x
        One panel per column: ``round``, ``elapsed_wall_s``, ``sim_time_s``.
    weight_sets
        ``"each"``: one line per strategy and weight set (a strategy with one
        set is named alone, others ``strategy / set k``, or ``strategy / name``
        when the set has a name of its own). ``"mean"``: one line
        per strategy, the mean over its weight sets (merged models left out).

    Returns
    -------
    matplotlib.figure.Figure
        Lines are the mean over seeds, with a band of one standard deviation
        where there are several seeds.
    """
    if weight_sets not in ("each", "mean"):
        raise ValueError(f"weight_sets must be 'each' or 'mean', got {weight_sets!r}")
    if weight_sets == "mean":
        keys = ["strategy", "seed", "round"]
        values = ["accuracy", *(c for c in x if c not in keys)]
        rounds = (
            weight_set_rows(rounds)
            .groupby(keys, sort=False)[values]
            .mean()
            .reset_index()
            .assign(weight_set="mean")
        )
    fig, axes = new_figure(1, len(x), (5.3 * len(x), 4.3), sharey=True)
    sets_per_strategy = rounds.groupby("strategy")["weight_set"].nunique()
    for ax, column in zip(axes[0], x, strict=True):
        for (strategy, weight_set), line in rounds.groupby(["strategy", "weight_set"], sort=False):
            stats = line.groupby("round").agg(
                x=(column, "mean"), mean=("accuracy", "mean"), std=("accuracy", "std")
            )
            named = line["set_name"].dropna() if "set_name" in line else pd.Series([], dtype=str)
            label = named.iloc[0] if len(named) and named.iloc[0] != str(weight_set) else None
            name = (
                strategy
                if sets_per_strategy[strategy] == 1
                else f"{strategy} / {label or f'set {weight_set}'}"
            )
            (drawn,) = ax.plot(stats["x"], stats["mean"], marker=".", label=name)
            if line["seed"].nunique() > 1:
                std = stats["std"].fillna(0)
                ax.fill_between(
                    stats["x"],
                    stats["mean"] - std,
                    stats["mean"] + std,
                    color=drawn.get_color(),
                    alpha=0.2,
                )
        ax.set_xlabel(AXIS_LABELS.get(column, column))
        if column == "round":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("server test accuracy")
    axes[0, -1].legend(fontsize=8, loc="lower right")
    what = "mean over weight sets and seeds" if weight_sets == "mean" else "mean over seeds"
    fig.suptitle(f"Convergence ({what}, band = ±1 std)")
    return fig


def plot_round_trips(clients: pd.DataFrame, seed: int | None = None) -> Figure:
    """Each client's round trips on the simulated clock, as box plots, one panel per strategy.

    Parameters
    ----------
    clients
        ``clients.csv`` rows with ``rtt_s``.
    seed
        The run of each strategy shown; default its lowest seed.

    Returns
    -------
    matplotlib.figure.Figure
        One box per client over its rounds; red boxes are clients the server
        flagged as stragglers at least once, the dashed line is the median
        client's median round trip.
    """
    train = clients[(clients["phase"] == "train") & clients["rtt_s"].notna()]
    strategies = list(dict.fromkeys(train["strategy"]))
    fig, axes = new_figure(
        len(strategies),
        1,
        (max(6.0, 1.5 + 0.5 * train["client"].nunique()), 1.2 + 2.2 * len(strategies)),
        sharey=True,
    )
    for ax, strategy in zip(axes[:, 0], strategies, strict=True):
        mine = train[train["strategy"] == strategy]
        mine = mine[mine["seed"] == (mine["seed"].min() if seed is None else seed)]
        per_client = mine.groupby("client")
        boxes = ax.boxplot(
            [rows["rtt_s"].to_numpy() for _, rows in per_client],
            tick_labels=[str(c) for c in per_client.groups],
            patch_artist=True,
            medianprops={"color": "black"},
        )
        flagged = per_client["straggler"].agg(lambda s: bool(s.fillna(False).any()))
        for box, slow in zip(boxes["boxes"], flagged, strict=True):
            box.set_facecolor("tab:red" if slow else "tab:blue")
            box.set_alpha(0.6)
        ax.axhline(per_client["rtt_s"].median().median(), color="grey", linestyle="--")
        ax.set_title(f"{strategy} (seed {mine['seed'].min()})", fontsize=10)
        ax.set_ylabel("round trip (sim. s)")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xlabel("client (red: flagged as a straggler; dashed: median client)")
    return fig


def plot_communication(rounds: pd.DataFrame) -> Figure:
    """Megabytes sent by clients and by the server in each round, per strategy.

    Parameters
    ----------
    rounds
        ``rounds.csv`` / ``comparison.csv`` rows with ``bytes_up`` and ``bytes_down``.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels of grouped bars (round on x, one bar per strategy, mean over
        seeds): uploads and downloads.
    """
    table = communication_per_round(rounds)
    order = list(dict.fromkeys(table["strategy"]))
    fig, axes = new_figure(1, 2, (12, 3.8), sharey=True)
    for ax, column, title in zip(
        axes[0],
        ("mb_up", "mb_down"),
        ("clients -> server (updates)", "server -> clients (weights)"),
        strict=True,
    ):
        per_round = table.pivot_table(
            index="round", columns="strategy", values=column, aggfunc="mean"
        )[order]
        per_round.plot.bar(ax=ax, rot=0, width=0.8, legend=False)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("MB per round")
    axes[0, -1].legend(fontsize=8, loc="lower right")
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save a figure as PNG.

    Parameters
    ----------
    fig
        A figure from this package.
    path
        Where to write; parent folders are created.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def plot_search(rounds: pd.DataFrame) -> Figure:
    """A federated search's curves: each setting trained as a PWFL weight set (solid)
    and as its own FedAvg run (dashed), against round and simulated time.

    Parameters
    ----------
    rounds
        :func:`pwfl.search.search_rounds`: ``approach``, ``setting``, ``round``,
        ``accuracy``, ``sim_time_s`` (the separate runs one after another).

    Returns
    -------
    matplotlib.figure.Figure
        Two panels; one colour per setting.
    """
    fig, axes = new_figure(1, 2, (11.0, 4.3), sharey=True)
    colours = colour_cycle()
    settings = list(dict.fromkeys(rounds["setting"]))
    styles = dict(zip(dict.fromkeys(rounds["approach"]), ("-", "--", ":"), strict=False))
    for ax, column in zip(axes[0], ("round", "sim_time_s"), strict=True):
        for (approach, setting), line in rounds.groupby(["approach", "setting"], sort=False):
            colour = colours[settings.index(setting) % len(colours)]
            ax.plot(
                line[column],
                line["accuracy"],
                styles[approach],
                marker=".",
                color=colour,
                label=f"{setting} ({approach})",
            )
        ax.set_xlabel(AXIS_LABELS.get(column, column))
        ax.grid(alpha=0.3)
    axes[0, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].set_ylabel("server test accuracy")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Federated search: K settings in one PWFL run against K separate runs")
    return fig
