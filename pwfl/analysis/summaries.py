"""Numbers of runs and comparisons: headline figures, idle time, bytes, round trips.

Why one module of about 510 lines: every summary quantity has exactly one
implementation, and keeping them in one place is what lets each strategy's table
be computed by the same functions (a headline figure, its mean and spread over
seeds, and the per-weight-set rows all call the same helpers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pwfl.analysis import fairness
from pwfl.analysis._shared import MERGED, weight_set_rows
from pwfl.clock import idle_share
from pwfl.measures import first_reaching, total_bytes

ALL = "all"
"""The ``weight_set`` of a summary row that covers every weight set of a run."""


def _set_numbers(rows: pd.DataFrame, target: float) -> dict[str, Any]:
    """Headline numbers of one weight set from its ``rounds.csv`` rows."""
    rows = rows.sort_values("round")
    reached = bool((rows["accuracy"] >= target).any())
    numbers: dict[str, Any] = {
        "rounds": int(rows["round"].max()),
        "final_accuracy": float(rows["accuracy"].iloc[-1]),
        "best_accuracy": float(rows["accuracy"].max()),
        "reached": int(reached),
        "sets": 1,
        "rounds_to_target": first_reaching(rows, target, "round"),
        "sim_time_to_target_s": first_reaching(rows, target, "sim_time_s"),
        "wall_time_to_target_s": first_reaching(rows, target, "elapsed_wall_s"),
        "mean_round_sim_s": float(rows["round_sim_s"].mean()),
        "mean_round_wall_s": float(rows["round_wall_s"].mean()),
        "total_sim_time_s": float(rows["sim_time_s"].max()),
        "total_wall_time_s": float(rows["elapsed_wall_s"].max()),
    }
    for column in ("bytes_up", "bytes_down"):
        if column in rows:
            numbers[f"total_{column}"] = total_bytes(rows, column)
    return numbers


SET_MEANS = [
    "final_accuracy",
    "best_accuracy",
    "mean_round_sim_s",
    "mean_round_wall_s",
]
"""Numbers the ``all`` row of a run averages over its weight sets."""
TO_TARGET = ["rounds_to_target", "sim_time_to_target_s", "wall_time_to_target_s"]
"""Numbers the ``all`` row averages over the weight sets that reached the target."""


def summarize_run(
    rounds: pd.DataFrame, target: float | Mapping[str, float], server: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Headline numbers of one run: each weight set's, and ``all`` of them.

    Every number is first taken per weight set (its last and best accuracy, the
    round and simulated time at which it first reached ``target``, its mean
    round), so a strategy with K sets is compared on the same quantity as one
    with a single set. The ``all`` entry holds the mean over the sets of
    ``SET_MEANS``; the mean of ``TO_TARGET`` over the sets that reached the
    target, with ``reached`` of ``sets`` saying how many did (a set that never
    reaches it counts as not reached, not as missing); the run's totals (bytes,
    simulated and host time); the share of the simulated time the server was
    idle; labelled as such, ``best_of_k_final_accuracy``, the best set's; and
    the fairness and makespan numbers over the sets (:mod:`pwfl.analysis.fairness`:
    ``worst_accuracy``, ``accuracy_spread_std``, ``makespan_s``, ``first_target_s``).

    Parameters
    ----------
    rounds
        The ``rounds.csv`` rows of one run.
    target
        Accuracy whose first crossing is reported: one for every set, or weight
        set -> its own (:func:`pwfl.analysis.fairness.set_targets`).
    server
        The run's ``server.csv`` rows: the idle share of a run without a round
        barrier (async, whose rounds cover one set each) comes from its
        aggregation intervals (:func:`idle_fraction`).

    Returns
    -------
    dict
        ``{"0": {...}, "1": {...}, ..., "all": {...}}``; ``summary.json`` holds it.
    """
    sets = weight_set_rows(rounds)
    grouped = sets.groupby("weight_set", sort=True)
    targets = fairness.set_targets(target, [str(ws) for ws in grouped.groups])
    per_set = {str(ws): _set_numbers(rows, targets[str(ws)]) for ws, rows in grouped}
    every = pd.DataFrame(per_set.values())
    reached = every[every["reached"] == 1]
    summary = {
        "rounds": int(sets["round"].max()),
        **{name: float(every[name].mean()) for name in SET_MEANS},
        "reached": int(every["reached"].sum()),
        "sets": len(every),
        **{
            name: float(reached[name].mean()) if len(reached) else float("nan")
            for name in TO_TARGET
        },
        "total_sim_time_s": float(sets["sim_time_s"].max()),
        "total_wall_time_s": float(sets["elapsed_wall_s"].max()),
        "idle_fraction": _idle_share(sets, server),
        "best_of_k_final_accuracy": float(every["final_accuracy"].max()),
        **fairness.fairness_numbers(every),
    }
    for column in ("total_bytes_up", "total_bytes_down"):
        if column in every:
            summary[column] = int(every[column].sum())
    merged = rounds[rounds["weight_set"].astype(str) == MERGED]
    if len(merged):
        summary["merged_final_accuracy"] = float(merged.sort_values("round")["accuracy"].iloc[-1])
    return {**per_set, ALL: summary}


