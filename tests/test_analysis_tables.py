"""The README's Markdown table and the CLI's text table of a comparison summary."""

from __future__ import annotations

import pytest

from pwfl import analysis

from .run_tables import rounds_table


def test_summary_view_labels_means_and_megabytes():
    summary = analysis.summarize_comparison(rounds_table(), 0.9)
    view = analysis.summary_view(summary)
    assert view.index.tolist() == ["fedavg", "pwfl"]
    assert "final acc." in view and "MB up" in view and "finish spread" not in view
    assert view.loc["pwfl", "MB up"] == pytest.approx(600e-6)


def test_summary_markdown_formats_means_and_dashes_a_target_never_reached():
    summary = analysis.summarize_comparison(rounds_table(), 0.95)  # no run reaches 0.95
    # Final and best accuracy: FedAvg (0.90 + 0.94) / 2 both; PWFL's are means over its
    # sets, then over seeds: finals (0.90 + 0.82) / 2, each set's best the same here.
    # 300 or 600 bytes up round to 0.0 MB.
    assert analysis.summary_markdown(summary).splitlines() == [
        "| strategy | final acc. | best acc. | reached 0.95 | rounds to 0.95 | sim. s to 0.95 "
        "| sim. s / round | server idle | MB up |",
        "|---|---|---|---|---|---|---|---|---|",
        "| fedavg | 0.920 | 0.920 | 0/2 | – | – | 2.000 | 75.0% | 0.0 |",
        "| pwfl | 0.860 | 0.860 | 0/4 | – | – | 1.000 | 50.0% | 0.0 |",
    ]


def test_the_host_column_is_shown_only_when_asked_for():
    summary = analysis.summarize_comparison(rounds_table(), 0.95)
    assert "host s / round" not in analysis.summary_markdown(summary)
    lines = analysis.summary_markdown(summary, host=True).splitlines()
    assert lines[0].endswith("| sim. s / round | server idle | MB up | host s / round |")
    assert lines[2] == "| fedavg | 0.920 | 0.920 | 0/2 | – | – | 2.000 | 75.0% | 0.0 | 10.00 |"


def test_summary_markdown_can_show_every_weight_set():
    summary = analysis.summarize_comparison(rounds_table(), 0.9)
    rows = analysis.summary_markdown(summary, each_set=True).splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [
        "| fedavg / set 0",
        "| fedavg",
        "| pwfl / set 0",
        "| pwfl / set 1",
        "| pwfl",
    ]
    # Per set: set 1 reached 0.9 in one seed of two, set 0 in none.
    assert [row.split(" | ")[3] for row in rows[2:]] == ["0/2", "1/2", "1/4"]


def test_format_summary_prints_mean_and_std_per_strategy():
    summary = analysis.summarize_comparison(rounds_table(), 0.9)
    header, fedavg, pwfl = analysis.format_summary(summary).splitlines()
    assert header == "strategy   reached  " + "  ".join(
        f"{h:>13}"
        for h in (
            "final acc",
            "best acc",
            "rounds->tgt",
            "sim s->tgt",
            "round wall s",
            "round sim s",
            "idle",
        )
    )
    # FedAvg's seeds reach 0.9 in round 3 (6 simulated seconds); sample std.
    assert fedavg.split() == [
        "fedavg",
        "2/2",
        "0.920±0.028",
        "0.920±0.028",
        "3.000±0.000",
        "6.000±0.000",
        "10.000±0.000",
        "2.000±0.000",
        "0.750±0.000",
    ]
    # Only PWFL's set 1 of seed 0 reaches 0.9 (round 2): 1 of 4 sets, no std of one value.
    assert pwfl.split()[:5] == ["pwfl", "1/4", "0.860±0.057", "0.860±0.057", "2.000"]
