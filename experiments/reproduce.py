"""Reproduce the figures and tables of docs/results.md (and the README) into results/ and img/.

Usage::

    .venv/bin/python experiments/reproduce.py                     # every step (~40 min, 2 cores)
    .venv/bin/python experiments/reproduce.py paper-iid round-structure
    .venv/bin/python experiments/reproduce.py --list              # the steps and their commands
    .venv/bin/python experiments/reproduce.py --redraw paper-iid  # figures from the runs there

``make figures`` runs every step. A comparison step runs ``pwfl compare`` with the
arguments its section of ``docs/results.md`` shows (printed before it starts), which writes
``comparison.csv``, ``summary.csv`` and the figures into its ``results/compare``
folder; the paper steps also draw the pages' figures into ``img/``. After each
comparison the script prints the table of its summary.csv as the pages show it
(``experiments/summary_table.py``). ``--set`` overrides the comparisons' configs
for a quick smoke run; its results are not the published ones. ``--redraw`` draws the
figures again from the run folders already there, without running anything.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pwfl import analysis, compare
from pwfl.compare import parse_vary
from pwfl.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("fedavg", "pwfl-sequential", "pwfl")


@dataclass(frozen=True)
class Comparison:
    """One ``pwfl compare`` invocation."""

    config: str
    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    out: str
    vary: str | None = None
    each_set: bool = False
    """Print a table row per weight set too (async: each set keeps its own rounds)."""

    def command(self) -> str:
        """The equivalent command line, as ``docs/results.md`` writes it."""
        vary = f" --vary {self.vary}" if self.vary else ""
        return (
            f"pwfl compare --config {self.config} --strategies {','.join(self.strategies)}"
            f"{vary} --seeds {','.join(map(str, self.seeds))} --out {self.out}"
        )

    def run(self, overrides: list[str], results: Path, redraw: bool = False) -> Path:
        """Run the comparison (or only redraw its figures); return its folder."""
        out = results / Path(self.out).relative_to("results")
        if redraw:
            compare.redraw(out)
        else:
            cfg = load_config(ROOT / self.config, overrides)
            vary = parse_vary(self.vary)
            compare.run_comparison(cfg, self.strategies, self.seeds, out, quiet=True, vary=vary)
        print(analysis.summary_markdown(pd.read_csv(out / "summary.csv"), self.each_set))
        return out


COMPARISONS = {
    "quick": Comparison("experiments/configs/quick.toml", BASELINES, (0,), "results/compare/quick"),
    "heterogeneous": Comparison(
        "experiments/configs/heterogeneous.toml",
        (*BASELINES, "fedbuff"),
        (0,),
        "results/compare/heterogeneous",
        vary="stragglers.load_balancing=off,proportional",
    ),
    # FedBuff's clients in flight: the default (as many as the others train) and a
    # buffer's worth; three seeds, as the choice in heterogeneous.toml rests on it.
    "fedbuff-concurrency": Comparison(
        "experiments/configs/heterogeneous.toml",
        ("fedbuff",),
        (0, 1, 2),
        "results/compare/fedbuff_concurrency",
        vary="strategy.fedbuff.concurrency=10,5",
    ),
    "async": Comparison(
        "experiments/configs/heterogeneous.toml",
        ("pwfl",),
        (0,),
        "results/compare/async",
        vary="strategy.mode=sync,async",
        each_set=True,
    ),
    "faults": Comparison(
        "experiments/configs/faults.toml", BASELINES, (0,), "results/compare/faults"
    ),
    "server-link": Comparison(
        "experiments/configs/server_link.toml",
        ("pwfl-sequential", "pwfl"),
        (0,),
        "results/compare/server_link",
        vary="server.up_mbps=10000,1000,200,50,20",
    ),
    # Three seeds, so the curves carry bands of ±1 std.
    "paper-iid": Comparison(
        "experiments/configs/paper_iid.toml", BASELINES, (0, 1, 2), "results/compare/paper_iid"
    ),
    "paper-noniid": Comparison(
        "experiments/configs/paper_noniid.toml",
        BASELINES,
        (0, 1, 2),
        "results/compare/paper_noniid",
    ),
}
"""The comparisons behind the sections of ``docs/results.md``, by step name."""

STRUCTURE_RUN = "paper_iid/pwfl-seed0"
"""The run whose client groups ``img/round_structure.png`` shows."""

STRUCTURE_ROUNDS = 8
"""Rounds shown in the structure figure's right panel."""


