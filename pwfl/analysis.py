"""Load runs and comparisons into pandas, summarise them, and draw their figures.

Usage (in a notebook)::

    from pwfl import analysis
    results = analysis.load_results("results/compare/quick")   # tidy, typed tables
    results.summary()                                           # mean and std over seeds
    analysis.plot_convergence(results.rounds, x=("round", "sim_time_s"))

``pwfl plot`` and ``pwfl compare`` draw their figures with these same functions.
Figures are :class:`matplotlib.figure.Figure` objects made without pyplot: saved,
they are drawn by Agg on a machine without a screen; returned from a notebook cell,
Jupyter shows them inline. This module imports neither Flower nor Ray.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.ticker import MaxNLocator

from pwfl.config import StrategyConfig

MERGED = "merged"

# Column types of the run tables (pwfl/records.py writes them). Identifiers are
# integers or text, counts that some rows lack (evaluate rows send no bytes) are
# nullable integers, flags are nullable booleans; every other numeric column is a
# measurement and is read as float64.
TEXT, INT, COUNT, FLAG = "str", "int64", "Int64", "boolean"
ROUND_TYPES = {
    "strategy": TEXT,
    "seed": INT,
    "round": INT,
    "weight_set": TEXT,
    "num_clients": COUNT,
    "num_examples": COUNT,
    "bytes_down": COUNT,
    "bytes_up": COUNT,
}
CLIENT_TYPES = {
    "strategy": TEXT,
    "seed": INT,
    "round": INT,
    "phase": TEXT,
    "client": INT,
    "weight_set": TEXT,
    "num_examples": COUNT,
    "status": TEXT,
    "straggler": FLAG,
    "bytes_down": COUNT,
    "bytes_up": COUNT,
}
SERVER_TYPES = {"strategy": TEXT, "seed": INT, "round": INT, "weight_set": TEXT}

AXIS_LABELS = {
    "round": "round",
    "wall_time_s": "host wall time (s)",
    "sim_time_s": "simulated time (s)",
}


# --------------------------------------------------------------------------- loading


def typed(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Cast a run table's columns to their types.

    Parameters
    ----------
    frame
        A table as ``pd.read_csv`` returns it.
    types
        Column -> dtype for identifiers, counts and flags (``ROUND_TYPES``,
        ``CLIENT_TYPES``, ``SERVER_TYPES``). Other numeric columns become
        float64; other columns are kept as read.

    Returns
    -------
    pandas.DataFrame
        The same rows and columns, typed.
    """
    casts: dict[str, Any] = {}
    for column in frame.columns:
        dtype = types.get(column)
        series = frame[column]
        if (
            dtype is None
            and pd.api.types.is_numeric_dtype(series)
            and not pd.api.types.is_bool_dtype(series)
        ):
            dtype = "float64"
        if dtype == TEXT and pd.api.types.is_float_dtype(series):
            # A weight-set column with gaps is read as float ("0.0"); go through Int64.
            frame = frame.assign(**{column: series.astype(COUNT)})
        if dtype is not None:
            casts[column] = dtype
    return frame.astype(casts)


def _tables(path: Path, name: str) -> list[Path]:
    return [path / name] if (path / name).is_file() else sorted(path.glob(f"*/{name}"))


def _read(path: str | Path, name: str, types: dict[str, str]) -> pd.DataFrame:
    path = Path(path)
    files = _tables(path, name)
    if not files:
        raise FileNotFoundError(f"no {name} in '{path}' or its run folders")
    return typed(pd.concat([pd.read_csv(f) for f in files], ignore_index=True), types)


def load_rounds(path: str | Path) -> pd.DataFrame:
    """Read ``rounds.csv`` of a run, or ``comparison.csv`` of a comparison directory.

    Parameters
    ----------
    path
        A folder written by ``pwfl run`` or ``pwfl compare``.

    Returns
    -------
    pandas.DataFrame
        One row per run, round and weight set, typed by ``ROUND_TYPES``
        (``weight_set`` is text: ``"0"``, ``"1"``, ... or ``"merged"``).

    Raises
    ------
    FileNotFoundError
        When the folder holds neither file.
    """
    path = Path(path)
    for name in ("comparison.csv", "rounds.csv"):
        if (path / name).is_file():
            return typed(pd.read_csv(path / name), ROUND_TYPES)
    raise FileNotFoundError(f"no comparison.csv or rounds.csv in '{path}'")