def _idle_share(sets: pd.DataFrame, server: pd.DataFrame | None) -> float:
    barrier = sets.groupby("round").agg(
        round_sim_s=("round_sim_s", "first"), idle_s=("idle_s", "first")
    )
    if barrier["idle_s"].notna().all() and barrier["round_sim_s"].sum() > 0:
        return float(barrier["idle_s"].sum() / barrier["round_sim_s"].sum())
    if server is not None and len(sets):
        return idle_fraction(server, float(sets["sim_time_s"].max()))
    return float("nan")


SUMMARY_METRICS = [
    "final_accuracy",
    "best_accuracy",
    "rounds_to_target",
    "sim_time_to_target_s",
    "mean_round_sim_s",
    "mean_round_wall_s",
    "total_sim_time_s",
    "total_wall_time_s",
    "idle_fraction",
    "total_bytes_up",
    "best_of_k_final_accuracy",
    *fairness.FAIRNESS_METRICS,
]
"""The numbers ``summary.csv`` gives a mean and a standard deviation over seeds."""


def finish_spread(clients: pd.DataFrame) -> pd.DataFrame:
    """Per run and round: slowest over median client finish time (1 = all finish together).

    A client's finish time is from its round's first try to the reply that
    delivered its update (``offset_s + rtt_s`` of an ``ok`` or ``late`` try), so
    a client that needed a retry counts the time its failed tries cost, and a try
    that failed (a short round trip that delivered nothing) is no finish at all.

    Parameters
    ----------
    clients
        ``clients.csv`` rows of one or more runs.

    Returns
    -------
    pandas.DataFrame
        Columns ``strategy``, ``seed``, ``round``, ``finish_spread``.
    """
    train = clients[
        (clients["phase"] == "train")
        & clients["rtt_s"].notna()
        & clients["status"].isin(["ok", "late"])
    ]
    offset = train["offset_s"].fillna(0.0) if "offset_s" in train else 0.0
    finish = offset + train["rtt_s"]
    spread = finish.groupby([train["strategy"], train["seed"], train["round"]]).agg(
        lambda t: t.max() / t.median()
    )
    return spread.rename("finish_spread").reset_index()


