"""Loading, summarising and plotting run tables, checked on hand-built tables."""

from __future__ import annotations

import subprocess
import sys

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from pwfl import analysis

from .conftest import ROOT


def rounds_table() -> pd.DataFrame:
    """Two seeds of FedAvg (one weight set) and PWFL (two), three rounds each.

    Every round lasts 2 simulated seconds (1 for PWFL), of which the server is
    idle 1.5 s (0.5 s for PWFL); each weight set moves 100 bytes up and 200 down.
    """
    acc = {
        ("fedavg", 0, "0"): [0.50, 0.80, 0.90],
        ("fedavg", 1, "0"): [0.60, 0.85, 0.94],
        ("pwfl", 0, "0"): [0.40, 0.70, 0.88],
        ("pwfl", 0, "1"): [0.45, 0.91, 0.92],
        ("pwfl", 1, "0"): [0.40, 0.70, 0.80],
        ("pwfl", 1, "1"): [0.45, 0.75, 0.84],
    }
    rows = []
    for (strategy, seed, ws), values in acc.items():
        round_s = 2.0 if strategy == "fedavg" else 1.0
        idle_s = 1.5 if strategy == "fedavg" else 0.5
        for r, a in enumerate(values, start=1):
            rows.append(
                {
                    "strategy": strategy,
                    "seed": seed,
                    "round": r,
                    "weight_set": ws,
                    "accuracy": a,
                    "round_wall_s": 10.0,
                    "wall_time_s": 10.0 * r,
                    "round_sim_s": round_s,
                    "sim_time_s": round_s * r,
                    "idle_s": idle_s,
                    "bytes_up": 100,
                    "bytes_down": 200,
                }
            )
    return analysis.typed(pd.DataFrame(rows), analysis.ROUND_TYPES)


def clients_table() -> pd.DataFrame:
    """One PWFL run: four clients, two rounds; client 3 is slow and flagged in round 2."""
    rows = []
    groups = {1: {0: "0", 1: "1", 2: "0", 3: "1"}, 2: {0: "1", 1: "0", 2: "1", 3: "0"}}
    for r, split in groups.items():
        for client, ws in split.items():
            rtt = 4.0 if client == 3 else 1.0 + 0.1 * client
            rows.append(
                {
                    "strategy": "pwfl",
                    "seed": 0,
                    "round": r,
                    "phase": "train",
                    "client": client,
                    "weight_set": ws,
                    "status": "ok",
                    "straggler": client == 3 and r == 2,
                    "local_epochs": 0.5 if client == 3 and r == 2 else 1.0,
                    "compute_s": rtt - 0.5,
                    "rtt_s": rtt,
                    "sim_start_s": 10.0 * (r - 1),
                    "sim_end_s": 10.0 * (r - 1) + rtt,
                }
            )
        rows.append(
            {"strategy": "pwfl", "seed": 0, "round": r, "phase": "evaluate", "client": 0}
            | {"weight_set": "0", "status": "ok", "straggler": None}
        )
    return analysis.typed(pd.DataFrame(rows), analysis.CLIENT_TYPES)


def server_table() -> pd.DataFrame:
    rows = [
        {"strategy": "pwfl", "seed": 0, "round": r, "weight_set": ws}
        | {"busy_start_s": 10.0 * (r - 1) + 4.0, "busy_end_s": 10.0 * (r - 1) + 4.5}
        for r in (1, 2)
        for ws in ("0", "1")
    ]
    return analysis.typed(pd.DataFrame(rows), analysis.SERVER_TYPES)


# --------------------------------------------------------------------------- loading


ROUNDS_CSV = """\
strategy,seed,round,weight_set,accuracy,num_examples,round_wall_s,wall_time_s,round_sim_s,\
sim_time_s,idle_s,bytes_up
pwfl,0,1,0,0.5,800,3.0,3.0,1.5,1.5,1.0,100
pwfl,0,1,1,0.6,800,3.0,3.0,1.5,1.5,1.0,100
pwfl,0,1,merged,0.7,,3.0,3.0,1.5,1.5,1.0,
"""
CLIENTS_CSV = """\
strategy,seed,round,phase,client,weight_set,num_examples,status,straggler,local_epochs,\
bytes_up,rtt_s
pwfl,0,1,train,0,0,400,ok,False,1.0,50.0,1.25
pwfl,0,1,train,1,1,400,ok,True,0.5,50.0,2.5
pwfl,0,1,evaluate,1,1,400,ok,,,,
"""
SERVER_CSV = """strategy,seed,round,weight_set,busy_start_s,busy_end_s
pwfl,0,1,0,1.0,1.5
"""


def write_run(folder, strategy="pwfl", target=0.8):
    folder.mkdir(parents=True)
    (folder / "rounds.csv").write_text(ROUNDS_CSV.replace("pwfl", strategy))
    (folder / "clients.csv").write_text(CLIENTS_CSV.replace("pwfl", strategy))
    (folder / "server.csv").write_text(SERVER_CSV.replace("pwfl", strategy))
    (folder / "config.toml").write_text(f"seed = 0\n[strategy]\ntarget_accuracy = {target}\n")