def load_clients(path: str | Path) -> pd.DataFrame:
    """Read ``clients.csv`` of a run, or of every run folder of a comparison.

    Parameters
    ----------
    path
        A run folder, or a comparison folder whose run folders hold the file.

    Returns
    -------
    pandas.DataFrame
        One row per client message, typed by ``CLIENT_TYPES``.

    Raises
    ------
    FileNotFoundError
        When no ``clients.csv`` is found.
    """
    return _read(path, "clients.csv", CLIENT_TYPES)


def load_server(path: str | Path) -> pd.DataFrame:
    """Read ``server.csv`` (aggregation intervals) of a run or of every run in a comparison.

    Parameters
    ----------
    path
        A run folder, or a comparison folder whose run folders hold the file.

    Returns
    -------
    pandas.DataFrame
        One row per aggregation on the simulated clock, typed by ``SERVER_TYPES``.

    Raises
    ------
    FileNotFoundError
        When no ``server.csv`` is found.
    """
    return _read(path, "server.csv", SERVER_TYPES)


def target_accuracy(path: str | Path) -> float:
    """The target accuracy the runs in ``path`` were configured with.

    Read from the ``config.toml`` of the run (or of the first run folder of a
    comparison); without one, the default of ``strategy.target_accuracy``.

    Parameters
    ----------
    path
        A run or comparison folder.

    Returns
    -------
    float
        The accuracy whose first crossing the summaries report.
    """
    path = Path(path)
    for config in _tables(path, "config.toml"):
        return float(tomllib.loads(config.read_text())["strategy"]["target_accuracy"])
    return StrategyConfig().target_accuracy


def _same_runs(table: pd.DataFrame, rounds: pd.DataFrame) -> pd.DataFrame:
    # A comparison folder can keep run folders of an earlier comparison: keep the
    # rows of the runs that comparison.csv lists, in its order (the folders are
    # read in alphabetical order).
    runs = rounds[["strategy", "seed"]].drop_duplicates()
    return runs.merge(table, on=["strategy", "seed"])


@dataclass(frozen=True, eq=False)
class Results:
    """The tables of one run or one comparison.

    ``clients`` and ``server`` are ``None`` when the run folders are absent
    (a comparison folder checked in with only ``comparison.csv``).
    """

    path: Path
    rounds: pd.DataFrame
    clients: pd.DataFrame | None
    server: pd.DataFrame | None
    target: float

    def runs(self) -> pd.DataFrame:
        """One row of headline numbers per run; see :func:`summarize_runs`."""
        return summarize_runs(self.rounds, self.target, self.clients, self.server)

    def summary(self) -> pd.DataFrame:
        """Mean and std over seeds per strategy; see :func:`summarize_comparison`."""
        return summarize_comparison(self.rounds, self.target, self.clients, self.server)


def load_results(path: str | Path, target: float | None = None) -> Results:
    """Load a run or comparison folder into typed DataFrames.

    Parameters
    ----------
    path
        A folder written by ``pwfl run`` or ``pwfl compare``.
    target
        Accuracy target for the summaries; ``None`` reads it from the runs'
        ``config.toml`` (:func:`target_accuracy`).

    Returns
    -------
    Results
        ``rounds`` always; ``clients`` and ``server`` where the files exist,
        restricted to the runs in ``rounds``.
    """
    path = Path(path)
    rounds = load_rounds(path)
    try:
        clients = _same_runs(load_clients(path), rounds)
        server = _same_runs(load_server(path), rounds)
    except FileNotFoundError:
        clients = server = None
    return Results(
        path=path,
        rounds=rounds,
        clients=clients,
        server=server,
        target=target_accuracy(path) if target is None else target,
    )


def repo_root(start: str | Path | None = None) -> Path:
    """The repository folder at or above ``start``.

    Notebooks run with the working directory ``notebooks/``; they find
    ``experiments/`` and ``results/`` from here instead of hard-coded paths.

    Parameters
    ----------
    start
        Where to begin looking; default the working directory.

    Returns
    -------
    pathlib.Path
        The first folder holding ``pyproject.toml`` and ``experiments/configs``.

    Raises
    ------
    FileNotFoundError
        When no parent folder is the repository.
    """
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "experiments" / "configs").is_dir():
            return folder
    raise FileNotFoundError(f"'{here}' is not inside the pwfl repository")


