"""Load runs and comparisons into pandas, summarise them, and draw their figures.

Usage (in a notebook)::

    from pwfl import analysis
    rounds = analysis.load_rounds("results/compare")        # tidy, one row per observation
    analysis.summarize_comparison(rounds, target=0.9)
    fig = analysis.plot_convergence(rounds)

The CLI's ``pwfl plot`` uses these same functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files, not windows: runs and CI have no screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MERGED = "merged"


def load_rounds(path: str | Path) -> pd.DataFrame:
    """Read ``rounds.csv`` of a run, or ``comparison.csv`` of a comparison directory."""
    path = Path(path)
    for name in ("comparison.csv", "rounds.csv"):
        if (path / name).is_file():
            frame = pd.read_csv(path / name)
            frame["weight_set"] = frame["weight_set"].astype(str)
            return frame
    raise FileNotFoundError(f"no comparison.csv or rounds.csv in '{path}'")


def load_clients(path: str | Path) -> pd.DataFrame:
    """Read ``clients.csv`` of a run (or the concatenation in a comparison)."""
    path = Path(path)
    files = (
        [path / "clients.csv"]
        if (path / "clients.csv").is_file()
        else sorted(path.glob("*/clients.csv"))
    )
    if not files:
        raise FileNotFoundError(f"no clients.csv in '{path}' or its run folders")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def load_server(path: str | Path) -> pd.DataFrame:
    """Read ``server.csv`` (aggregation intervals) of a run or of every run in a comparison."""
    return _load_table(path, "server.csv")


def _load_table(path: str | Path, name: str) -> pd.DataFrame:
    path = Path(path)
    files = [path / name] if (path / name).is_file() else sorted(path.glob(f"*/{name}"))
    if not files:
        raise FileNotFoundError(f"no {name} in '{path}' or its run folders")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


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


def finish_spread(clients: pd.DataFrame) -> pd.DataFrame:
    """Per run and round: slowest over median client round trip (1 = all finish together)."""
    train = clients[(clients["phase"] == "train") & clients["rtt_s"].notna()]
    spread = train.groupby(["strategy", "seed", "round"])["rtt_s"].agg(
        lambda rtt: rtt.max() / rtt.median()
    )
    return spread.rename("finish_spread").reset_index()


def summarize_comparison(
    rounds: pd.DataFrame,
    target: float,
    clients: pd.DataFrame | None = None,
    server: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per strategy: mean and std over seeds of each run's summary numbers.

    With ``clients`` the table also gets ``finish_spread`` (see :func:`finish_spread`),
    averaged over rounds. With ``server`` the idle fraction of runs without a round
    barrier (async) comes from the server's aggregation intervals.
    """
    metrics = list(SUMMARY_METRICS)
    per_run = []
    for (strategy, seed), run in rounds.groupby(["strategy", "seed"], sort=False):
        row = {k: v for k, v in summarize_run(run, target).items() if k in SUMMARY_METRICS}
        if np.isnan(row["idle_fraction"]) and server is not None:
            mine = server[(server["strategy"] == strategy) & (server["seed"] == seed)]
            row["idle_fraction"] = idle_fraction(mine, float(run["sim_time_s"].max()))
        per_run.append({"strategy": strategy, "seed": seed, **row})
    runs = pd.DataFrame(per_run)
    if clients is not None and "rtt_s" in clients:
        spread = finish_spread(clients).groupby(["strategy", "seed"])["finish_spread"].mean()
        runs = runs.join(spread, on=["strategy", "seed"])
        metrics.append("finish_spread")
    order = list(dict.fromkeys(runs["strategy"]))
    grouped = runs.groupby("strategy", sort=False)[metrics]
    table = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=0).add_suffix("_std"))
    table["seeds"] = grouped.size()
    table = table.reindex(order)
    columns = [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    return table[["seeds", *columns]].reset_index()


def format_summary(table: pd.DataFrame) -> str:
    """A compact text table of a comparison summary (mean ± std over seeds)."""
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


def plot_convergence(rounds: pd.DataFrame) -> plt.Figure:
    """Accuracy against round, host wall time and simulated time.

    One line per strategy and weight set: the mean over seeds, with a band of
    one standard deviation where there are several seeds.
    """
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharey=True)
    for ax, x, label in zip(
        axes,
        ("round", "wall_time_s", "sim_time_s"),
        ("round", "host wall time (s)", "simulated time (s)"),
        strict=True,
    ):
        for (strategy, weight_set), run in rounds.groupby(["strategy", "weight_set"], sort=False):
            stats = run.groupby("round").agg(
                x=(x, "mean"), mean=("accuracy", "mean"), std=("accuracy", "std")
            )
            name = (
                strategy
                if rounds[rounds["strategy"] == strategy]["weight_set"].nunique() == 1
                else f"{strategy} / set {weight_set}"
            )
            (line,) = ax.plot(stats["x"], stats["mean"], marker=".", label=name)
            if run["seed"].nunique() > 1:
                std = np.nan_to_num(stats["std"].to_numpy())
                ax.fill_between(
                    stats["x"],
                    stats["mean"] - std,
                    stats["mean"] + std,
                    color=line.get_color(),
                    alpha=0.2,
                )
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("server test accuracy")
    axes[-1].legend(fontsize=8, loc="lower right")
    fig.suptitle("Convergence (mean over seeds, band = ±1 std)")
    fig.tight_layout()
    return fig


