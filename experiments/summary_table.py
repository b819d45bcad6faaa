"""Print a comparison's summary.csv as the Markdown table the README and docs/results.md show.

Usage::

    .venv/bin/python experiments/summary_table.py results/compare/quick/summary.csv
    .venv/bin/python experiments/summary_table.py --each-set results/compare/async/summary.csv

``--each-set`` adds a row per weight set before each strategy's row over all its sets;
``--host`` adds this host's seconds per round (a host measurement, left out by default:
every other column depends on the config and the seed alone).
"""

from __future__ import annotations

import argparse

import pandas as pd

from pwfl.analysis import summary_markdown

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", help="a summary.csv written by pwfl compare")
    parser.add_argument("--each-set", action="store_true", help="a row per weight set too")
    parser.add_argument("--host", action="store_true", help="the host measurements too")
    args = parser.parse_args()
    print(summary_markdown(pd.read_csv(args.summary), each_set=args.each_set, host=args.host))
