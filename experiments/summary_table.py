"""Print a comparison's summary.csv as the Markdown table the README shows.

Usage::

    .venv/bin/python experiments/summary_table.py results/compare/quick/summary.csv
"""

from __future__ import annotations

import sys

import pandas as pd

from pwfl.analysis import summary_markdown

if __name__ == "__main__":
    print(summary_markdown(pd.read_csv(sys.argv[1])))
