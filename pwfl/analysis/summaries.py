"""Numbers of runs and comparisons: headline figures, idle time, bytes, round trips."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pwfl.analysis._shared import MERGED, weight_set_rows


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
    sets = weight_set_rows(rounds)
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
        if per_round["idle_s"].notna().any() and per_round["round_sim_s"].sum() > 0
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
    sets = weight_set_rows(rounds)
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
    sets = weight_set_rows(rounds)
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
