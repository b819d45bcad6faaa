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


def run_name(label: str, seed: int) -> str:
    """Folder name of one run inside a comparison."""
    return f"{label.replace(' ', '-')}-seed{seed}"


def check_strategies(names: Sequence[str]) -> list[str]:
    """Validate strategy names given on the command line."""
    bad = [n for n in names if n not in STRATEGIES]
    if bad or not names:
        raise ConfigError(
            f"unknown strategy '{','.join(bad)}' in --strategies; "
            f"choose from {', '.join(STRATEGIES)}"
        )
    return list(names)


def parse_vary(text: str | None) -> tuple[str, list[str]] | None:
    """``"stragglers.load_balancing=off,proportional"`` -> (key, values)."""
    if not text:
        return None
    key, sep, values = text.partition("=")
    choices = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or "." not in key or not choices:
        raise ConfigError(f"--vary '{text}' must look like section.key=value1,value2")
    return key.strip(), choices


def plan_runs(
    cfg: Config,
    strategies: Sequence[str],
    seeds: Sequence[int],
    vary: tuple[str, list[str]] | None = None,
) -> list[tuple[str, int, Config]]:
    """(label, seed, config) of every run; all configs are validated before any runs.

    The label is the strategy name, followed by ``key=value`` when a config key
    is varied (``pwfl load_balancing=proportional``).
    """
    variants = (
        [("", [])]
        if vary is None
        else [(f" {vary[0].split('.')[-1]}={value}", [f"{vary[0]}={value}"]) for value in vary[1]]
    )
    runs = []
    for seed in seeds:
        for suffix, overrides in variants:
            base = cfg.with_overrides(overrides)
            for strategy in strategies:
                run_cfg = base.replace(
                    seed=seed, strategy=dataclasses.replace(base.strategy, name=strategy)
                )
                runs.append((strategy + suffix, seed, run_cfg))
    return runs


def run_comparison(
    cfg: Config,
    strategies: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    quiet: bool = False,
    verbose: bool = False,
    vary: tuple[str, list[str]] | None = None,
) -> pd.DataFrame:
    """Run every strategy (and variant) for every seed, then write the comparison files.

    Returns the summary table (one row per strategy and variant).
    """
    from pwfl.runner import run_experiment

    out = Path(out_dir)
    runs = plan_runs(cfg, strategies, seeds, vary)
    for label, seed, run_cfg in runs:
        run_experiment(run_cfg, out / run_name(label, seed), quiet, verbose, label=label)
    return write_comparison(
        out, [(label, seed) for label, seed, _ in runs], cfg.strategy.target_accuracy
    )


def write_comparison(out: Path, runs: Sequence[tuple[str, int]], target: float) -> pd.DataFrame:
    """Gather the runs' rounds into ``comparison.csv``, summarise, and plot."""
    frames = [pd.read_csv(out / run_name(s, seed) / "rounds.csv") for s, seed in runs]
    rounds = pd.concat(frames, ignore_index=True)
    rounds["weight_set"] = rounds["weight_set"].astype(str)
    atomic_write_text(out / "comparison.csv", rounds.to_csv(index=False))
    clients, server = _timeline_tables(out)
    summary = analysis.summarize_comparison(rounds, target, clients, server)
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    analysis.save_figure(analysis.plot_convergence(rounds), out / "convergence.png")
    _draw_timeline(out, clients, server)
    return summary


def _timeline_tables(path: Path) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """``clients.csv`` and ``server.csv`` of a run or of every run of a comparison."""
    try:
        return analysis.load_clients(path), analysis.load_server(path)
    except FileNotFoundError:
        return None, None


def _draw_timeline(
    path: Path, clients: pd.DataFrame | None, server: pd.DataFrame | None
) -> list[Path]:
    if clients is None or server is None or "sim_start_s" not in clients:
        return []
    fig = analysis.plot_timeline(clients, server)
    return [analysis.save_figure(fig, path / "timeline.png")]


def redraw(path: str | Path) -> list[Path]:
    """Redraw the figures of a run or comparison folder from its CSV files."""
    path = Path(path)
    rounds = analysis.load_rounds(path)
    drawn = [analysis.save_figure(analysis.plot_convergence(rounds), path / "convergence.png")]
    return drawn + _draw_timeline(path, *_timeline_tables(path))
