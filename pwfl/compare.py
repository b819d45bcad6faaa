"""Compare strategies over seeds on identical data, clients and initial weights.

Usage::

    pwfl compare --config experiments/configs/quick.toml \\
        --strategies fedavg,pwfl-sequential,pwfl --seeds 0,1 --out results/compare/quick

Every (strategy, seed) run writes its own folder ``DIR/<strategy>-seed<seed>``;
the comparison adds ``comparison.csv`` (all rounds of all runs),
``summary.csv`` (mean and std over seeds per strategy) and its figures
(``convergence.png``, ``communication.png``, ``timeline.png``, ``round_trips.png``;
``task_curves.png`` and ``allocation.png`` with several weight sets).
The partitions, samples and initial weights derive from the seed alone, so
every strategy of one seed sees the same clients and starts from the same model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from pwfl import analysis
from pwfl.config import Config, ConfigError
from pwfl.records import atomic_write_text

if TYPE_CHECKING:
    from pwfl.checkpoint import Checkpoint


def run_name(label: str, seed: int) -> str:
    """Folder name of one run inside a comparison."""
    return f"{label.replace(' ', '-')}-seed{seed}"


def check_strategies(names: Sequence[str]) -> list[str]:
    """Validate strategy names given on the command line."""
    from pwfl.strategies import STRATEGIES

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
    if vary is not None and vary[0] == "reproducibility.arithmetic":
        raise ConfigError(
            "--vary reproducibility.arithmetic cannot vary within one process (the kernels "
            "are chosen before PyTorch loads); run one pwfl compare per mode"
        )
    if vary is not None:
        _check_vary_is_read(vary[0], strategies)
        if len(set(vary[1])) < len(vary[1]):
            raise ConfigError(f"--vary {vary[0]} lists a value twice: list each value once")
    variants = (
        [("", [])]
        if vary is None
        else [(variant_label("", vary[0], value), [f"{vary[0]}={value}"]) for value in vary[1]]
    )
    runs = []
    for seed in seeds:
        for suffix, overrides in variants:
            base = cfg.with_overrides(overrides)
            for strategy in strategies:
                # Each run keeps only the table of the strategy it runs (the base
                # may hold the tables of every compared strategy).
                tables = tuple(t for t in base.strategy.tables if t[0] == strategy)
                run_cfg = base.replace(
                    seed=seed,
                    strategy=dataclasses.replace(base.strategy, name=strategy, tables=tables),
                )
                runs.append((strategy + suffix, seed, run_cfg))
    return runs


def variant_label(strategy: str, key: str, value: str) -> str:
    """The label of ``strategy``'s run with a varied key: ``pwfl load_balancing=proportional``
    (the key's last part)."""
    return f"{strategy} {key.split('.')[-1]}={value}"


def _check_vary_is_read(key: str, strategies: Sequence[str]) -> None:
    """A varied key of a strategy's own table (``strategy.<name>.<key>``) must be read
    by one of the compared strategies: else every variant would be the same run."""
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "strategy" and parts[1] not in strategies:
        raise ConfigError(
            f"--vary {key} varies the [strategy.{parts[1]}] table, which none of "
            f"--strategies {','.join(strategies)} reads: add {parts[1]} to --strategies"
        )


def run_comparison(
    cfg: Config,
    strategies: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    quiet: bool = False,
    verbose: bool = False,
    vary: tuple[str, list[str]] | None = None,
    carry_on: bool = False,
) -> pd.DataFrame:
    """Run every strategy (and variant) for every seed, then write the comparison files.

    With ``carry_on`` the comparison continues one that was stopped in this folder:
    a run folder that already holds this run finished is kept, one stopped halfway
    resumes from its checkpoint, the rest run (:func:`continue_from`). Without it
    every run starts afresh.

    Returns the summary table (one row per strategy and variant).
    """
    from pwfl.data import check_inputs
    from pwfl.runner import run_experiment

    out = Path(out_dir)
    runs = plan_runs(cfg, strategies, seeds, vary)
    for _, _, run_cfg in runs:  # every run's model fits its data before the first starts
        check_inputs(run_cfg)
    for label, seed, run_cfg in runs:
        folder = out / run_name(label, seed)
        done, resume = continue_from(folder, run_cfg) if carry_on else (False, None)
        if not done:
            run_experiment(run_cfg, folder, quiet, verbose, label=label, resume=resume)
    return write_comparison(out, [(label, seed) for label, seed, _ in runs], cfg.targets())


def continue_from(folder: Path, cfg: Config) -> tuple[bool, Checkpoint | None]:
    """What a continued comparison does with one run's folder: (it is finished, the
    checkpoint to resume from). A folder holding another experiment is refused.

    Raises
    ------
    ConfigError
        When ``folder`` holds a run of another config.
    """
    from pwfl.checkpoint import CHECKPOINT_FILE, load_checkpoint

    other = ConfigError(
        f"'{folder}' holds a run of another config than this comparison's; pass --out NEW "
        "to write elsewhere or --overwrite to replace it"
    )
    if (folder / "summary.json").is_file():
        written = folder / "config.toml"
        if not written.is_file() or not written.read_text().endswith(cfg.to_toml()):
            raise other
        return True, None
    if (folder / CHECKPOINT_FILE).is_file():
        ckpt = load_checkpoint(folder / CHECKPOINT_FILE)
        if ckpt.config != cfg:
            raise other
        return False, ckpt
    return False, None


def write_comparison(
    out: Path, runs: Sequence[tuple[str, int]], target: float | Mapping[str, float]
) -> pd.DataFrame:
    """Gather the runs' rounds into ``comparison.csv``, summarise, and plot.

    Parameters
    ----------
    out
        The comparison folder holding one folder per run.
    runs
        ``(label, seed)`` of every run, in table order.
    target
        Accuracy whose first crossing the summary reports (weight set -> its own
        when the sets' tasks have their own, :meth:`pwfl.config.Config.targets`).

    Returns
    -------
    pandas.DataFrame
        The summary written to ``summary.csv``.
    """
    frames = [pd.read_csv(out / run_name(s, seed) / "rounds.csv") for s, seed in runs]
    atomic_write_text(
        out / "comparison.csv", pd.concat(frames, ignore_index=True).to_csv(index=False)
    )
    results = analysis.load_results(out, target)
    summary = results.summary()
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    draw_figures(out, results.rounds, results.clients, results.server)
    return summary


def draw_figures(
    path: Path,
    rounds: pd.DataFrame,
    clients: pd.DataFrame | None,
    server: pd.DataFrame | None,
) -> list[Path]:
    """Draw a run's or comparison's figures into its folder.

    Parameters
    ----------
    path
        The folder to write into.
    rounds
        Its ``rounds.csv`` / ``comparison.csv`` rows.
    clients, server
        Its ``clients.csv`` and ``server.csv`` rows, or ``None`` when the run
        folders are absent.

    Returns
    -------
    list of pathlib.Path
        ``convergence.png`` and ``communication.png`` (when bytes were
        recorded), ``task_curves.png`` (with more than one weight set); with the
        client tables also ``timeline.png``, ``round_trips.png`` and, with more than
        one weight set, ``allocation.png``.
    """
    drawn = [analysis.save_figure(analysis.plot_convergence(rounds), path / "convergence.png")]
    if {"bytes_up", "bytes_down"} <= set(rounds):
        fig = analysis.plot_communication(rounds)
        drawn.append(analysis.save_figure(fig, path / "communication.png"))
    sets = rounds["weight_set"].astype(str)
    several = sets[sets != analysis.MERGED].nunique() > 1
    if several:
        fig = analysis.plot_task_curves(rounds)
        drawn.append(analysis.save_figure(fig, path / "task_curves.png"))
    if clients is None or server is None or "sim_start_s" not in clients:
        return drawn
    if several:
        fig = analysis.plot_allocation(clients)
        drawn.append(analysis.save_figure(fig, path / "allocation.png"))
    drawn.append(
        analysis.save_figure(analysis.plot_timeline(clients, server), path / "timeline.png")
    )
    drawn.append(analysis.save_figure(analysis.plot_round_trips(clients), path / "round_trips.png"))
    return drawn


def redraw(path: str | Path) -> list[Path]:
    """Redraw the figures of a run or comparison folder from its CSV files.

    A comparison whose run folders are there also gets its ``summary.csv``
    summarised again, so a change to a summary's definition reaches it without
    running the comparison again.

    Parameters
    ----------
    path
        A folder written by ``pwfl run`` or ``pwfl compare``.

    Returns
    -------
    list of pathlib.Path
        The figures written (see :func:`draw_figures`).
    """
    path = Path(path)
    results = analysis.load_results(path)
    if (path / "summary.csv").is_file() and results.clients is not None and len(results.clients):
        atomic_write_text(path / "summary.csv", results.summary().to_csv(index=False))
    return draw_figures(path, results.rounds, results.clients, results.server)
