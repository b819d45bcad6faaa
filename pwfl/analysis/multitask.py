"""Multi-task studies: one pool of clients, a task per weight set, several group policies.

Usage::

    rounds = load_results("results/mmfl/policies").rounds
    finals = task_finals(rounds)                  # (strategy, seed, set): final accuracy, time
    by_policy = policy_table(finals)              # per run: each task, the worst, the mean
    a = concurrent_vs_sequential(finals, "pwfl group_policy=complementary", "pwfl-sequential")
    b = policy_contrast(by_policy, "pwfl group_policy=alpha-fair", "pwfl group_policy=random")

Every number here is per seed: a claim about a policy holds when it holds on every seed
(the smallest gain over the seeds, :func:`policy_contrast`'s ``every`` row), never on
their mean alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from pwfl.analysis.fairness import makespan_s, set_targets
from pwfl.measures import first_reaching
from pwfl.schema import MERGED


def task_finals(
    rounds: pd.DataFrame, target: float | Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Each run's tasks at the run's end.

    Parameters
    ----------
    rounds
        ``rounds.csv`` or ``comparison.csv`` rows (``strategy``, ``seed``,
        ``weight_set``, ``set_name``, ``round``, ``accuracy``, ``sim_time_s``).
    target
        The target accuracy, one or weight set -> its own
        (:meth:`pwfl.config.Config.targets`); with it, each set's
        ``sim_time_to_target_s`` too (NaN when it never reached it).

    Returns
    -------
    pandas.DataFrame
        One row per (strategy, seed, weight set): ``set_name``, ``final_accuracy`` (the
        set's last round), ``rounds`` (its last round) and ``total_sim_time_s`` (when the
        run's last round ended: every task is done then).
    """
    rows = rounds[rounds["weight_set"].astype(str) != MERGED].sort_values("round")
    keys = ["strategy", "seed", "weight_set"]
    last = rows.groupby(keys, sort=False).tail(1)
    out = last[[*keys, "set_name", "round", "accuracy"]].rename(
        columns={"round": "rounds", "accuracy": "final_accuracy"}
    )
    ends = rows.groupby(["strategy", "seed"])["sim_time_s"].max().rename("total_sim_time_s")
    out = out.merge(ends.reset_index(), on=["strategy", "seed"])
    out["weight_set"] = out["weight_set"].astype(str)
    if target is not None:
        targets = set_targets(target, out["weight_set"].unique())
        reached = {
            (strategy, seed, str(ws)): first_reaching(group, targets[str(ws)], "sim_time_s")
            for (strategy, seed, ws), group in rows.groupby(keys)
        }
        out["sim_time_to_target_s"] = [
            reached[(r.strategy, r.seed, r.weight_set)] for r in out.itertuples()
        ]
    return out.sort_values(keys).reset_index(drop=True)


def policy_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Per run (strategy, seed): each task's final accuracy (a column per ``set_name``),
    the worst task's (``worst_accuracy``), their mean (``mean_accuracy``), the run's
    simulated time and, when ``finals`` has times to target, the makespan (when the
    last task reached its target, :func:`pwfl.analysis.fairness.makespan_s`)."""
    wide = finals.pivot_table(
        index=["strategy", "seed"], columns="set_name", values="final_accuracy", sort=False
    )
    tasks = list(dict.fromkeys(finals["set_name"]))
    wide = wide[tasks]
    wide.columns.name = None
    wide["worst_accuracy"] = wide[tasks].min(axis=1)
    wide["mean_accuracy"] = wide[tasks].mean(axis=1)
    runs = finals.groupby(["strategy", "seed"], sort=False)
    wide["total_sim_time_s"] = runs["total_sim_time_s"].first()
    if "sim_time_to_target_s" in finals:
        wide["makespan_s"] = runs["sim_time_to_target_s"].agg(makespan_s)
    return wide.reset_index()


def concurrent_vs_sequential(
    finals: pd.DataFrame, concurrent: str, sequential: str
) -> pd.DataFrame:
    """Per seed and task: the concurrent run's final accuracy and simulated time against
    those of the run that trains the same sets one after another.

    Returns
    -------
    pandas.DataFrame
        ``seed``, ``set_name``, ``concurrent_accuracy``, ``sequential_accuracy``,
        ``accuracy_gap`` (concurrent minus sequential), ``concurrent_sim_s``,
        ``sequential_sim_s`` and ``time_ratio`` (concurrent over sequential; 1/K when the
        K tasks' groups take equal time).
    """
    a = finals[finals["strategy"] == concurrent]
    b = finals[finals["strategy"] == sequential]
    if a.empty or b.empty:
        missing = concurrent if a.empty else sequential
        raise ValueError(f"no runs of strategy {missing!r} in the table")
    both = a.merge(b, on=["seed", "weight_set", "set_name"], suffixes=("_c", "_s"))
    out = pd.DataFrame(
        {
            "seed": both["seed"],
            "set_name": both["set_name"],
            "concurrent_accuracy": both["final_accuracy_c"],
            "sequential_accuracy": both["final_accuracy_s"],
            "accuracy_gap": both["final_accuracy_c"] - both["final_accuracy_s"],
            "concurrent_sim_s": both["total_sim_time_s_c"],
            "sequential_sim_s": both["total_sim_time_s_s"],
        }
    )
    out["time_ratio"] = out["concurrent_sim_s"] / out["sequential_sim_s"]
    return out.sort_values(["seed", "set_name"]).reset_index(drop=True)


def policy_contrast(table: pd.DataFrame, policy: str, baseline: str) -> pd.DataFrame:
    """Per seed: ``policy`` against ``baseline`` on the worst task and the mean.

    Parameters
    ----------
    table
        :func:`policy_table`'s rows.
    policy, baseline
        Two of its ``strategy`` labels.

    Returns
    -------
    pandas.DataFrame
        ``seed``, ``worst`` and ``worst_baseline``, ``worst_gain`` (policy minus
        baseline), ``mean``, ``mean_baseline``, ``mean_gain``; then a last row, ``seed``
        ``"every"``, whose gains are the smallest over the seeds: above 0 there means
        the policy did better on every seed.
    """
    a = table[table["strategy"] == policy].set_index("seed")
    b = table[table["strategy"] == baseline].set_index("seed")
    if a.empty or b.empty:
        missing = policy if a.empty else baseline
        raise ValueError(f"no runs of strategy {missing!r} in the table")
    seeds = a.index.intersection(b.index)
    out = pd.DataFrame(
        {
            "worst": a.loc[seeds, "worst_accuracy"],
            "worst_baseline": b.loc[seeds, "worst_accuracy"],
            "mean": a.loc[seeds, "mean_accuracy"],
            "mean_baseline": b.loc[seeds, "mean_accuracy"],
        }
    )
    out["worst_gain"] = out["worst"] - out["worst_baseline"]
    out["mean_gain"] = out["mean"] - out["mean_baseline"]
    out = out.reset_index().astype({"seed": object})
    every = {
        "seed": "every",
        "worst_gain": out["worst_gain"].min(),
        "mean_gain": out["mean_gain"].min(),
    }
    out = pd.concat([out, pd.DataFrame([every])], ignore_index=True)
    return out[
        ["seed", "worst", "worst_baseline", "worst_gain", "mean", "mean_baseline", "mean_gain"]
    ]
