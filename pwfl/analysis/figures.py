"""Convergence, per-task, allocation, communication and round-trip figures; saving as PNG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from pwfl.analysis._shared import colour_cycle, new_figure, weight_set_rows
from pwfl.analysis.fairness import set_targets
from pwfl.analysis.summaries import communication_per_round, round_groups

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
            named = line["set_name"].dropna() if "set_name" in line else pd.Series([], dtype=str)
            label = named.iloc[0] if len(named) and named.iloc[0] != str(weight_set) else None
            name = (
                strategy
                if sets_per_strategy[strategy] == 1
                else f"{strategy} / {label or f'set {weight_set}'}"
            )
            _mean_line(ax, line, column, name)
        ax.set_xlabel(AXIS_LABELS.get(column, column))
        if column == "round":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("server test accuracy")
    axes[0, -1].legend(fontsize=8, loc="lower right")
    what = "mean over weight sets and seeds" if weight_sets == "mean" else "mean over seeds"
    fig.suptitle(f"Convergence ({what}, band = ±1 std)")
    return fig


def _mean_line(
    ax: Axes, line: pd.DataFrame, column: str, label: str, color: str | None = None
) -> None:
    """One curve's accuracy against ``column``: the mean over seeds per round, with a
    band of one standard deviation where there are several seeds."""
    stats = line.groupby("round").agg(
        x=(column, "mean"), mean=("accuracy", "mean"), std=("accuracy", "std")
    )
    (drawn,) = ax.plot(stats["x"], stats["mean"], marker=".", label=label, color=color)
    if line["seed"].nunique() > 1:
        std = stats["std"].fillna(0)
        ax.fill_between(
            stats["x"], stats["mean"] - std, stats["mean"] + std, color=drawn.get_color(), alpha=0.2
        )


def plot_task_curves(
    rounds: pd.DataFrame,
    x: str = "round",
    target: float | Mapping[str, float] | None = None,
) -> Figure:
    """Each weight set's accuracy curve in a panel of its own, strategies overlaid.

    In multi-model federated learning each set is its own task: side by side,
    the panels show which task lags, and for which strategy.

    Parameters
    ----------
    rounds
        ``rounds.csv`` / ``comparison.csv`` rows (merged models left out).
    x
        ``round``, ``sim_time_s`` or ``elapsed_wall_s``.
    target
        Optional target accuracy (one, or weight set -> its own, as
        :func:`pwfl.analysis.fairness.set_targets`), drawn as a dashed line.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per weight set in order (titled by the set's name where it has
        one), one line per strategy that trained that set, in the same colour in
        every panel: the mean over seeds, with a band of one standard deviation
        where there are several seeds. One legend for the figure.
    """
    rows = weight_set_rows(rounds).assign(weight_set=lambda t: t["weight_set"].astype(str))
    sets = sorted(rows["weight_set"].unique(), key=_set_order)
    fig, axes = new_figure(1, len(sets), (4.3 * len(sets), 3.8), sharey=True)
    targets = set_targets(target, sets) if target is not None else {}
    colours = colour_cycle()
    strategies = list(dict.fromkeys(rows["strategy"]))
    for ax, ws in zip(axes[0], sets, strict=True):
        mine = rows[rows["weight_set"] == ws]
        for strategy, line in mine.groupby("strategy", sort=False):
            colour = colours[strategies.index(strategy) % len(colours)]
            _mean_line(ax, line, x, str(strategy), colour)
        if ws in targets:
            ax.axhline(targets[ws], color="grey", linestyle="--", label="target")
        names = mine["set_name"].dropna() if "set_name" in mine else pd.Series([], dtype=str)
        title = names.iloc[0] if len(names) and names.iloc[0] != ws else f"set {ws}"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(AXIS_LABELS.get(x, x))
        if x == "round":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("server test accuracy")
    # A strategy may train only some sets (FedAvg's one): the legend gathers every panel's.
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()}
    fig.legend(
        handles.values(),
        handles.keys(),
        fontsize=8,
        loc="outside lower center",
        ncols=min(len(handles), 5),
    )
    fig.suptitle("Each weight set's task (mean over seeds, band = ±1 std)")
    return fig


def _set_order(weight_set: str) -> tuple[int, str]:
    # Numbered sets in numeric order (set 10 after set 9), anything else after them.
    return (int(weight_set), "") if weight_set.isdigit() else (1 << 30, weight_set)


def _set_codes(groups: pd.DataFrame, sets: list[str]) -> np.ma.MaskedArray:
    """A round x client table of weight sets as the index of each set in ``sets``,
    masked where the client trained nothing (what imshow leaves blank)."""
    index = {ws: float(i) for i, ws in enumerate(sets)}
    codes = groups.apply(lambda column: column.map(index))
    return np.ma.masked_invalid(codes.to_numpy(dtype="float64"))


def plot_allocation(clients: pd.DataFrame, seed: int | None = None) -> Figure:
    """Who trained what: the weight set each client was sent in each round, per strategy.

    Parameters
    ----------
    clients
        ``clients.csv`` rows; training messages are used (every try, aggregated
        or not: what the client was asked to train).
    seed
        The run of each strategy shown; default its lowest seed.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per strategy: an image with a row per round and a column per
        client, coloured by weight set (set k in colour k, as the timeline),
        white where the client trained nothing; a legend entry per set.
    """
    train = clients[clients["phase"] == "train"]
    strategies = list(dict.fromkeys(train["strategy"]))
    everyone = int(train["client"].max()) + 1
    fig, axes = new_figure(
        len(strategies), 1, (max(5.0, 1.5 + 0.25 * everyone), 1.5 + 2.5 * len(strategies))
    )
    colours = colour_cycle()
    for ax, strategy in zip(axes[:, 0], strategies, strict=True):
        mine = train[train["strategy"] == strategy]
        shown = int(mine["seed"].min() if seed is None else seed)
        groups = round_groups(train, strategy, shown, everyone)
        sets = sorted(pd.unique(groups.stack().dropna().astype(str)), key=_set_order)
        image = _set_codes(groups, sets)
        palette = [colours[_set_order(ws)[0] % len(colours)] for ws in sets]
        ax.imshow(
            image,
            cmap=ListedColormap(palette),
            vmin=-0.5,
            vmax=len(sets) - 0.5,
            aspect="auto",
            interpolation="nearest",
            extent=(-0.5, everyone - 0.5, groups.index.max() + 0.5, groups.index.min() - 0.5),
        )
        ax.legend(
            handles=[
                Patch(color=c, label=f"set {ws}") for ws, c in zip(sets, palette, strict=True)
            ],
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
        ax.set_title(f"{strategy} (seed {shown})", fontsize=10)
        ax.set_ylabel("round")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1, 0].set_xlabel("client (white: not sent a weight set that round)")
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
