"""A federated search in one run: K settings as K weight sets, against K separate runs.

A config with ``[[weight_set]]`` tables gives each of PWFL's K weight sets its own
setting (a learning rate, a model, a server optimiser). One PWFL run trains all K
on disjoint groups of each round's cohort. The baseline searches the usual way:
K separate FedAvg runs, one per setting, one after another, each sampling every
round as many clients as the setting's PWFL group trains. :func:`run_search` runs
both and :func:`search_summary` sets them side by side: each setting's accuracy
both ways, the setting each approach would pick (on the server's validation set)
and its test accuracy, and the simulated time and client compute each spent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from pwfl.analysis import load_clients, load_rounds
from pwfl.config import Config, num_sampled
from pwfl.errors import ConfigError
from pwfl.partition import split_complementary
from pwfl.runner import run_experiment

PWFL_RUN = "pwfl"


def group_sizes(cfg: Config) -> list[int]:
    """Clients per round in each weight set's PWFL group.

    The complementary split of a round's ``m`` sampled clients into K groups gives
    the first ``m mod K`` sets ``ceil(m / K)`` clients and the others ``floor(m / K)``,
    every round; the sizes are read from the split itself (they do not depend on its
    draw), so they follow it if it ever changes.
    """
    s = cfg.strategy
    sampled = num_sampled(cfg.data.num_clients, s.fraction_train, s.min_train_nodes)
    groups = split_complementary(list(range(sampled)), s.k, np.random.default_rng(0))
    return [len(group) for group in groups]


def separate_run(cfg: Config, weight_set: int) -> Config:
    """The separate run of one setting: the set's own settings on one weight set, each
    round as many clients as its PWFL group (:func:`group_sizes`), all else shared.

    It is PWFL with K = 1 (FedAvg, step for step): unlike the ``fedavg`` strategy it
    takes the set's own server optimiser and the shared aggregator, so the setting
    trains as it does as a weight set.
    """
    own = cfg.for_set(weight_set)
    cohort = group_sizes(cfg)[weight_set]
    strategy = dataclasses.replace(
        own.strategy,
        name="pwfl",
        mode="sync",
        k=1,
        group_policy="complementary",
        merge="none",
        fraction_train=cohort / cfg.data.num_clients,
        # The fraction alone can round down: int(44 * (15 / 44)) is 14 in floats.
        min_train_nodes=cohort,
    )
    return own.replace(strategy=strategy)


def check_search(cfg: Config) -> None:
    """Refuse a config whose PWFL groups no separate runs can match; one line.

    Raises
    ------
    ConfigError
        Without ``[[weight_set]]`` tables, or unless the PWFL run is synchronous,
        splits with the complementary policy (the only one whose sets get the same
        number of clients every round) and never merges its sets.
    """
    s = cfg.strategy
    if not cfg.weight_set:
        raise ConfigError("a search needs [[weight_set]] tables, one setting per weight set")
    rules = [
        ("strategy.group_policy", s.group_policy, "complementary"),
        ("strategy.mode", s.mode, "sync"),
        ("strategy.merge", s.merge, "none"),
    ]
    if cfg.train.client_state == "personal":
        raise ConfigError(
            "config key 'train.client_state' = 'personal' is invalid for a search: it picks "
            "on the server's validation accuracy, which personal state leaves empty"
        )
    for key, value, needed in rules:
        if value != needed:
            raise ConfigError(
                f"config key '{key}' = {value!r} is invalid for a search: it needs {needed!r}, "
                "so that each setting's separate run can sample as many clients per round "
                "as its PWFL group trains"
            )


def run_name(weight_set: int) -> str:
    """The folder of setting ``weight_set``'s separate run."""
    return f"fedavg-set{weight_set}"


def run_search(cfg: Config, out: str | Path, quiet: bool = True) -> pd.DataFrame:
    """One PWFL run of the K settings and K separate FedAvg runs into ``out``; return
    :func:`search_summary` of them (also written to ``out/search.csv``).

    Raises
    ------
    ConfigError
        For a config :func:`check_search` refuses, before anything runs.
    """
    check_search(cfg)
    out = Path(out)
    run_experiment(cfg, out / PWFL_RUN, quiet=quiet, label="pwfl")
    for ws in range(cfg.strategy.k):
        run_experiment(separate_run(cfg, ws), out / run_name(ws), quiet=quiet, label="fedavg")
    summary = search_summary(cfg, out)
    summary.to_csv(out / "search.csv", index=False)
    return summary


def search_rounds(cfg: Config, out: str | Path) -> pd.DataFrame:
    """Both searches' rounds: ``approach`` (pwfl or separate), ``setting`` (the set's
    name), ``round``, ``accuracy`` (test), ``val_accuracy`` (validation), and
    ``sim_time_s`` on one clock per approach (the separate runs one after another)."""
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
    curve = rows[["round", "accuracy", "val_accuracy", "sim_time_s"]].copy()
    curve["sim_time_s"] += offset
    curve.insert(0, "setting", setting)
    curve.insert(0, "approach", approach)
    return curve


def search_summary(cfg: Config, out: str | Path) -> pd.DataFrame:
    """Per approach: each setting's final test and validation accuracy, the setting it
    picks and its accuracies, the simulated seconds it took and the clients' compute
    seconds it used (both on the simulated clock).

    The pick is the setting of best final validation accuracy (the server's
    validation set, :func:`pwfl.data.server_validation_data`), the model the search
    ends with; ``picked_accuracy`` is that model's test accuracy. Picking on the test
    set would report an accuracy chosen for being high on that very set.
    """
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
        final = (
            mine.sort_values("round")
            .groupby("setting")[["accuracy", "val_accuracy"]]
            .last()
            .reindex(names)
        )
        picked = final["val_accuracy"].idxmax()
        clients = pd.concat([load_clients(f) for f in runs])
        train = clients[clients["phase"] == "train"]
        row = {
            "approach": approach,
            **{f"final {setting}": acc for setting, acc in final["accuracy"].items()},
            **{f"final val {setting}": acc for setting, acc in final["val_accuracy"].items()},
            "picked": picked,
            "picked_val_accuracy": final.loc[picked, "val_accuracy"],
            "picked_accuracy": final.loc[picked, "accuracy"],
            "sim_time_s": float(mine["sim_time_s"].max()),
            "client_compute_s": float(train["compute_s"].sum()),
            "client_trainings": int((train["status"] == "ok").sum()),
        }
        rows.append(row)
    return pd.DataFrame(rows)
