"""Load runs and comparisons into pandas, summarise them, and draw their figures.

Usage (in a notebook)::

    from pwfl import analysis
    results = analysis.load_results("results/compare/quick")   # tidy, typed tables
    results.summary()                                           # mean and std over seeds
    analysis.plot_convergence(results.rounds, x=("round", "sim_time_s"))

``pwfl plot`` and ``pwfl compare`` draw their figures with these same functions.
Figures are :class:`matplotlib.figure.Figure` objects made without pyplot: saved,
they are drawn by Agg on a machine without a screen; returned from a notebook cell,
Jupyter shows them inline. This package imports neither Flower nor Ray.

Every public name is importable from here. The modules split them by concern:

- ``loading``: run and comparison folders read into typed tables (``Results``);
- ``summaries``: the numbers of runs and comparisons (``summary.json``, ``summary.csv``);
- ``fairness``: the worst set, the spread and the makespan over a run's weight sets;
- ``multitask``: per-seed tables of a multi-task study (a task per weight set);
- ``tables``: a summary as the README's Markdown table or the CLI's text table;
- ``figures``: convergence, per-task, allocation, communication and round-trip
  figures, ``save_figure``;
- ``timeline``: client work and server aggregations on the simulated clock;
- ``structure``: the diagram of PWFL's round structure.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pwfl.analysis.fairness import (
    EVERY_SEED,
    FAIRNESS_METRICS,
    accuracy_spread_std,
    fairness_numbers,
    first_target_s,
    makespan_s,
    set_targets,
    worst_accuracy,
)
from pwfl.analysis.loading import (
    CLIENT_TYPES,
    ROUND_TYPES,
    SERVER_TYPES,
    Results,
    load_clients,
    load_results,
    load_rounds,
    load_server,
    repo_root,
    target_accuracy,
    typed,
)
from pwfl.analysis.multitask import (
    concurrent_vs_sequential,
    policy_contrast,
    policy_table,
    task_finals,
)
from pwfl.analysis.summaries import (
    ALL,
    SET_MEANS,
    SUMMARY_METRICS,
    TO_TARGET,
    client_summary,
    communication_per_round,
    finish_spread,
    idle_fraction,
    idle_per_round,
    round_groups,
    set_ranking,
    summarize_comparison,
    summarize_idle,
    summarize_run,
    summarize_runs,
    worst_set,
)
from pwfl.analysis.tables import (
    SUMMARY_COLUMNS,
    format_summary,
    markdown_table,
    summary_markdown,
    summary_view,
)
from pwfl.schema import COUNT, FLAG, INT, MERGED, TEXT

# The figure modules load matplotlib (most of a second): they are imported when one of
# their names is first used, so that a run, which only summarises, does not load it.
_FIGURES = {
    "AXIS_LABELS": "figures",
    "plot_allocation": "figures",
    "plot_communication": "figures",
    "plot_convergence": "figures",
    "plot_round_trips": "figures",
    "plot_search": "figures",
    "plot_task_curves": "figures",
    "save_figure": "figures",
    "plot_timeline": "timeline",
    "plot_round_structure": "structure",
}

if TYPE_CHECKING:
    from pwfl.analysis.figures import (
        AXIS_LABELS,
        plot_allocation,
        plot_communication,
        plot_convergence,
        plot_round_trips,
        plot_search,
        plot_task_curves,
        save_figure,
    )
    from pwfl.analysis.structure import plot_round_structure
    from pwfl.analysis.timeline import plot_timeline


def __getattr__(name: str) -> Any:
    module = _FIGURES.get(name)
    if module is None:
        raise AttributeError(f"module 'pwfl.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pwfl.analysis.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    # loading
    "TEXT",
    "INT",
    "COUNT",
    "FLAG",
    "ROUND_TYPES",
    "CLIENT_TYPES",
    "SERVER_TYPES",
    "MERGED",
    "typed",
    "load_rounds",
    "load_clients",
    "load_server",
    "target_accuracy",
    "Results",
    "load_results",
    "repo_root",
    # summaries
    "ALL",
    "SET_MEANS",
    "SUMMARY_METRICS",
    "TO_TARGET",
    "summarize_run",
    "summarize_runs",
    "summarize_comparison",
    "finish_spread",
    "idle_per_round",
    "idle_fraction",
    "summarize_idle",
    "communication_per_round",
    "client_summary",
    "round_groups",
    "set_ranking",
    "worst_set",
    # fairness
    "FAIRNESS_METRICS",
    "EVERY_SEED",
    "set_targets",
    "worst_accuracy",
    "accuracy_spread_std",
    "makespan_s",
    "first_target_s",
    "fairness_numbers",
    # multitask
    "task_finals",
    "policy_table",
    "concurrent_vs_sequential",
    "policy_contrast",
    # tables
    "SUMMARY_COLUMNS",
    "summary_view",
    "summary_markdown",
    "markdown_table",
    "format_summary",
    # figures, timeline, structure
    "AXIS_LABELS",
    "plot_convergence",
    "plot_task_curves",
    "plot_allocation",
    "plot_round_trips",
    "plot_search",
    "plot_communication",
    "plot_timeline",
    "plot_round_structure",
    "save_figure",
]