def summarize_runs(
    rounds: pd.DataFrame,
    target: float | Mapping[str, float],
    clients: pd.DataFrame | None = None,
    server: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per run (strategy and seed) and weight set, and one ``all`` row per run.

    Parameters
    ----------
    rounds
        ``rounds.csv`` / ``comparison.csv`` rows.
    target
        Accuracy whose first crossing is reported, or weight set -> its own
        (as for :func:`summarize_run`).
    clients
        Optional ``clients.csv`` rows: adds ``finish_spread`` (mean over rounds)
        to the ``all`` rows.
    server
        Optional ``server.csv`` rows, for the idle share of async runs.

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``seed``, ``weight_set`` and the numbers of
        :func:`summarize_run`.
    """
    per_run = []
    for (strategy, seed), run in rounds.groupby(["strategy", "seed"], sort=False):
        mine = None
        if server is not None:
            mine = server[(server["strategy"] == strategy) & (server["seed"] == seed)]
        for ws, numbers in summarize_run(run, target, mine).items():
            per_run.append({"strategy": strategy, "seed": seed, "weight_set": ws, **numbers})
    runs = pd.DataFrame(per_run)
    if clients is not None and "rtt_s" in clients:
        spread = finish_spread(clients).groupby(["strategy", "seed"])["finish_spread"].mean()
        runs = runs.join(spread, on=["strategy", "seed"])
        runs.loc[runs["weight_set"] != ALL, "finish_spread"] = np.nan
    return runs


def summarize_comparison(
    rounds: pd.DataFrame,
    target: float | Mapping[str, float],
    clients: pd.DataFrame | None = None,
    server: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per strategy and weight set (and ``all``): mean and std over seeds of the numbers.

    Parameters
    ----------
    rounds, target, clients, server
        As for :func:`summarize_runs`.

    Returns
    -------
    pandas.DataFrame
        One row per strategy and weight set in order of first appearance, its
        ``all`` row last: ``strategy``, ``weight_set``, ``target``, ``seeds``, ``reached``
        (weight sets, over all seeds, that reached the target) of ``sets``, then
        ``<metric>_mean`` and ``<metric>_std`` (sample standard deviation, as
        the figures' bands; empty with one seed) of every metric of
        ``SUMMARY_METRICS`` and ``finish_spread``. A mean of a time to the
        target is over the runs and sets that reached it. The ``all`` rows
        alone hold the fairness numbers (:mod:`pwfl.analysis.fairness`), each
        taken per seed over the sets, then averaged over seeds; ``makespan_s``
        and ``first_target_s`` are NaN when one seed's is. ``target`` is each
        set's (empty in ``all`` when the sets' differ). This is ``summary.csv``.
    """
    runs = summarize_runs(rounds, target, clients, server)
    metrics = [m for m in [*SUMMARY_METRICS, "finish_spread"] if m in runs]
    keys = ["strategy", "weight_set"]
    grouped = runs.groupby(keys, sort=False)
    table = grouped[metrics].mean().add_suffix("_mean")
    table = table.join(grouped[metrics].std(ddof=1).add_suffix("_std"))
    # The ``all`` rows' times to target: over every (seed, set) that reached it.
    per_set = runs[(runs["weight_set"] != ALL) & (runs["reached"] == 1)]
    for strategy, hit in per_set.groupby("strategy", sort=False):
        for name in TO_TARGET:
            table.loc[(strategy, ALL), f"{name}_mean"] = hit[name].mean()
            table.loc[(strategy, ALL), f"{name}_std"] = hit[name].std(ddof=1)
    for name in fairness.EVERY_SEED:
        unfinished = runs[name].isna().groupby([runs["strategy"], runs["weight_set"]]).any()
        table.loc[unfinished[unfinished].index, [f"{name}_mean", f"{name}_std"]] = np.nan
    table["target"] = _target_column(table.index.get_level_values("weight_set"), target)
    table["seeds"] = grouped["seed"].nunique()
    table["reached"] = grouped["reached"].sum()
    table["sets"] = grouped["sets"].sum()
    columns = [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    table = table[["target", "seeds", "reached", "sets", *columns]].reset_index()
    order = {name: i for i, name in enumerate(dict.fromkeys(runs["strategy"]))}
    table["_order"] = table["strategy"].map(order)
    table["_all"] = table["weight_set"] == ALL
    return (
        table.sort_values(["_order", "_all", "weight_set"], kind="stable")
        .drop(columns=["_order", "_all"])
        .reset_index(drop=True)
    )


def _target_column(weight_sets: pd.Index, target: float | Mapping[str, float]) -> list[float]:
    # One target: every row's. A target per set: each set's row its own, and the
    # ``all`` row the common one if there is one.
    if not isinstance(target, Mapping):
        return [float(target)] * len(weight_sets)
    common = set(target.values())
    shared = float(common.pop()) if len(common) == 1 else float("nan")
    return [shared if ws == ALL else float(target[ws]) for ws in weight_sets]


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
    return _idle_of_span(server, 0.0, span_s)


def _idle_of_span(server: pd.DataFrame, start_s: float, end_s: float) -> float:
    """Share of ``[start_s, end_s]`` in which the server aggregated nothing.

    The server's busy time is the union of its aggregation intervals
    (:func:`pwfl.clock.idle_share`, from the busy time that ``rounds.csv``'s
    ``idle_s`` is computed from): two aggregations that overlap count once.

    Parameters
    ----------
    server
        ``server.csv`` rows.
    start_s, end_s
        The span on the simulated clock.

    Returns
    -------
    float
        Idle share in [0, 1]; NaN for an empty span.
    """
    intervals = list(zip(server["busy_start_s"], server["busy_end_s"], strict=True))
    return idle_share(intervals, start_s, end_s)


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
        Idle share (the union of intervals, as :func:`idle_fraction`); NaN without
        aggregations.
    """
    if server.empty:
        return float("nan")
    start = min(clients["sim_start_s"].min(), server["busy_start_s"].min())
    end = max(server["busy_end_s"].max(), clients["sim_end_s"].max())
    return _idle_of_span(server, float(start), float(end))


def set_ranking(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per run and round, the weight sets ranked by server test accuracy (1 = best).

    Parameters
    ----------
    rounds
        ``rounds.csv`` rows of one or more runs (merged rows are left out).

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``seed``, ``round``, ``weight_set``, ``set_name`` (the set's
        number where the records have no names), ``accuracy`` and ``rank``; ties
        share the better rank.
    """
    rows = weight_set_rows(rounds).copy()
    if "set_name" not in rows:
        rows["set_name"] = rows["weight_set"].astype(str)
    rows["set_name"] = rows["set_name"].fillna(rows["weight_set"].astype(str))
    rows["rank"] = (
        rows.groupby(["strategy", "seed", "round"])["accuracy"]
        .rank(ascending=False, method="min")
        .astype("int64")
    )
    columns = ["strategy", "seed", "round", "weight_set", "set_name", "accuracy", "rank"]
    return rows[columns].sort_values(["strategy", "seed", "round", "rank"]).reset_index(drop=True)


def worst_set(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per run and round, the worst weight set's accuracy and the mean over sets: the
    fairness view of multi-model federated learning (every model should be good).

    Returns
    -------
    pandas.DataFrame
        ``strategy``, ``seed``, ``round``, ``worst_accuracy``, ``mean_accuracy``,
        ``best_accuracy``.
    """
    rows = weight_set_rows(rounds)
    grouped = rows.groupby(["strategy", "seed", "round"], sort=False)["accuracy"]
    return grouped.agg(
        worst_accuracy="min", mean_accuracy="mean", best_accuracy="max"
    ).reset_index()
