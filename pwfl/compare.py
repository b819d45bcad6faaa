"""Compare strategies over seeds on identical data, clients and initial weights.

Usage::

    pwfl compare --config experiments/configs/quick.toml \\
        --strategies fedavg,pwfl-sequential,pwfl --seeds 0,1 --out results/compare/quick

Every (strategy, seed) run writes its own folder ``DIR/<strategy>-seed<seed>``;
the comparison adds ``comparison.csv`` (all rounds of all runs),
``summary.csv`` (mean and std over seeds per strategy) and ``convergence.png``.
The partitions, samples and initial weights derive from the seed alone, so
every strategy of one seed sees the same clients and starts from the same model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pwfl import analysis
from pwfl.config import STRATEGIES, Config, ConfigError
from pwfl.records import atomic_write_text


def run_name(strategy: str, seed: int) -> str:
    """Folder name of one run inside a comparison."""
    return f"{strategy}-seed{seed}"


def check_strategies(names: Sequence[str]) -> list[str]:
    """Validate strategy names given on the command line."""
    bad = [n for n in names if n not in STRATEGIES]
    if bad or not names:
        raise ConfigError(
            f"unknown strategy '{','.join(bad)}' in --strategies; "
            f"choose from {', '.join(STRATEGIES)}"
        )
    return list(names)


def with_run(cfg: Config, strategy: str, seed: int) -> Config:
    """The config of one run of the comparison."""
    return cfg.replace(seed=seed, strategy=dataclasses.replace(cfg.strategy, name=strategy))


def run_comparison(
    cfg: Config,
    strategies: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    quiet: bool = False,
    verbose: bool = False,
) -> pd.DataFrame:
    """Run every strategy for every seed, then write the comparison files.

    Returns the summary table (one row per strategy).
    """
    from pwfl.runner import run_experiment

    out = Path(out_dir)
    runs = [(s, seed) for seed in seeds for s in strategies]
    configs = {run: with_run(cfg, *run) for run in runs}  # validate all before running any
    for (strategy, seed), run_cfg in configs.items():
        run_experiment(run_cfg, out / run_name(strategy, seed), quiet=quiet, verbose=verbose)
    return write_comparison(out, runs, cfg.strategy.target_accuracy)


def write_comparison(out: Path, runs: Sequence[tuple[str, int]], target: float) -> pd.DataFrame:
    """Gather the runs' rounds into ``comparison.csv``, summarise, and plot."""
    frames = [pd.read_csv(out / run_name(s, seed) / "rounds.csv") for s, seed in runs]
    rounds = pd.concat(frames, ignore_index=True)
    rounds["weight_set"] = rounds["weight_set"].astype(str)
    atomic_write_text(out / "comparison.csv", rounds.to_csv(index=False))
    summary = analysis.summarize_comparison(rounds, target)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    analysis.save_figure(analysis.plot_convergence(rounds), out / "convergence.png")
    _draw_timeline(out)
    return summary


def _draw_timeline(path: Path) -> list[Path]:
    try:
        clients, server = analysis.load_clients(path), analysis.load_server(path)
    except FileNotFoundError:
        return []
    if "sim_start_s" not in clients:
        return []
    fig = analysis.plot_timeline(clients, server)
    return [analysis.save_figure(fig, path / "timeline.png")]


def redraw(path: str | Path) -> list[Path]:
    """Redraw the figures of a run or comparison folder from its CSV files."""
    path = Path(path)
    rounds = analysis.load_rounds(path)
    drawn = [analysis.save_figure(analysis.plot_convergence(rounds), path / "convergence.png")]
    return drawn + _draw_timeline(path)