# ------------------------------------------------------------------------- summaries


def _weight_set_rows(rounds: pd.DataFrame) -> pd.DataFrame:
    return rounds[rounds["weight_set"].astype(str) != MERGED]


def _first_reaching(rounds: pd.DataFrame, target: float, column: str) -> float:
    hit = rounds[rounds["accuracy"] >= target]
    return float(hit[column].min()) if len(hit) else float("nan")


def summarize_run(rounds: pd.DataFrame, target: float) -> dict[str, Any]:
    """Headline numbers of one run.

    ``final_accuracy`` is the mean over the run's weight sets of their last
    accuracy (one set for FedAvg); ``best_set_final_accuracy`` the best of them.
    ``rounds_to_target`` / ``sim_time_to_target_s`` count until the first
    weight set reaches ``target`` (NaN when none does).

    Parameters
    ----------
    rounds
        The ``rounds.csv`` rows of one run.
    target
        Accuracy whose first crossing is reported.

    Returns
    -------
    dict
        The numbers ``summary.json`` holds.
    """
    sets = _weight_set_rows(rounds)
    last_round = int(sets["round"].max())
    final = sets[sets["round"] == last_round]
    per_round = sets.groupby("round").agg(
        round_wall_s=("round_wall_s", "first"),
        round_sim_s=("round_sim_s", "first"),
        idle_s=("idle_s", "first"),
    )
    summary: dict[str, Any] = {
        "rounds": last_round,
        "final_accuracy": float(final["accuracy"].mean()),
        "best_set_final_accuracy": float(final["accuracy"].max()),
        "best_accuracy": float(sets["accuracy"].max()),
        "final_accuracy_per_set": {
            str(ws): float(acc)
            for ws, acc in zip(final["weight_set"], final["accuracy"], strict=True)
        },
        "rounds_to_target": _first_reaching(sets, target, "round"),
        "sim_time_to_target_s": _first_reaching(sets, target, "sim_time_s"),
        "wall_time_to_target_s": _first_reaching(sets, target, "wall_time_s"),
        "total_wall_time_s": float(sets["wall_time_s"].max()),
        "mean_round_wall_s": float(per_round["round_wall_s"].mean()),
        "total_sim_time_s": float(sets["sim_time_s"].max()),
        "mean_round_sim_s": float(per_round["round_sim_s"].mean()),
        "idle_fraction": float(per_round["idle_s"].sum() / per_round["round_sim_s"].sum())
        if per_round["idle_s"].notna().any()
        else float("nan"),
        "target_accuracy": target,
    }
    for column in ("bytes_up", "bytes_down"):
        if column in sets:
            summary[f"total_{column}"] = int(sets[column].fillna(0).sum())
    merged = rounds[rounds["weight_set"].astype(str) == MERGED]
    if len(merged):
        summary["merged_final_accuracy"] = float(merged.sort_values("round")["accuracy"].iloc[-1])
    return summary


SUMMARY_METRICS = [
    "final_accuracy",
    "total_bytes_up",
    "best_accuracy",
    "rounds_to_target",
    "sim_time_to_target_s",
    "total_wall_time_s",
    "mean_round_wall_s",
    "mean_round_sim_s",
    "idle_fraction",
]

SUMMARY_COLUMNS = {
    "final_accuracy_mean": ("final acc.", "{:.3f}"),
    "best_accuracy_mean": ("best acc.", "{:.3f}"),
    "rounds_to_target_mean": ("rounds to 0.90", "{:.0f}"),
    "sim_time_to_target_s_mean": ("sim. s to 0.90", "{:.2f}"),
    "mean_round_sim_s_mean": ("sim. s / round", "{:.3f}"),
    "mean_round_wall_s_mean": ("host s / round", "{:.2f}"),
    "idle_fraction_mean": ("server idle", "{:.1%}"),
    "finish_spread_mean": ("finish spread", "{:.2f}"),
    "total_bytes_up_mean": ("MB up", "{:.1f}"),
}
"""``summary.csv`` columns shown in the README's tables: (label, format)."""


