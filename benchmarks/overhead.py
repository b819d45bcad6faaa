"""Overhead: the same client work as plain PyTorch in a process pool and through pwfl (FedAvg).

Each round N clients train E local epochs of the model on their mnist-5k partitions
from the current global weights, the server averages the updates (FedAvg) and tests
the average on the held-out set. (a) does this with ``multiprocessing`` and one
worker process per CPU, each calling ``pwfl.training`` (plain PyTorch, no Flower);
(b) is ``pwfl run`` with the ``fedavg`` strategy, federated evaluation off. Same
seeds, same per-client settings, same number of processes training at once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from common import CONFIGS, timed_run

from pwfl import arithmetic, training
from pwfl.aggregation import weighted_mean
from pwfl.apps.settings import train_settings
from pwfl.config import Config, load_config
from pwfl.data import client_data, prepare, server_test_data

_CFG: Config | None = None


def _init_worker(cfg: Config) -> None:
    global _CFG
    _CFG = cfg
    # The kernels and threads a pwfl client process runs with: the spawned worker
    # inherits the pins from this process's environment, ensure checks and applies them.
    arithmetic.ensure(cfg.reproducibility.arithmetic)
    torch.set_num_threads(1)


def _train_client(state: dict, server_round: int, pid: int):
    assert _CFG is not None
    data = client_data(_CFG.data, _CFG.seed, pid)
    settings = train_settings(_CFG, server_round, pid)
    new_state, metrics = training.train(state, data, settings)
    return {k: v.numpy() for k, v in new_state.items()}, len(data)


def _warm(_: int) -> int:
    assert _CFG is not None
    training.warm_up(train_settings(_CFG))
    return os.getpid()


def raw_pytorch(cfg: Config) -> dict[str, float]:
    """Rounds of the same work in a pool of one process per CPU; host seconds, and the
    server's test accuracy of the last round's average.

    Every client of ``cfg`` trains every round (``fraction_train`` = 1).
    """
    start = time.perf_counter()
    arithmetic.ensure(cfg.reproducibility.arithmetic)  # the server's tests, as pwfl's
    prepare(cfg.data, cfg.seed)  # the cached split, as the runner does
    test = server_test_data(cfg.data, cfg.seed)
    settings = train_settings(cfg)
    state = training.initial_state(settings, cfg.seed)
    cpus = os.cpu_count() or 1
    ctx = mp.get_context("spawn")  # as Ray's workers: fresh interpreters
    with ctx.Pool(cpus, initializer=_init_worker, initargs=(cfg,)) as pool:
        pool.map(_warm, range(cpus))  # start-up: imports, data, first step
        ready = time.perf_counter()
        rounds = []
        for server_round in range(1, cfg.strategy.num_rounds + 1):
            began = time.perf_counter()
            jobs = [(state, server_round, pid) for pid in range(cfg.data.num_clients)]
            updates = pool.starmap(_train_client, jobs)
            arrays = weighted_mean(updates)
            state = {k: torch.from_numpy(v) for k, v in arrays.items()}
            accuracy = training.evaluate(state, test, settings)["accuracy"]
            rounds.append(time.perf_counter() - began)
    steady = rounds[1:]
    return {
        "startup_s": ready - start,
        "first_round_s": rounds[0],
        "steady_round_s": sum(steady) / len(steady) if steady else float("nan"),
        "total_s": time.perf_counter() - start,
        "final_accuracy": accuracy,
    }


SETTINGS = {
    "quick": ("quick.toml", ["strategy.num_rounds=6"]),
    # The cohort of the scale benchmark: 100 clients of 40 images each per round.
    "100 clients": ("quick.toml", ["data.num_clients=100", "strategy.num_rounds=4"]),
}


def run(smoke: bool = False) -> pd.DataFrame:
    """Both ways, side by side, per setting; one row each plus the ratio row."""
    settings = {"tiny": ("tiny.toml", ["strategy.num_rounds=2"])} if smoke else SETTINGS
    frames = []
    for label, (name, overrides) in settings.items():
        cfg = load_config(
            CONFIGS / name,
            [
                *overrides,
                "strategy.name=fedavg",
                "strategy.fraction_train=1.0",
                "strategy.fraction_evaluate=0.0",
                "checkpoint.every=0",
            ],
        )
        raw = raw_pytorch(cfg)
        raw.pop("final_accuracy")  # this table compares times only
        with tempfile.TemporaryDirectory() as tmp:
            flower = timed_run(cfg, Path(tmp) / "run")
        rows = [
            {"setup": "raw PyTorch (process pool)", **raw},
            {"setup": "pwfl run (fedavg)", **{k: flower[k] for k in raw}},
            {
                "setup": "ratio pwfl / raw",
                **{k: flower[k] / raw[k] if raw[k] else float("nan") for k in raw},
            },
        ]
        frame = pd.DataFrame(rows)
        frame.insert(0, "setting", label)
        frame.insert(2, "clients", cfg.data.num_clients)
        frame.insert(3, "rounds", cfg.strategy.num_rounds)
        frame.insert(4, "model", cfg.model.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
