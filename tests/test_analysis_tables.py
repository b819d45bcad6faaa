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
    # Final and best accuracy: FedAvg (0.90 + 0.94) / 2 both; PWFL finals are the means
    # of its sets, (0.90 + 0.82) / 2, its bests (0.92 + 0.84) / 2. 300 or 600 bytes up
    # round to 0.0 MB.
    assert analysis.summary_markdown(summary).splitlines() == [
        "| strategy | final acc. | best acc. | rounds to 0.90 | sim. s to 0.90 "
        "| sim. s / round | host s / round | server idle | MB up |",
        "|---|---|---|---|---|---|---|---|---|",
        "| fedavg | 0.920 | 0.920 | – | – | 2.000 | 10.00 | 75.0% | 0.0 |",
        "| pwfl | 0.860 | 0.880 | – | – | 1.000 | 10.00 | 50.0% | 0.0 |",
    ]


def test_format_summary_prints_mean_and_std_per_strategy():
    summary = analysis.summarize_comparison(rounds_table(), 0.9)
    header, fedavg, pwfl = analysis.format_summary(summary).splitlines()
    assert header == "strategy  " + "  ".join(
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
    # FedAvg's seeds reach 0.9 in round 3 (6 simulated seconds); population std.
    assert fedavg.split() == [
        "fedavg",
        "0.920±0.020",
        "0.920±0.020",
        "3.000±0.000",
        "6.000±0.000",
        "10.000±0.000",
        "2.000±0.000",
        "0.750±0.000",
    ]
    # Only PWFL's seed 0 reaches 0.9 (round 2); the mean leaves seed 1 out.
    assert pwfl.split()[:4] == ["pwfl", "0.860±0.040", "0.880±0.040", "2.000±0.000"]
