"""Multi-model FL on three offline tasks: every group policy, and the same sets one after another.

Usage::

    .venv/bin/python experiments/mmfl.py                        # results/mmfl (~10 min, 2 cores)
    .venv/bin/python experiments/mmfl.py --seeds 0 --set strategy.num_rounds=2 \\
        --out /tmp/m --img /tmp/m.png

Runs ``pwfl.mmfl.run_study`` on ``experiments/configs/mmfl_three_tasks.toml`` (three
tasks, a weight set each): the two ``pwfl compare`` commands it prints first, then the
per-seed tables ``tasks.csv``, ``concurrent.csv`` and ``contrasts.csv`` in the output
folder, printed as the Markdown tables of docs/results.md, and the tasks' curves per
policy (``--img``, ``img/mmfl_task_curves.png``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pwfl import analysis
from pwfl.config import load_config
from pwfl.errors import PwflError
from pwfl.mmfl import commands, markdown, run_study

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/mmfl_three_tasks.toml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", default="results/mmfl")
    parser.add_argument("--img", default="img/mmfl_task_curves.png")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    for command in commands(args.config, seeds, args.out):
        print(command, file=sys.stderr)
    try:
        cfg = load_config(ROOT / args.config, args.set)
        tables = run_study(cfg, seeds, ROOT / args.out)
    except PwflError as err:  # bad input: one line, as the pwfl command gives it
        print(f"mmfl: error: {err}", file=sys.stderr)
        return 2
    for name, frame in tables.items():
        print(f"\n{name}.csv\n\n{markdown(frame)}")
    rounds = analysis.load_results(ROOT / args.out / "policies").rounds
    figure = analysis.plot_task_curves(rounds, target=cfg.targets())
    print(analysis.save_figure(figure, ROOT / args.img))
    return 0


if __name__ == "__main__":
    sys.exit(main())
