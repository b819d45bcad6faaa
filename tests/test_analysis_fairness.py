"""Fairness and makespan over a run's weight sets, checked on a hand-built two-task table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pwfl import analysis


def two_task_rounds() -> pd.DataFrame:
    """Two seeds of a run with two weight sets and three rounds.

    Set 0's rounds end at 2, 4, 6 simulated seconds, set 1's at 3, 6, 9 (no
    barrier). With target 0.8: in seed 0 set 0 first reaches it at 4 s and set 1
    at 9 s; in seed 1 set 0 at 2 s (and falls to 0.7 after) and set 1 never.
    """
    acc = {
        (0, "0"): [0.50, 0.80, 0.90],
        (0, "1"): [0.60, 0.70, 0.95],
        (1, "0"): [0.85, 0.90, 0.70],
        (1, "1"): [0.50, 0.60, 0.70],
    }
    step = {"0": 2.0, "1": 3.0}
    rows = [
        {
            "strategy": "mm",
            "seed": seed,
            "round": r,
            "weight_set": ws,
            "accuracy": a,
            "round_wall_s": 1.0,
            "elapsed_wall_s": float(r),
            "round_sim_s": step[ws],
            "sim_time_s": step[ws] * r,
            "idle_s": np.nan,
        }
        for (seed, ws), values in acc.items()
        for r, a in enumerate(values, start=1)
    ]
    return analysis.typed(pd.DataFrame(rows), analysis.ROUND_TYPES)


def test_each_runs_worst_set_spread_makespan_and_first_target_by_hand():
    runs = analysis.summarize_runs(two_task_rounds(), target=0.8)
    runs = runs.set_index(["seed", "weight_set"])
    seed0, seed1 = runs.loc[(0, "all")], runs.loc[(1, "all")]
    assert seed0["worst_accuracy"] == pytest.approx(0.90)
    assert seed1["worst_accuracy"] == pytest.approx(0.70)
    # Population std over the two sets: half their difference.
    assert seed0["accuracy_spread_std"] == pytest.approx(0.025)
    assert seed1["accuracy_spread_std"] == pytest.approx(0.0)
    assert seed0["makespan_s"] == pytest.approx(9.0)  # max(4, 9)
    assert seed0["first_target_s"] == pytest.approx(4.0)  # min(4, 9)
    assert np.isnan(seed1["makespan_s"])  # set 1 never reaches 0.8
    assert seed1["first_target_s"] == pytest.approx(2.0)
    # Only the rows over all sets hold them.
    assert np.isnan(runs.loc[(0, "0"), "worst_accuracy"])


def test_summary_averages_the_per_seed_numbers_and_a_makespan_needs_every_seed():
    table = analysis.summarize_comparison(two_task_rounds(), target=0.8)
    every = table.set_index("weight_set").loc["all"]
    assert every["worst_accuracy_mean"] == pytest.approx((0.90 + 0.70) / 2)
    assert every["worst_accuracy_std"] == pytest.approx(np.std([0.90, 0.70], ddof=1))
    assert every["accuracy_spread_std_mean"] == pytest.approx((0.025 + 0.0) / 2)
    assert every["first_target_s_mean"] == pytest.approx(3.0)
    assert every["first_target_s_std"] == pytest.approx(np.std([4.0, 2.0], ddof=1))
    # Seed 1 never finishes both tasks: no makespan, rather than seed 0's alone.
    assert np.isnan(every["makespan_s_mean"]) and np.isnan(every["makespan_s_std"])
    # The mean over sets is final_accuracy's ``all`` row, not a column of its own.
    assert every["final_accuracy_mean"] == pytest.approx(((0.90 + 0.95) / 2 + 0.70) / 2)
    assert "mean_accuracy_mean" not in table
    assert every["best_of_k_final_accuracy_mean"] == pytest.approx((0.95 + 0.70) / 2)


def test_a_target_per_weight_set():
    targets = {"0": 0.8, "1": 0.7}
    runs = analysis.summarize_runs(two_task_rounds(), target=targets)
    runs = runs.set_index(["seed", "weight_set"])
    # Set 1 reaches 0.7 at 6 s in seed 0 and at 9 s in seed 1.
    assert runs.loc[(0, "all"), "makespan_s"] == pytest.approx(6.0)
    assert runs.loc[(1, "all"), "makespan_s"] == pytest.approx(9.0)
    assert runs.loc[(1, "1"), "reached"] == 1
    table = analysis.summarize_comparison(two_task_rounds(), target=targets)
    table = table.set_index("weight_set")
    assert table.loc["all", "makespan_s_mean"] == pytest.approx(7.5)
    assert table.loc["1", "target"] == pytest.approx(0.7)
    assert np.isnan(table.loc["all", "target"])  # the sets' targets differ


def test_set_targets_names_the_set_without_a_target():
    assert analysis.set_targets(0.9, ["0", "1"]) == {"0": 0.9, "1": 0.9}
    with pytest.raises(KeyError, match="weight set 1"):
        analysis.set_targets({"0": 0.9}, ["0", "1"])


def test_the_functions_on_one_runs_numbers():
    final = pd.Series({"0": 0.6, "1": 0.9, "2": 0.75})
    assert analysis.worst_accuracy(final) == pytest.approx(0.6)
    assert analysis.accuracy_spread_std(final) == pytest.approx(np.sqrt(0.045 / 3))
    times = pd.Series({"0": 5.0, "1": np.nan, "2": 3.0})
    assert np.isnan(analysis.makespan_s(times))
    assert analysis.makespan_s(times.dropna()) == pytest.approx(5.0)
    assert analysis.first_target_s(times) == pytest.approx(3.0)
    assert np.isnan(analysis.first_target_s(pd.Series([np.nan, np.nan])))