def plot_timeline(
    clients: pd.DataFrame, server: pd.DataFrame, rounds: int = 3, seed: int | None = None
) -> plt.Figure:
    """Gantt chart of client work, coloured by weight set, with the server's busy time.

    One panel per strategy (first seed unless ``seed`` is given), the first
    ``rounds`` rounds, on the simulated clock. The server's row shows its
    aggregation intervals; the gaps between them are its idle time.
    """
    train = clients[(clients["phase"] == "train") & clients["sim_start_s"].notna()]
    strategies = list(dict.fromkeys(train["strategy"]))
    fig, axes = plt.subplots(
        len(strategies),
        1,
        figsize=(12, 2.2 + 0.25 * train["client"].nunique() * len(strategies)),
        squeeze=False,
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, strategy in zip(axes[:, 0], strategies, strict=True):
        mine = train[train["strategy"] == strategy]
        run_seed = mine["seed"].min() if seed is None else seed
        mine = mine[(mine["seed"] == run_seed) & (mine["round"] <= rounds)]
        busy = server[
            (server["strategy"] == strategy)
            & (server["seed"] == run_seed)
            & (server["round"] <= rounds)
        ]
        for _, row in mine.iterrows():
            colour = colours[int(row["weight_set"]) % len(colours)]
            ax.barh(
                row["client"],
                row["sim_end_s"] - row["sim_start_s"],
                left=row["sim_start_s"],
                color=colour,
                edgecolor="white",
                height=0.8,
            )
        server_y = mine["client"].max() + 1.5 if len(mine) else 0
        for _, row in busy.iterrows():
            ax.barh(
                server_y,
                max(row["busy_end_s"] - row["busy_start_s"], 1e-3),
                left=row["busy_start_s"],
                color="black",
                height=0.8,
            )
        idle = summarize_idle(busy, mine)
        ax.set_title(
            f"{strategy} (seed {run_seed}): server idle {idle:.0%} of the time shown", fontsize=10
        )
        ax.set_yticks(list(sorted(mine["client"].unique())) + [server_y])
        ax.set_yticklabels([str(c) for c in sorted(mine["client"].unique())] + ["server"])
        ax.set_ylabel("client")
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("simulated time (s); colour = weight set, black = server aggregating")
    fig.tight_layout()
    return fig


def idle_fraction(server: pd.DataFrame, span_s: float) -> float:
    """Share of ``[0, span_s]`` in which the server aggregated nothing (union of intervals)."""
    busy, end = 0.0, -np.inf
    for start, stop in sorted(zip(server["busy_start_s"], server["busy_end_s"], strict=True)):
        start = max(start, end)
        if stop > start:
            busy += stop - start
        end = max(end, stop)
    return float(1 - busy / span_s) if span_s > 0 else float("nan")


def summarize_idle(server: pd.DataFrame, clients: pd.DataFrame) -> float:
    """Share of the span from the first send to the last aggregation with no aggregation."""
    if server.empty:
        return float("nan")
    start = min(clients["sim_start_s"].min(), server["busy_start_s"].min())
    end = max(server["busy_end_s"].max(), clients["sim_end_s"].max())
    busy = (server["busy_end_s"] - server["busy_start_s"]).sum()
    return float(1 - busy / (end - start)) if end > start else float("nan")


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Save a figure as PNG and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
