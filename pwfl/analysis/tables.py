"""Comparison summaries as the README's Markdown table and the text table of the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from pwfl.analysis import summaries

SUMMARY_COLUMNS = {
    "final_accuracy_mean": ("final acc.", "{:.3f}"),
    "best_accuracy_mean": ("best acc.", "{:.3f}"),
    "reached": ("reached {target}", "{}"),
    "rounds_to_target_mean": ("rounds to {target}", "{:.1f}"),
    "sim_time_to_target_s_mean": ("sim. s to {target}", "{:.2f}"),
    "mean_round_sim_s_mean": ("sim. s / round", "{:.3f}"),
    "idle_fraction_mean": ("server idle", "{:.1%}"),
    "finish_spread_mean": ("finish spread", "{:.2f}"),
    "total_bytes_up_mean": ("MB up", "{:.1f}"),
}
"""``summary.csv`` columns shown in the README's tables: (label, format); ``{target}``
in a label is the summary's target accuracy. Each depends on the config and the seed
alone, so a table printed on any machine is the committed one character for character."""

_HOST_COLUMNS = {
    "mean_round_wall_s_mean": ("host s / round", "{:.2f}"),
}
"""Host measurements, shown only when asked for (``host=True``): they change from run
to run and from machine to machine."""


def _labels(summary: pd.DataFrame, host: bool = False) -> dict[str, tuple[str, str]]:
    target = (
        f"{summary['target'].iloc[0]:.2f}" if "target" in summary and len(summary) else "target"
    )
    return {
        column: (label.format(target=target), fmt)
        for column, (label, fmt) in _columns(host).items()
    }


def _columns(host: bool) -> dict[str, tuple[str, str]]:
    return {**SUMMARY_COLUMNS, **_HOST_COLUMNS} if host else SUMMARY_COLUMNS


def summary_view(summary: pd.DataFrame, each_set: bool = False, host: bool = False) -> pd.DataFrame:
    """The README's view of a comparison summary: means over seeds, readable names.

    Parameters
    ----------
    summary
        A ``summary.csv`` table (:func:`pwfl.analysis.summarize_comparison`).
    each_set
        Also a row per weight set (``strategy / set k``) before each strategy's
        row over all its sets.
    host
        Also the host measurements (this host's seconds per round).

    Returns
    -------
    pandas.DataFrame
        Indexed by strategy, one column per entry of ``SUMMARY_COLUMNS`` that
        the summary has, labelled as in the README; bytes in megabytes;
        ``reached`` as "sets that reached the target / sets" over all seeds.
    """
    rows = summary if each_set else summary[summary["weight_set"] == summaries.ALL]
    shown = [c for c in _columns(host) if c in rows]
    names = [
        s if ws == summaries.ALL else f"{s} / set {ws}"
        for s, ws in zip(rows["strategy"], rows["weight_set"], strict=True)
    ]
    view = rows[shown].copy()
    view.index = pd.Index(names, name="strategy")
    if "reached" in view:
        view["reached"] = [f"{r}/{n}" for r, n in zip(rows["reached"], rows["sets"], strict=True)]
    numeric = [c for c in shown if c != "reached"]
    view[numeric] = view[numeric].astype("float64")
    if "total_bytes_up_mean" in view:
        view["total_bytes_up_mean"] = view["total_bytes_up_mean"] / 1e6
    labels = _labels(summary, host)
    return view.rename(columns={c: labels[c][0] for c in shown})


def summary_markdown(summary: pd.DataFrame, each_set: bool = False, host: bool = False) -> str:
    """A comparison summary as the Markdown table the README shows (means over seeds).

    Parameters
    ----------
    summary
        A ``summary.csv`` table.
    each_set
        Also a row per weight set (see :func:`summary_view`).
    host
        Also the host measurements (this host's seconds per round).

    Returns
    -------
    str
        One row per strategy (and weight set), the columns of
        :func:`summary_view` formatted by ``SUMMARY_COLUMNS``; a dash where a
        value is missing (a target no set reached, the idle share of one set).
    """
    view = summary_view(summary, each_set, host)
    formats = dict(_labels(summary, host).values())
    rows = [
        [str(strategy)]
        + ["–" if pd.isna(v) else formats[label].format(v) for label, v in row.items()]
        for strategy, row in view.iterrows()
    ]
    return markdown_table(["strategy", *view.columns], rows)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Cells already formatted as a Markdown table: a header row, its rule, the rows."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_summary(table: pd.DataFrame) -> str:
    """A compact text table of a comparison summary (mean ± std over seeds, all sets).

    Parameters
    ----------
    table
        A ``summary.csv`` table.

    Returns
    -------
    str
        One line per strategy, as ``pwfl compare`` prints it; with one seed
        there is no standard deviation to show.
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
    rows = table[table["weight_set"] == summaries.ALL]
    shown = {k: v for k, v in shown.items() if f"{k}_mean" in rows}
    width = max(8, *(len(str(s)) for s in rows["strategy"]))
    header = f"{'strategy':<{width}}  {'reached':>8}  " + "  ".join(
        f"{h:>13}" for h in shown.values()
    )
    lines = [header]
    for _, row in rows.iterrows():
        cells = []
        for m in shown:
            mean, std = row[m + "_mean"], row[m + "_std"]
            cells.append(f"{mean:.3f}" if pd.isna(std) else f"{mean:.3f}±{std:.3f}")
        reached = f"{row['reached']}/{row['sets']}"
        lines.append(
            f"{row['strategy']:<{width}}  {reached:>8}  " + "  ".join(f"{c:>13}" for c in cells)
        )
    return "\n".join(lines)