def paper_figures(folder: Path, img: Path) -> list[Path]:
    """The figures of a paper comparison: convergence (mean over weight sets) and timeline.

    Parameters
    ----------
    folder
        The comparison folder (``results/compare/paper_iid``).
    img
        Where the pages' figures go.

    Returns
    -------
    list of pathlib.Path
        ``img/<name>_convergence.png`` and ``img/<name>_timeline.png``.
    """
    results = analysis.load_results(folder)
    convergence = analysis.plot_convergence(
        results.rounds, x=("round", "sim_time_s"), weight_sets="mean"
    )
    timeline = analysis.plot_timeline(results.clients, results.server, rounds=3)
    return [
        analysis.save_figure(convergence, img / f"{folder.name}_convergence.png"),
        analysis.save_figure(timeline, img / f"{folder.name}_timeline.png"),
    ]


def round_structure(results: Path, img: Path) -> Path:
    """Draw ``img/round_structure.png`` from the client table of a PWFL run.

    Parameters
    ----------
    results
        The results folder holding ``compare/<STRUCTURE_RUN>``.
    img
        Where the pages' figures go.

    Returns
    -------
    pathlib.Path
        The figure's path.
    """
    run = results / "compare" / STRUCTURE_RUN
    if not (run / "clients.csv").is_file():
        raise SystemExit(f"{run}/clients.csv is missing: run the paper-iid step first")
    num_clients = load_config(run / "config.toml").data.num_clients
    groups = analysis.round_groups(analysis.load_clients(run), num_clients=num_clients)
    groups = groups.head(STRUCTURE_ROUNDS)
    return analysis.save_figure(analysis.plot_round_structure(groups), img / "round_structure.png")


def compression(results: Path) -> None:
    """Run ``experiments/compression.py`` (the 8-bit updates table of ``docs/results.md``)."""
    out = results / "compression"
    print(f"python experiments/compression.py --out {out}")
    subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "compression.py"), "--out", str(out)],
        check=True,
        cwd=ROOT,
    )


def multi_task(results: Path, img: Path) -> None:
    """Run ``experiments/mmfl.py`` (the multi-task study of ``docs/results.md``)."""
    out, figure = results / "mmfl", img / "mmfl_task_curves.png"
    print(f"python experiments/mmfl.py --out {out} --img {figure}")
    subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "mmfl.py"), "--out", str(out)]
        + ["--img", str(figure)],
        check=True,
        cwd=ROOT,
    )


STEPS = [*COMPARISONS, "compression", "multi-task", "round-structure"]


def main() -> None:
    """Run the named steps (default: all) in the order of ``STEPS``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "steps", nargs="*", metavar="STEP", help=f"of {', '.join(STEPS)}; default all"
    )
    parser.add_argument("--list", action="store_true", help="print the steps and exit")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value of every comparison (a smoke run, not the published one)",
    )
    parser.add_argument(
        "--redraw",
        action="store_true",
        help="draw the figures from the results already there instead of running again",
    )
    parser.add_argument("--results", default="results", help="folder for the run results")
    parser.add_argument("--img", default="img", help="folder for the pages' figures")
    args = parser.parse_args()
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.list:
        width = max(map(len, STEPS))
        for name in STEPS:
            what = COMPARISONS[name].command() if name in COMPARISONS else ""
            print(f"{name:<{width}} {what}".rstrip())
        return
    results, img = ROOT / args.results, ROOT / args.img
    for name in [s for s in STEPS if s in (args.steps or STEPS)]:
        started = time.perf_counter()
        print(f"== {name}", flush=True)
        if name in COMPARISONS:
            print(("redraw: " if args.redraw else "") + COMPARISONS[name].command(), flush=True)
            folder = COMPARISONS[name].run(args.set, results, redraw=args.redraw)
            if name.startswith("paper-"):
                for path in paper_figures(folder, img):
                    print(path)
        elif name == "compression":
            if not args.redraw:  # it draws no figure
                compression(results)
        elif name == "multi-task":
            if not args.redraw:  # its figure is drawn from the tables it writes
                multi_task(results, img)
        else:
            print(round_structure(results, img))
        print(f"== {name} took {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
