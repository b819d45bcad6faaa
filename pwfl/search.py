"""A federated search in one run: K settings as K weight sets, against K separate runs.

A config with ``[[weight_set]]`` tables gives each of PWFL's K weight sets its own
setting (a learning rate, a model, a server optimiser). One PWFL run trains all K
on disjoint groups of each round's cohort. The baseline searches the usual way:
K separate ``fedavg`` runs, one per setting, each with the same cohort per model
(the sampled clients over K), one after another. :func:`run_search` runs both and
:func:`search_summary` sets them side by side: each setting's accuracy both ways,
the setting each approach would pick, and the simulated time and client compute
each spent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from pwfl.analysis import load_clients, load_rounds
from pwfl.config import Config, num_sampled
from pwfl.errors import ConfigError
from pwfl.runner import run_experiment

PWFL_RUN = "pwfl"


def separate_run(cfg: Config, weight_set: int) -> Config:
    """The ``fedavg`` run of one setting: the set's own settings, the cohort one PWFL
    group gets (the sampled clients over K), everything else shared."""
    own = cfg.for_set(weight_set)
    s = cfg.strategy
    cohort = num_sampled(cfg.data.num_clients, s.fraction_train, s.min_train_nodes) // s.k
    strategy = dataclasses.replace(
        own.strategy,
        name="fedavg",
        k=1,
        merge="none",
        fraction_train=cohort / cfg.data.num_clients,
        min_train_nodes=min(s.min_train_nodes, cohort),
    )
    return own.replace(strategy=strategy)


def run_name(weight_set: int) -> str:
    """The folder of setting ``weight_set``'s separate run."""
    return f"fedavg-set{weight_set}"


def run_search(cfg: Config, out: str | Path, quiet: bool = True) -> pd.DataFrame:
    """One PWFL run of the K settings and K separate FedAvg runs into ``out``; return
    :func:`search_summary` of them (also written to ``out/search.csv``)."""
    if not cfg.weight_set:
        raise ConfigError("a search needs [[weight_set]] tables, one setting per weight set")
    out = Path(out)
    run_experiment(cfg, out / PWFL_RUN, quiet=quiet, label="pwfl")
    for ws in range(cfg.strategy.k):
        run_experiment(separate_run(cfg, ws), out / run_name(ws), quiet=quiet, label="fedavg")
    summary = search_summary(cfg, out)
    summary.to_csv(out / "search.csv", index=False)
    return summary


def search_rounds(cfg: Config, out: str | Path) -> pd.DataFrame:
    """Both searches' rounds: ``approach`` (pwfl or separate), ``setting`` (the set's
    name), ``round``, ``accuracy``, and ``sim_time_s`` on one clock per approach
    (the separate runs one after another)."""
    out = Path(out)
    pwfl = load_rounds(out / PWFL_RUN)
    frames = []
    offset = 0.0
    for ws in range(cfg.strategy.k):
        name = cfg.set_name(ws)
        mine = pwfl[pwfl["weight_set"].astype(str) == str(ws)]
        frames.append(_curve(mine, "one PWFL run", name, 0.0))
        separate = load_rounds(out / run_name(ws))
        frames.append(_curve(separate, "separate FedAvg runs", name, offset))
        offset += float(separate["sim_time_s"].max())
    return pd.concat(frames, ignore_index=True)


def _curve(rows: pd.DataFrame, approach: str, setting: str, offset: float) -> pd.DataFrame:
    curve = rows[["round", "accuracy", "sim_time_s"]].copy()
    curve["sim_time_s"] += offset
    curve.insert(0, "setting", setting)
    curve.insert(0, "approach", approach)
    return curve


def search_summary(cfg: Config, out: str | Path) -> pd.DataFrame:
    """Per approach: each setting's final accuracy, the setting it would pick (best
    final accuracy) and that accuracy, the simulated seconds it took and the clients'
    compute seconds it used (both on the simulated clock)."""
    out = Path(out)
    rounds = search_rounds(cfg, out)
    folders = {
        "one PWFL run": [out / PWFL_RUN],
        "separate FedAvg runs": [out / run_name(ws) for ws in range(cfg.strategy.k)],
    }
    names = [cfg.set_name(ws) for ws in range(cfg.strategy.k)]
    rows = []
    for approach, runs in folders.items():
        mine = rounds[rounds["approach"] == approach]
        final = mine.sort_values("round").groupby("setting")["accuracy"].last().reindex(names)
        clients = pd.concat([load_clients(f) for f in runs])
        train = clients[clients["phase"] == "train"]
        row = {
            "approach": approach,
            **{f"final {setting}": acc for setting, acc in final.items()},
            "picked": final.idxmax(),
            "picked_accuracy": final.max(),
            "sim_time_s": float(mine["sim_time_s"].max()),
            "client_compute_s": float(train["compute_s"].sum()),
            "client_trainings": int((train["status"] == "ok").sum()),
        }
        rows.append(row)
    return pd.DataFrame(rows)
