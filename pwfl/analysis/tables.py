"""Comparison summaries as the README's Markdown table and the text table of the CLI."""

from __future__ import annotations

import pandas as pd

SUMMARY_COLUMNS = {
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
"""``summary.csv`` columns shown in the README's tables: (label, format)."""


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The README's view of a comparison summary: means over seeds, readable names.

    Parameters
    ----------
    summary
        A ``summary.csv`` table (:func:`summarize_comparison`).

    Returns
    -------
    pandas.DataFrame
        Indexed by strategy, one column per entry of ``SUMMARY_COLUMNS`` that
        the summary has, labelled as in the README; bytes in megabytes.
    """
    shown = [c for c in SUMMARY_COLUMNS if c in summary]
    view = summary.set_index("strategy")[shown].astype("float64")
    if "total_bytes_up_mean" in view:
        view["total_bytes_up_mean"] = view["total_bytes_up_mean"] / 1e6
    return view.rename(columns={c: SUMMARY_COLUMNS[c][0] for c in shown})


def summary_markdown(summary: pd.DataFrame) -> str:
    """A comparison summary as the Markdown table the README shows (means over seeds).

    Parameters
    ----------
    summary
        A ``summary.csv`` table.

    Returns
    -------
    str
        One row per strategy, the columns of :func:`summary_view` formatted by
        ``SUMMARY_COLUMNS``; a dash where a value is missing (target never reached).
    """
    view = summary_view(summary)
    formats = dict(SUMMARY_COLUMNS.values())
    lines = [
        "| strategy | " + " | ".join(view.columns) + " |",
        "|---" * (len(view.columns) + 1) + "|",
    ]
    for strategy, row in view.iterrows():
        cells = ["–" if pd.isna(v) else formats[label].format(v) for label, v in row.items()]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_summary(table: pd.DataFrame) -> str:
    """A compact text table of a comparison summary (mean ± std over seeds).

    Parameters
    ----------
    table
        A ``summary.csv`` table.

    Returns
    -------
    str
        One line per strategy, as ``pwfl compare`` prints it.
    """
    shown = {
        "final_accuracy": "final acc",
        "best_accuracy": "best acc",
        "rounds_to_target": "rounds->tgt",
        "sim_time_to_target_s": "sim s->tgt",
        "mean_round_wall_s": "round wall s",
        "mean_round_sim_s": "round sim s",
        "idle_fraction": "idle",
        "finish_spread": "spread",
    }
    shown = {k: v for k, v in shown.items() if f"{k}_mean" in table}
    width = max(8, *(len(str(s)) for s in table["strategy"]))
    lines = [f"{'strategy':<{width}}  " + "  ".join(f"{h:>13}" for h in shown.values())]
    for _, row in table.iterrows():
        cells = [f"{row[m + '_mean']:.3f}±{row[m + '_std']:.3f}" for m in shown]
        lines.append(f"{row['strategy']:<{width}}  " + "  ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)
