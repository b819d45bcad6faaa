"""A multi-model study: one client pool, a task per weight set, every group policy.

Usage::

    cfg = load_config("experiments/configs/mmfl_three_tasks.toml")
    tables = run_study(cfg, seeds=[0, 1, 2], out="results/mmfl")
    tables["contrasts"]          # alpha-fair and variance-reduced against their baselines

Two comparisons of one config: PWFL with every group policy of :data:`POLICIES` into
``out/policies``, and ``pwfl-sequential`` (the complementary split's groups trained one
set after another: the same client work) into ``out/sequential``. The tables
(:func:`study_tables`) are per seed: a claim holds when it holds on every seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from pwfl import analysis
from pwfl.config import Config

POLICIES = (
    "complementary",
    "random",
    "round-robin",
    "loss-aware",
    "alpha-fair",
    "variance-reduced",
)
"""The group policies the study runs, each as a PWFL run."""
CONTRASTS = (
    ("alpha-fair", "random"),
    ("alpha-fair", "round-robin"),
    ("variance-reduced", "random"),
)
"""(policy, baseline) pairs the study contrasts on the worst task and the mean."""
SEQUENTIAL = "pwfl-sequential"


def label(policy: str) -> str:
    """The comparison's label of PWFL with ``policy``."""
    from pwfl.compare import variant_label

    return variant_label("pwfl", "strategy.group_policy", policy)


def commands(config: str, seeds: Sequence[int], out: str) -> list[str]:
    """The two ``pwfl compare`` command lines :func:`run_study` amounts to."""
    listed = ",".join(map(str, seeds))
    return [
        f"pwfl compare --config {config} --strategies pwfl --vary "
        f"strategy.group_policy={','.join(POLICIES)} --seeds {listed} --out {out}/policies",
        f"pwfl compare --config {config} --strategies {SEQUENTIAL} --seeds {listed} "
        f"--out {out}/sequential",
    ]


def run_study(cfg: Config, seeds: Sequence[int], out: str | Path) -> dict[str, pd.DataFrame]:
    """Run both comparisons (a finished run is kept, a stopped one continued), write
    ``tasks.csv``, ``concurrent.csv`` and ``contrasts.csv`` into ``out`` and return them."""
    from pwfl.compare import run_comparison
    from pwfl.records import atomic_write_text

    out = Path(out)
    policies = ("strategy.group_policy", list(POLICIES))
    run_comparison(cfg, ["pwfl"], seeds, out / "policies", True, vary=policies, carry_on=True)
    run_comparison(cfg, [SEQUENTIAL], seeds, out / "sequential", True, carry_on=True)
    tables = study_tables(out, cfg.targets())
    for name, frame in tables.items():
        atomic_write_text(out / f"{name}.csv", frame.to_csv(index=False))
    return tables


def study_tables(
    out: str | Path, target: float | Mapping[str, float] | None = None
) -> dict[str, pd.DataFrame]:
    """The study's tables from the two comparison folders in ``out`` (``target``: each
    task's target accuracy, :meth:`pwfl.config.Config.targets`, for the makespan).

    Returns
    -------
    dict
        ``tasks``: per run (policy, seed), each task's final test accuracy, the worst,
        the mean, the simulated time and, given ``target``, the makespan
        (:func:`pwfl.analysis.policy_table`);
        ``concurrent``: complementary PWFL against the same groups one set after
        another, per seed and task (:func:`pwfl.analysis.concurrent_vs_sequential`);
        ``contrasts``: each pair of :data:`CONTRASTS`, per seed and over every seed
        (:func:`pwfl.analysis.policy_contrast`).
    """
    out = Path(out)
    rounds = pd.concat(
        [analysis.load_results(out / name).rounds for name in ("policies", "sequential")],
        ignore_index=True,
    )
    finals = analysis.task_finals(rounds, target)
    table = analysis.policy_table(finals)
    concurrent = analysis.concurrent_vs_sequential(finals, label("complementary"), SEQUENTIAL)
    contrasts = pd.concat(
        [
            analysis.policy_contrast(table, label(a), label(b)).assign(policy=a, baseline=b)
            for a, b in CONTRASTS
        ],
        ignore_index=True,
    )
    return {"tasks": table, "concurrent": concurrent, "contrasts": contrasts}


def markdown(frame: pd.DataFrame) -> str:
    """A table as Markdown, numbers to 3 decimals (the docs' tables)."""
    shown = frame.copy()
    for column in shown:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    rows = [[str(cell) for cell in row] for row in shown.itertuples(index=False)]
    return analysis.markdown_table([str(c) for c in shown.columns], rows)