def test_loaders_type_every_column(tmp_path):
    write_run(tmp_path / "run")
    rounds = analysis.load_rounds(tmp_path / "run")
    assert rounds["weight_set"].tolist() == ["0", "1", "merged"]
    assert pd.api.types.is_string_dtype(rounds["weight_set"])
    assert str(rounds["num_examples"].dtype) == "Int64" and rounds["num_examples"].isna().sum() == 1
    assert rounds["round"].dtype == np.int64 and rounds["round_sim_s"].dtype == np.float64
    clients = analysis.load_clients(tmp_path / "run")
    assert clients["weight_set"].tolist() == ["0", "1", "1"]
    assert str(clients["straggler"].dtype) == "boolean"
    assert clients["straggler"].tolist()[:2] == [False, True] and clients["straggler"].isna()[2]
    assert str(clients["bytes_up"].dtype) == "Int64" and clients["client"].dtype == np.int64
    assert clients["local_epochs"].dtype == np.float64
    server = analysis.load_server(tmp_path / "run")
    assert server["weight_set"].tolist() == ["0"] and server["busy_end_s"].dtype == np.float64


def test_loaders_name_the_folder_when_files_are_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="rounds.csv"):
        analysis.load_rounds(tmp_path)
    with pytest.raises(FileNotFoundError, match="clients.csv"):
        analysis.load_clients(tmp_path)


def test_load_results_keeps_the_comparisons_runs_and_reads_the_target(tmp_path):
    write_run(tmp_path / "pwfl-seed0", target=0.8)
    write_run(tmp_path / "older-seed0", strategy="older")  # left over from another comparison
    (tmp_path / "comparison.csv").write_text(ROUNDS_CSV)
    results = analysis.load_results(tmp_path)
    assert results.target == 0.8
    assert set(results.clients["strategy"]) == {"pwfl"}
    assert set(results.server["strategy"]) == {"pwfl"}
    assert len(results.clients) == 3
    assert analysis.load_results(tmp_path, target=0.55).target == 0.55


def test_load_results_of_a_comparison_without_run_folders(tmp_path):
    (tmp_path / "comparison.csv").write_text(ROUNDS_CSV)
    results = analysis.load_results(tmp_path)
    assert results.clients is None and results.server is None
    assert results.target == 0.9  # strategy.target_accuracy's default
    assert results.summary()["final_accuracy_mean"].tolist() == [pytest.approx(0.55)]


def test_repo_root_is_found_from_the_notebooks_folder(tmp_path):
    assert analysis.repo_root(ROOT / "notebooks") == ROOT
    assert analysis.repo_root(ROOT / "pwfl" / "strategies") == ROOT
    with pytest.raises(FileNotFoundError):
        analysis.repo_root(tmp_path)


# ------------------------------------------------------------------------- summaries


def test_summarize_runs_by_hand():
    runs = analysis.summarize_runs(rounds_table(), target=0.9).set_index(["strategy", "seed"])
    pwfl0 = runs.loc[("pwfl", 0)]
    assert pwfl0["final_accuracy"] == pytest.approx((0.88 + 0.92) / 2)
    assert pwfl0["best_accuracy"] == pytest.approx(0.92)
    assert pwfl0["rounds_to_target"] == 2  # set 1 reaches 0.91 in round 2
    assert pwfl0["sim_time_to_target_s"] == pytest.approx(2.0)
    assert pwfl0["idle_fraction"] == pytest.approx(0.5)
    assert pwfl0["total_bytes_up"] == 6 * 100
    assert np.isnan(runs.loc[("pwfl", 1), "rounds_to_target"])  # never reaches 0.9
    assert runs.loc[("fedavg", 1), "sim_time_to_target_s"] == pytest.approx(6.0)
    assert runs.loc[("fedavg", 0), "idle_fraction"] == pytest.approx(0.75)


def test_summarize_comparison_averages_over_seeds():
    table = analysis.summarize_comparison(rounds_table(), target=0.9).set_index("strategy")
    assert table.index.tolist() == ["fedavg", "pwfl"]
    assert table.loc["fedavg", "seeds"] == 2
    assert table.loc["fedavg", "final_accuracy_mean"] == pytest.approx(0.92)
    assert table.loc["fedavg", "final_accuracy_std"] == pytest.approx(0.02)  # population std
    assert table.loc["pwfl", "final_accuracy_mean"] == pytest.approx((0.90 + 0.82) / 2)
    # A seed that never reaches the target is left out of the mean, not counted as 0.
    assert table.loc["pwfl", "rounds_to_target_mean"] == 2
    assert table.loc["fedavg", "mean_round_sim_s_mean"] == pytest.approx(2.0)


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
    table = analysis.summarize_comparison(rounds, 0.9, server=server)
    # Seed 0: busy over [0.5, 2.0] of 3 s; seed 1: [0, 1.5] of 3 s.
    assert table["idle_fraction_mean"].iloc[0] == pytest.approx(0.5)


