"""Print a comparison's summary.csv as the Markdown table the README shows.

Usage::

    .venv/bin/python experiments/summary_table.py results/compare/quick/summary.csv
"""

from __future__ import annotations

import sys

import pandas as pd

COLUMNS = {
    "final_accuracy_mean": ("final acc.", "{:.3f}"),
    "best_accuracy_mean": ("best acc.", "{:.3f}"),
    "rounds_to_target_mean": ("rounds to 0.90", "{:.0f}"),
    "sim_time_to_target_s_mean": ("sim. s to 0.90", "{:.2f}"),
    "mean_round_sim_s_mean": ("sim. s / round", "{:.3f}"),
    "mean_round_wall_s_mean": ("host s / round", "{:.2f}"),
    "idle_fraction_mean": ("server idle", "{:.1%}"),
    "finish_spread_mean": ("finish spread", "{:.2f}"),
    "total_bytes_up_mean": ("MB up", "{:.1f}"),
}


def markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table (means over seeds)."""
    shown = {k: v for k, v in COLUMNS.items() if k in summary}
    header = "| strategy | " + " | ".join(label for label, _ in shown.values()) + " |"
    rule = "|---" * (len(shown) + 1) + "|"
    lines = [header, rule]
    for _, row in summary.iterrows():
        cells = []
        for key, (_, fmt) in shown.items():
            value = row[key] / 1e6 if key == "total_bytes_up_mean" else row[key]
            cells.append("–" if pd.isna(value) else fmt.format(value))
        lines.append(f"| {row['strategy']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(pd.read_csv(sys.argv[1])))
