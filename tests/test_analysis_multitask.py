"""Per-seed tables of a multi-task study, on hand-built rounds."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pwfl import analysis


def rounds_of(runs: dict[tuple[str, int], dict[str, list[float]]], round_s: dict[str, float]):
    """Rounds rows: (strategy, seed) -> task name -> accuracy per round; each round of a
    strategy lasts ``round_s[strategy]`` simulated seconds."""
    rows = []
    for (strategy, seed), tasks in runs.items():
        for ws, (name, accuracies) in enumerate(tasks.items()):
            for r, acc in enumerate(accuracies, start=1):
                rows.append(
                    {
                        "strategy": strategy,
                        "seed": seed,
                        "round": r,
                        "weight_set": str(ws),
                        "set_name": name,
                        "accuracy": acc,
                        "sim_time_s": round_s[strategy] * r,
                    }
                )
    return pd.DataFrame(rows)


RUNS = {
    ("fair", 0): {"easy": [0.5, 0.8], "hard": [0.1, 0.4]},
    ("fair", 1): {"easy": [0.5, 0.7], "hard": [0.2, 0.3]},
    ("plain", 0): {"easy": [0.6, 0.9], "hard": [0.1, 0.2]},
    ("plain", 1): {"easy": [0.6, 0.9], "hard": [0.1, 0.35]},
    ("one-by-one", 0): {"easy": [0.6, 0.9], "hard": [0.1, 0.2]},
    ("one-by-one", 1): {"easy": [0.6, 0.9], "hard": [0.1, 0.35]},
}
SECONDS = {"fair": 1.0, "plain": 1.0, "one-by-one": 2.5}


def test_each_task_ends_at_its_last_round_and_the_run_at_its_last_end():
    finals = analysis.task_finals(rounds_of(RUNS, SECONDS))
    fair0 = finals[(finals["strategy"] == "fair") & (finals["seed"] == 0)]
    assert fair0["final_accuracy"].tolist() == [0.8, 0.4]
    assert fair0["total_sim_time_s"].tolist() == [2.0, 2.0]
    assert set(finals["rounds"]) == {2}


def test_the_policy_table_gives_the_worst_and_mean_task_per_run():
    table = analysis.policy_table(analysis.task_finals(rounds_of(RUNS, SECONDS)))
    row = table[(table["strategy"] == "plain") & (table["seed"] == 1)].iloc[0]
    assert (row["easy"], row["hard"]) == (0.9, 0.35)
    assert row["worst_accuracy"] == 0.35
    assert math.isclose(row["mean_accuracy"], 0.625)


def test_concurrent_against_sequential_per_seed_and_task():
    finals = analysis.task_finals(rounds_of(RUNS, SECONDS))
    out = analysis.concurrent_vs_sequential(finals, "plain", "one-by-one")
    assert len(out) == 4
    assert (out["accuracy_gap"] == 0).all()
    assert out["time_ratio"].tolist() == [0.4] * 4  # 2 s against 5 s
    with pytest.raises(ValueError, match="'missing'"):
        analysis.concurrent_vs_sequential(finals, "missing", "plain")


def test_a_contrast_holds_on_every_seed_only_when_its_smallest_gain_does():
    table = analysis.policy_table(analysis.task_finals(rounds_of(RUNS, SECONDS)))
    out = analysis.policy_contrast(table, "fair", "plain")
    per_seed = out[out["seed"] != "every"]
    # Seed 0: worst 0.4 against 0.2; seed 1: 0.3 against 0.35.
    assert per_seed["worst_gain"].round(9).tolist() == [0.2, -0.05]
    assert per_seed["mean_gain"].round(9).tolist() == [0.05, -0.125]
    every = out[out["seed"] == "every"].iloc[0]
    assert math.isclose(every["worst_gain"], -0.05)  # better on seed 0 only: not on every seed
    assert math.isclose(every["mean_gain"], -0.125)


def test_times_to_target_give_each_runs_makespan_only_when_every_task_reached_its_own():
    rounds = rounds_of(RUNS, SECONDS)
    finals = analysis.task_finals(rounds, {"0": 0.8, "1": 0.3})
    fair0 = finals[(finals["strategy"] == "fair") & (finals["seed"] == 0)]
    assert fair0["sim_time_to_target_s"].tolist() == [2.0, 2.0]
    table = analysis.policy_table(finals).set_index(["strategy", "seed"])
    assert table.loc[("fair", 0), "makespan_s"] == 2.0
    assert table.loc[("one-by-one", 1), "makespan_s"] == 5.0  # 0.35 >= 0.3 at round 2
    assert math.isnan(table.loc[("plain", 0), "makespan_s"])  # the hard task stays at 0.2
