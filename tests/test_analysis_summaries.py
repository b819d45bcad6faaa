"""Run and comparison numbers, checked by hand on hand-built tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pwfl import analysis

from .run_tables import clients_table, rounds_table


def test_summarize_runs_by_hand():
    runs = analysis.summarize_runs(rounds_table(), target=0.9)
    runs = runs.set_index(["strategy", "seed", "weight_set"])
    pwfl0 = runs.loc[("pwfl", 0, "all")]
    assert pwfl0["final_accuracy"] == pytest.approx((0.88 + 0.92) / 2)
    # Each set's best, then their mean: not the better set's (0.92).
    assert pwfl0["best_accuracy"] == pytest.approx((0.88 + 0.92) / 2)
    assert pwfl0["best_of_k_final_accuracy"] == pytest.approx(0.92)
    # Set 1 reaches 0.91 in round 2; set 0 never reaches 0.9 and counts as not reached.
    assert (pwfl0["reached"], pwfl0["sets"]) == (1, 2)
    assert pwfl0["rounds_to_target"] == 2
    assert pwfl0["sim_time_to_target_s"] == pytest.approx(2.0)
    assert runs.loc[("pwfl", 0, "0"), "reached"] == 0
    assert np.isnan(runs.loc[("pwfl", 0, "0"), "rounds_to_target"])
    assert runs.loc[("pwfl", 0, "1"), "rounds_to_target"] == 2
    assert pwfl0["idle_fraction"] == pytest.approx(0.5)
    assert pwfl0["total_bytes_up"] == 6 * 100
    assert runs.loc[("pwfl", 0, "1"), "total_bytes_up"] == 3 * 100
    assert np.isnan(runs.loc[("pwfl", 1, "all"), "rounds_to_target"])  # no set reaches it
    assert runs.loc[("pwfl", 1, "all"), "reached"] == 0
    assert runs.loc[("fedavg", 1, "all"), "sim_time_to_target_s"] == pytest.approx(6.0)
    assert runs.loc[("fedavg", 0, "all"), "idle_fraction"] == pytest.approx(0.75)


def test_summarize_comparison_averages_over_seeds_per_set_and_over_all_sets():
    table = analysis.summarize_comparison(rounds_table(), target=0.9)
    assert table[["strategy", "weight_set"]].values.tolist() == [
        ["fedavg", "0"],
        ["fedavg", "all"],
        ["pwfl", "0"],
        ["pwfl", "1"],
        ["pwfl", "all"],
    ]
    table = table.set_index(["strategy", "weight_set"])
    fedavg = table.loc[("fedavg", "all")]
    assert fedavg["seeds"] == 2
    assert fedavg["final_accuracy_mean"] == pytest.approx(0.92)
    # The sample standard deviation, as the figures' bands use.
    assert fedavg["final_accuracy_std"] == pytest.approx(np.std([0.90, 0.94], ddof=1))
    pwfl = table.loc[("pwfl", "all")]
    assert pwfl["final_accuracy_mean"] == pytest.approx((0.90 + 0.82) / 2)
    # Of 4 (seed, set) pairs one reached the target: counted, not dropped.
    assert (pwfl["reached"], pwfl["sets"]) == (1, 4)
    assert pwfl["rounds_to_target_mean"] == 2
    assert table.loc[("pwfl", "1"), "reached"] == 1
    assert fedavg["mean_round_sim_s_mean"] == pytest.approx(2.0)


def test_async_summary_reports_each_sets_mean_round_and_their_mean():
    rounds = rounds_table()
    rounds = rounds[(rounds["strategy"] == "pwfl") & (rounds["seed"] == 0)]
    # Without a barrier each set keeps its own rounds: set 0's last 3 s, set 1's 1 s.
    rounds = rounds.assign(
        idle_s=np.nan, round_sim_s=np.where(rounds["weight_set"] == "0", 3.0, 1.0)
    )
    table = analysis.summarize_comparison(rounds, 0.9).set_index("weight_set")
    assert table.loc["0", "mean_round_sim_s_mean"] == pytest.approx(3.0)
    assert table.loc["1", "mean_round_sim_s_mean"] == pytest.approx(1.0)
    assert table.loc["all", "mean_round_sim_s_mean"] == pytest.approx(2.0)


def test_summarize_comparison_takes_async_idle_time_from_the_server_intervals():
    rounds = rounds_table()
    rounds = rounds[rounds["strategy"] == "pwfl"].assign(idle_s=np.nan, strategy="async")
    server = pd.DataFrame(
        {
            "strategy": "async",
            "seed": [0, 0, 1],
            "busy_start_s": [0.5, 1.0, 0.0],
            "busy_end_s": [1.5, 2.0, 1.5],
        }
    )
    table = analysis.summarize_comparison(rounds, 0.9, server=server).set_index("weight_set")
    # Seed 0: busy over [0.5, 2.0] of 3 s; seed 1: [0, 1.5] of 3 s.
    assert table.loc["all", "idle_fraction_mean"] == pytest.approx(0.5)


def test_finish_spread_is_added_from_the_clients_table():
    rounds = rounds_table()
    rounds = rounds[(rounds["strategy"] == "pwfl") & (rounds["seed"] == 0)]
    table = analysis.summarize_comparison(rounds, 0.9, clients=clients_table())
    table = table.set_index("weight_set")
    # Round trips 1.0, 1.1, 1.2, 4.0: max over median is 4 / 1.15 in both rounds.
    assert table.loc["all", "finish_spread_mean"] == pytest.approx(4.0 / 1.15)


def test_finish_spread_counts_a_retried_clients_failed_tries_and_no_failed_try_as_a_finish():
    def row(client, attempt, status, rtt, offset):
        return {
            "strategy": "pwfl",
            "seed": 0,
            "round": 1,
            "phase": "train",
            "client": client,
            "attempt": attempt,
            "status": status,
            "rtt_s": rtt,
            "offset_s": offset,
        }

    clients = pd.DataFrame(
        [
            row(0, 0, "ok", 1.0, 0.0),
            row(1, 0, "ok", 1.0, 0.0),
            row(2, 0, "retried", 0.3, 0.0),  # failed fast, then retried
            row(2, 1, "ok", 1.0, 0.3),
            row(3, 0, "retried", 0.3, 0.0),
            row(3, 1, "failed", 0.3, 0.3),  # delivered nothing
        ]
    )
    spread = analysis.finish_spread(clients)
    # Finishes 1.0, 1.0 and 1.3: the failed tries' 0.3 s are neither median nor max.
    assert spread["finish_spread"].tolist() == pytest.approx([1.3])


def test_idle_and_communication_per_round():
    idle = analysis.idle_per_round(rounds_table())
    assert len(idle) == 4 * 3  # four runs, three rounds
    assert idle.set_index(["strategy", "seed", "round"]).loc[
        ("pwfl", 0, 2), "idle_fraction"
    ] == pytest.approx(0.5)
    comm = analysis.communication_per_round(rounds_table()).set_index(["strategy", "seed"])
    assert comm.loc[("pwfl", 0), "mb_up"].tolist() == [200e-6] * 3  # two weight sets
    assert comm.loc[("fedavg", 0), "mb_down"].tolist() == [200e-6] * 3
    assert comm["mb_up"].dtype == np.float64


def test_client_summary_flags_the_slow_client():
    table = analysis.client_summary(clients_table()).set_index("client")
    assert table.loc[3, "rtt_median_s"] == pytest.approx(4.0)
    assert table.loc[3, "rtt_vs_median"] == pytest.approx(4.0 / 1.15)
    assert table.loc[3, "flagged"] == pytest.approx(0.5)
    assert table.loc[3, "local_epochs"] == pytest.approx(0.75)
    assert table.loc[0, "flagged"] == 0 and table.loc[0, "rounds"] == 2


def test_round_groups_is_a_round_by_client_table():
    groups = analysis.round_groups(clients_table())
    assert groups.index.tolist() == [1, 2]
    assert groups.loc[1].tolist() == ["0", "1", "0", "1"]
    assert groups.loc[2].tolist() == ["1", "0", "1", "0"]
    wider = analysis.round_groups(clients_table(), num_clients=6)
    assert wider.columns.tolist() == list(range(6)) and wider[5].isna().all()
