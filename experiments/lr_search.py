"""A federated search in one run: four learning rates as PWFL weight sets, against four
separate FedAvg runs with the same cohort per setting (``pwfl.search``); each picks the
rate of best final validation accuracy and reports its test accuracy.

    .venv/bin/python experiments/lr_search.py            # results/lr_search, img/lr_search.png
    .venv/bin/python experiments/lr_search.py --set strategy.num_rounds=2   # a smoke run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pwfl import analysis
from pwfl.config import load_config
from pwfl.errors import PwflError
from pwfl.search import run_search, search_rounds

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "experiments/configs/lr_search.toml"))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", default=str(ROOT / "results/lr_search"))
    parser.add_argument("--img", default=str(ROOT / "img/lr_search.png"))
    args = parser.parse_args()
    try:
        cfg = load_config(args.config, args.set)
        summary = run_search(cfg, args.out)
    except PwflError as err:  # bad input: one line, as the pwfl command gives it
        print(f"lr_search: error: {err}", file=sys.stderr)
        return 2
    figure = analysis.plot_search(search_rounds(cfg, args.out))
    analysis.save_figure(figure, args.img)
    print(summary.T.to_string(header=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