def finish_spread(clients: pd.DataFrame) -> pd.DataFrame:
    """Per run and round: slowest over median client round trip (1 = all finish together).

    Parameters
    ----------
    clients
        ``clients.csv`` rows of one or more runs.

    Returns
    -------
    pandas.DataFrame
        Columns ``strategy``, ``seed``, ``round``, ``finish_spread``.
    """
    train = clients[(clients["phase"] == "train") & clients["rtt_s"].notna()]
    spread = train.groupby(["strategy", "seed", "round"])["rtt_s"].agg(
        lambda rtt: rtt.max() / rtt.median()
    )
    return spread.rename("finish_spread").reset_index()


def summarize_runs(
    rounds: pd.DataFrame,
    target: float,
    clients: pd.DataFrame | None = None,
    server: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per run (strategy and seed) with its headline numbers.

    Parameters
    ----------
    rounds
        ``rounds.csv`` / ``comparison.csv`` rows.
    target
        Accuracy whose first crossing is reported.
    clients
        Optional ``clients.csv`` rows: adds ``finish_spread`` (mean over rounds).
    server
        Optional ``server.csv`` rows: the idle fraction of runs without a round
        barrier (async), which have no per-round ``idle_s``, comes from the
        server's aggregation intervals (:func:`idle_fraction`).

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``seed`` and the scalar numbers of :func:`summarize_run`.
    """
    per_run = []
    for (strategy, seed), run in rounds.groupby(["strategy", "seed"], sort=False):
        row = summarize_run(run, target)
        del row["final_accuracy_per_set"]
        if np.isnan(row["idle_fraction"]) and server is not None:
            mine = server[(server["strategy"] == strategy) & (server["seed"] == seed)]
            row["idle_fraction"] = idle_fraction(mine, float(run["sim_time_s"].max()))
        per_run.append({"strategy": strategy, "seed": seed, **row})
    runs = pd.DataFrame(per_run)
    if clients is not None and "rtt_s" in clients:
        spread = finish_spread(clients).groupby(["strategy", "seed"])["finish_spread"].mean()
        runs = runs.join(spread, on=["strategy", "seed"])
    return runs


def summarize_comparison(
    rounds: pd.DataFrame,
    target: float,
    clients: pd.DataFrame | None = None,
    server: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per strategy: mean and std over seeds of each run's summary numbers.

    Parameters
    ----------
    rounds, target, clients, server
        As for :func:`summarize_runs`.

    Returns
    -------
    pandas.DataFrame
        One row per strategy in order of first appearance: ``strategy``,
        ``seeds``, then ``<metric>_mean`` and ``<metric>_std`` (population std)
        for every metric of ``SUMMARY_METRICS`` (and ``finish_spread``). This is
        ``summary.csv``.
    """
    runs = summarize_runs(rounds, target, clients, server)
    metrics = [*SUMMARY_METRICS, *(["finish_spread"] if "finish_spread" in runs else [])]
    order = list(dict.fromkeys(runs["strategy"]))
    grouped = runs.groupby("strategy", sort=False)[metrics]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=0).add_suffix("_std"))
    table["seeds"] = grouped.size()
    table = table.reindex(order)
    columns = [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    return table[["seeds", *columns]].reset_index()


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The README's view of a comparison summary: means over seeds, readable names.

    Parameters
    ----------
    summary
        A ``summary.csv`` table (:func:`summarize_comparison`).

    Returns
    -------
    pandas.DataFrame
        Indexed by strategy, one column per entry of ``SUMMARY_COLUMNS`` that
        the summary has, labelled as in the README; bytes in megabytes.
    """
    shown = [c for c in SUMMARY_COLUMNS if c in summary]
    view = summary.set_index("strategy")[shown].astype("float64")
    if "total_bytes_up_mean" in view:
        view["total_bytes_up_mean"] = view["total_bytes_up_mean"] / 1e6
    return view.rename(columns={c: SUMMARY_COLUMNS[c][0] for c in shown})


def summary_markdown(summary: pd.DataFrame) -> str:
    """A comparison summary as the Markdown table the README shows (means over seeds).

    Parameters
    ----------
    summary
        A ``summary.csv`` table.

    Returns
    -------
    str
        One row per strategy, the columns of :func:`summary_view` formatted by
        ``SUMMARY_COLUMNS``; a dash where a value is missing (target never reached).
    """
    view = summary_view(summary)
    formats = dict(SUMMARY_COLUMNS.values())
    lines = [
        "| strategy | " + " | ".join(view.columns) + " |",
        "|---" * (len(view.columns) + 1) + "|",
    ]
    for strategy, row in view.iterrows():
        cells = ["–" if pd.isna(v) else formats[label].format(v) for label, v in row.items()]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_summary(table: pd.DataFrame) -> str:
    """A compact text table of a comparison summary (mean ± std over seeds).

    Parameters
    ----------
    table
        A ``summary.csv`` table.

    Returns
    -------
    str
        One line per strategy, as ``pwfl compare`` prints it.
    """
    shown = {
        "final_accuracy": "final acc",
        "best_accuracy": "best acc",
        "rounds_to_target": "rounds->tgt",
        "sim_time_to_target_s": "sim s->tgt",
        "mean_round_wall_s": "round wall s",
        "mean_round_sim_s": "round sim s",
        "idle_fraction": "idle",
        "finish_spread": "spread",
    }
    shown = {k: v for k, v in shown.items() if f"{k}_mean" in table}
    width = max(8, *(len(str(s)) for s in table["strategy"]))
    lines = [f"{'strategy':<{width}}  " + "  ".join(f"{h:>13}" for h in shown.values())]
    for _, row in table.iterrows():
        cells = [f"{row[m + '_mean']:.3f}±{row[m + '_std']:.3f}" for m in shown]
        lines.append(f"{row['strategy']:<{width}}  " + "  ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def idle_per_round(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per run and round: the simulated round length and the server's idle share of it.

    Parameters
    ----------
    rounds
        ``rounds.csv`` rows. Runs with a round barrier record ``idle_s`` once
        per round; async runs leave it empty, and their rows here are NaN
        (use :func:`idle_fraction` on ``server.csv`` for them).

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``seed``, ``round``, ``round_sim_s``, ``idle_s``, ``idle_fraction``.
    """
    sets = _weight_set_rows(rounds)
    table = (
        sets.groupby(["strategy", "seed", "round"], sort=False)
        .agg(round_sim_s=("round_sim_s", "first"), idle_s=("idle_s", "first"))
        .reset_index()
    )
    table["idle_fraction"] = table["idle_s"] / table["round_sim_s"]
    return table


def communication_per_round(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per run and round: megabytes the clients sent and received, over all weight sets.

    Parameters
    ----------
    rounds
        ``rounds.csv`` rows with ``bytes_up`` and ``bytes_down``.

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``seed``, ``round``, ``mb_up``, ``mb_down`` (10^6 bytes).
    """
    sets = _weight_set_rows(rounds)
    table = (
        sets.groupby(["strategy", "seed", "round"], sort=False)[["bytes_up", "bytes_down"]]
        .sum()
        .astype("float64")
        .div(1e6)
        .rename(columns={"bytes_up": "mb_up", "bytes_down": "mb_down"})
    )
    return table.reset_index()


def client_summary(clients: pd.DataFrame) -> pd.DataFrame:
    """Per run and client: its round trips on the simulated clock and how the server treated it.

    Parameters
    ----------
    clients
        ``clients.csv`` rows; training replies with a round trip are used.

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``seed``, ``client``, ``rounds`` (rounds it trained in),
        ``rtt_median_s``, ``rtt_max_s``, ``compute_median_s``,
        ``rtt_vs_median`` (its median round trip over the median client's),
        ``flagged`` (share of its replies flagged as a straggler's) and
        ``local_epochs`` (mean epochs it was given: load balancing).
    """
    train = clients[(clients["phase"] == "train") & clients["rtt_s"].notna()]
    train = train.assign(flagged=train["straggler"].astype("float64"))
    table = train.groupby(["strategy", "seed", "client"], sort=False).agg(
        rounds=("round", "nunique"),
        rtt_median_s=("rtt_s", "median"),
        rtt_max_s=("rtt_s", "max"),
        compute_median_s=("compute_s", "median"),
        flagged=("flagged", "mean"),
        local_epochs=("local_epochs", "mean"),
    )
    run_median = table.groupby(level=["strategy", "seed"])["rtt_median_s"].transform("median")
    table.insert(4, "rtt_vs_median", table["rtt_median_s"] / run_median)
    return table.reset_index().sort_values(
        ["strategy", "seed", "client"], kind="stable", ignore_index=True
    )


def round_groups(
    clients: pd.DataFrame,
    strategy: str | None = None,
    seed: int | None = None,
    num_clients: int | None = None,
) -> pd.DataFrame:
    """Which weight set each client trained in each round of one run.

    Parameters
    ----------
    clients
        ``clients.csv`` rows.
    strategy, seed
        The run; default the first strategy and its lowest seed.
    num_clients
        Clients ``0..num_clients-1`` get a column each, sampled or not; default
        up to the highest client id in the table.

    Returns
    -------
    pandas.DataFrame
        Rounds as the index, clients as columns, the weight set (text) as
        values; NaN where a client was not sampled.
    """
    train = clients[clients["phase"] == "train"]
    strategy = train["strategy"].iloc[0] if strategy is None else strategy
    mine = train[train["strategy"] == strategy]
    seed = mine["seed"].min() if seed is None else seed
    mine = mine[mine["seed"] == seed]
    groups = mine.pivot_table(index="round", columns="client", values="weight_set", aggfunc="first")
    everyone = range(num_clients if num_clients is not None else int(clients["client"].max()) + 1)
    return groups.reindex(columns=everyone)


def idle_fraction(server: pd.DataFrame, span_s: float) -> float:
    """Share of ``[0, span_s]`` in which the server aggregated nothing (union of intervals).

    Parameters
    ----------
    server
        ``server.csv`` rows of one run.
    span_s
        Length of the run on the simulated clock.

    Returns
    -------
    float
        Idle share in [0, 1]; NaN for an empty span.
    """
    busy, end = 0.0, -np.inf
    for start, stop in sorted(zip(server["busy_start_s"], server["busy_end_s"], strict=True)):
        start = max(start, end)
        if stop > start:
            busy += stop - start
        end = max(end, stop)
    return float(1 - busy / span_s) if span_s > 0 else float("nan")


def summarize_idle(server: pd.DataFrame, clients: pd.DataFrame) -> float:
    """Share of the span from the first send to the last aggregation with no aggregation.

    Parameters
    ----------
    server
        ``server.csv`` rows of the rounds shown.
    clients
        ``clients.csv`` training rows of the same rounds.

    Returns
    -------
    float
        Idle share; NaN without aggregations.
    """
    if server.empty:
        return float("nan")
    start = min(clients["sim_start_s"].min(), server["busy_start_s"].min())
    end = max(server["busy_end_s"].max(), clients["sim_end_s"].max())
    busy = (server["busy_end_s"] - server["busy_start_s"]).sum()
    return float(1 - busy / (end - start)) if end > start else float("nan")


# --------------------------------------------------------------------------- figures


def _figure(nrows: int, ncols: int, figsize: tuple[float, float], **kwargs: Any):
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def _colours() -> list[str]:
    return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_convergence(
    rounds: pd.DataFrame,
    x: Sequence[str] = ("round", "wall_time_s", "sim_time_s"),
    weight_sets: str = "each",
) -> Figure:
    """Accuracy against round, host wall time and simulated time.

    Parameters
    ----------
    rounds
        ``rounds.csv`` / ``comparison.csv`` rows.
    x
        One panel per column: ``round``, ``wall_time_s``, ``sim_time_s``.
    weight_sets
        ``"each"``: one line per strategy and weight set (a strategy with one
        set is named alone, others ``strategy / set k``). ``"mean"``: one line
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
            _weight_set_rows(rounds)
            .groupby(keys, sort=False)[values]
            .mean()
            .reset_index()
            .assign(weight_set="mean")
        )
    fig, axes = _figure(1, len(x), (5.3 * len(x), 4.3), sharey=True)
    sets_per_strategy = rounds.groupby("strategy")["weight_set"].nunique()
    for ax, column in zip(axes[0], x, strict=True):
        for (strategy, weight_set), line in rounds.groupby(["strategy", "weight_set"], sort=False):
            stats = line.groupby("round").agg(
                x=(column, "mean"), mean=("accuracy", "mean"), std=("accuracy", "std")
            )
            name = (
                strategy if sets_per_strategy[strategy] == 1 else f"{strategy} / set {weight_set}"
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
    fig, axes = _figure(
        len(strategies),
        1,
        (12, 1.5 + 0.28 * train["client"].nunique() * len(strategies)),
        sharex=True,
    )
    colours = _colours()
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
    fig, axes = _figure(
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
    fig, axes = _figure(1, 2, (12, 3.8), sharey=True)
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
    colours = _colours()
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


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Save a figure as PNG.

    Parameters
    ----------
    fig
        A figure from this module.
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