def test_finish_spread_is_added_from_the_clients_table():
    rounds = rounds_table()
    rounds = rounds[(rounds["strategy"] == "pwfl") & (rounds["seed"] == 0)]
    table = analysis.summarize_comparison(rounds, 0.9, clients=clients_table())
    # Round trips 1.0, 1.1, 1.2, 4.0: max over median is 4 / 1.15 in both rounds.
    assert table["finish_spread_mean"].iloc[0] == pytest.approx(4.0 / 1.15)


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


def test_summary_view_labels_means_and_megabytes():
    summary = analysis.summarize_comparison(rounds_table(), 0.9)
    view = analysis.summary_view(summary)
    assert view.index.tolist() == ["fedavg", "pwfl"]
    assert "final acc." in view and "MB up" in view and "finish spread" not in view
    assert view.loc["pwfl", "MB up"] == pytest.approx(600e-6)


# --------------------------------------------------------------------------- figures


def labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def test_plot_convergence_draws_one_line_per_weight_set_with_seed_bands():
    fig = analysis.plot_convergence(rounds_table(), x=("round", "sim_time_s"))
    rounds_ax, sim_ax = fig.axes
    assert labels(rounds_ax) == ["fedavg", "pwfl / set 0", "pwfl / set 1"]
    assert rounds_ax.get_xlabel() == "round" and sim_ax.get_xlabel() == "simulated time (s)"
    assert rounds_ax.get_ylabel() == "server test accuracy"
    # Two seeds: every line has a band of ±1 std.
    assert sum(isinstance(c, PolyCollection) for c in rounds_ax.collections) == 3
    fedavg = rounds_ax.get_lines()[0]
    assert fedavg.get_ydata().tolist() == pytest.approx([0.55, 0.825, 0.92])
    assert sim_ax.get_lines()[0].get_xdata().tolist() == pytest.approx([2.0, 4.0, 6.0])


def test_plot_convergence_mean_over_weight_sets():
    fig = analysis.plot_convergence(rounds_table(), x=("round",), weight_sets="mean")
    (ax,) = fig.axes
    assert labels(ax) == ["fedavg", "pwfl"]
    final = (0.88 + 0.92) / 2, (0.80 + 0.84) / 2
    assert ax.get_lines()[1].get_ydata()[-1] == pytest.approx(np.mean(final))
    with pytest.raises(ValueError, match="weight_sets"):
        analysis.plot_convergence(rounds_table(), weight_sets="best")


def test_plot_convergence_without_seed_bands_for_one_seed():
    rounds = rounds_table()
    fig = analysis.plot_convergence(rounds[rounds["seed"] == 0])
    assert len(fig.axes) == 3
    assert not any(isinstance(c, PolyCollection) for c in fig.axes[0].collections)


def test_plot_timeline_has_one_bar_row_per_client_and_the_server():
    fig = analysis.plot_timeline(clients_table(), server_table(), rounds=2)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "1", "2", "3", "server"]
    assert len(ax.collections) == 4 + 1
    # Client 3's bars: one per round, as long as its round trips.
    slow = ax.collections[3].get_paths()
    assert [p.get_extents().width for p in slow] == pytest.approx([4.0, 4.0])
    assert "pwfl (seed 0)" in ax.get_title()


def test_plot_round_trips_marks_flagged_clients_red():
    fig = analysis.plot_round_trips(clients_table())
    (ax,) = fig.axes
    boxes = list(ax.patches)
    assert len(boxes) == 4
    red = mcolors.to_rgb("tab:red")
    assert [mcolors.to_rgb(b.get_facecolor()) == red for b in boxes] == [False] * 3 + [True]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]


def test_plot_communication_bars_are_megabytes_per_round():
    fig = analysis.plot_communication(rounds_table())
    up, down = fig.axes
    heights = sorted({round(p.get_height(), 9) for p in up.patches})
    assert heights == [100e-6, 200e-6]  # FedAvg one set, PWFL two sets
    assert len(down.patches) == 2 * 3  # two strategies, three rounds
    assert [t.get_text() for t in down.get_legend().get_texts()] == ["fedavg", "pwfl"]


def test_plot_round_structure_names_each_groups_clients():
    fig = analysis.plot_round_structure(analysis.round_groups(clients_table()), at_round=2)
    left, right = fig.axes[:2]
    texts = " ".join(t.get_text() for t in left.texts)
    assert "clients 1, 3" in texts and "clients 0, 2" in texts and "K = 2" in left.get_title()
    image = right.get_images()[0].get_array()
    assert image.tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]]


def test_save_figure_writes_a_png(tmp_path):
    path = analysis.save_figure(analysis.plot_convergence(rounds_table()), tmp_path / "a" / "c.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analysis_imports_neither_flower_nor_ray():
    code = (
        "import sys, pwfl.analysis; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flwr', 'ray', 'torch'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
