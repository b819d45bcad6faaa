"""Figures of runs and comparisons, from figures.py, timeline.py and structure.py."""

from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from pwfl import analysis

from .run_tables import clients_table, rounds_table, server_table


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


def test_the_timelines_server_idle_counts_overlapping_aggregations_once():
    """Both weight sets aggregate over the same half second each round: the server is
    busy 1 s of the 14.5 s shown, as the summary's union of intervals counts it."""
    server = server_table()
    fig = analysis.plot_timeline(clients_table(), server, rounds=2)
    assert "server idle 93% of the time shown" in fig.axes[0].get_title()
    assert analysis.idle_fraction(server, 14.5) == pytest.approx(1 - 1.0 / 14.5)


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


def test_plot_task_curves_has_a_panel_per_weight_set_with_the_strategies_that_trained_it():
    fig = analysis.plot_task_curves(rounds_table(), x="sim_time_s", target=0.9)
    set0, set1 = fig.axes
    assert [set0.get_title(), set1.get_title()] == ["set 0", "set 1"]
    # FedAvg trains one set: it is in set 0's panel only; the dashed line is the target.
    assert labels(set0) == ["fedavg", "pwfl", "target"]
    assert labels(set1) == ["pwfl", "target"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["fedavg", "pwfl", "target"]
    # The same strategy has the same colour in every panel.
    assert set0.get_lines()[1].get_color() == set1.get_lines()[0].get_color()
    pwfl1 = set1.get_lines()[0]
    assert pwfl1.get_xdata().tolist() == pytest.approx([1.0, 2.0, 3.0])
    assert pwfl1.get_ydata().tolist() == pytest.approx([0.45, 0.83, 0.88])
    assert set0.get_xlabel() == "simulated time (s)"


def test_plot_task_curves_draws_each_sets_own_target():
    fig = analysis.plot_task_curves(rounds_table(), target={"0": 0.9, "1": 0.8})
    targets = [ax.get_lines()[-1].get_ydata()[0] for ax in fig.axes]
    assert targets == pytest.approx([0.9, 0.8])
    assert not any("target" in labels(ax) for ax in analysis.plot_task_curves(rounds_table()).axes)


def test_plot_allocation_shows_the_weight_set_of_each_client_and_round():
    fig = analysis.plot_allocation(clients_table())
    (ax,) = fig.axes
    (image,) = ax.get_images()
    # Rows are rounds 1 and 2, columns clients 0..3; values index the sets in order.
    assert image.get_array().tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["set 0", "set 1"]
    assert ax.get_title() == "pwfl (seed 0)"


def test_plot_allocation_leaves_a_client_that_trained_nothing_blank():
    clients = clients_table()
    clients = clients[~((clients["client"] == 2) & (clients["round"] == 2))]
    (ax,) = analysis.plot_allocation(clients).axes
    image = ax.get_images()[0].get_array()
    assert image.mask.tolist() == [[False] * 4, [False, False, True, False]]
