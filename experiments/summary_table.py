"""Print a comparison's summary.csv as the Markdown table the README shows.

Usage::

    .venv/bin/python experiments/summary_table.py results/compare/quick/summary.csv
"""

from __future__ import annotations

import sys

import pandas as pd

from pwfl.analysis import SUMMARY_COLUMNS, summary_view


def markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table (means over seeds).

    Parameters
    ----------
    summary
        A comparison's ``summary.csv``.

    Returns
    -------
    str
        One row per strategy, the columns of ``pwfl.analysis.SUMMARY_COLUMNS``
        that the summary has, formatted as the README shows them.
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


if __name__ == "__main__":
    print(markdown(pd.read_csv(sys.argv[1])))
