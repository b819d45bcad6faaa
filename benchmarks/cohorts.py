"""Cohorts: 10, 100 and 1,000 clients a round through plain PyTorch, Flower and pwfl.

Each round every client of the cohort trains the small MLP for one local epoch on
its own 40 mnist-5k images (``resample``: drawn per client from ``(seed, client)``,
32 of them trained on after the 20 % each client holds out), the server averages the
updates weighted by example count (FedAvg) and tests the average on its held-out set;
federated evaluation is off. Five setups do this side by side:

1. plain PyTorch: a ``multiprocessing`` pool of one spawned process per CPU calls
   ``pwfl.training`` for each client (:func:`overhead.raw_pytorch`), no Flower, no Ray;
2. Flower's own simulation: ``flwr.simulation.run_simulation`` with one SuperNode
   per client, a Message-API ``ClientApp`` that trains its ``partition-id`` with
   ``pwfl.training`` and Flower's ``FedAvg`` strategy in a ``ServerApp``, whose
   ``evaluate_fn`` tests the average and marks the rounds;
3. pwfl (``pwfl.runner.run_experiment``, its ``fedavg`` strategy, pool binding) with
   one message per client (``simulation.messages = "client"``), one message per pool
   node and job (``"cohort"``), and the latter with each node summing its clients'
   updates (``simulation.node_aggregation = true``). A variant that raises is a row
   of NaN.

What is the same: the clients, their data, the initial weights, the per-client
training settings and seeds (``pwfl.apps.settings.train_settings``), the server's
test set, the arithmetic mode (``reproducibility.arithmetic``, checked by
``pwfl.arithmetic.ensure`` in every process that trains or tests), one intra-op
thread per process and two clients training at once on this 2-core machine (two
pool processes, Ray actors of one CPU each).

What differs: the plain pool sends each job's weights through a pipe and keeps no
per-client state; Flower and pwfl move Messages through Flower's simulation engine
and Ray. Flower's start-up ends when its ``ServerApp`` starts round 1, before any
``ClientApp`` actor has loaded its libraries, so that load falls in Flower's first
round; pwfl's start-up includes warming every client process up (a query to each
node), and the plain pool's a warm-up task per process. ``to_round_2_s``
(``startup_s + first_round_s``) is the like-for-like start-up; ``steady_round_s``
(the mean of rounds 2 onwards) the like-for-like round; the ratio rows divide every
column, and those of ``startup_s`` and ``first_round_s`` compare unlike boundaries.
pwfl's server also scores its validation split each round and writes its records
(``rounds.csv``, ``clients.csv``); Flower's ``FedAvg`` aggregates in the server's
thread, as pwfl's does. Each setup runs in a fresh interpreter of its own, so none
inherits what an earlier one left (imports, caches, garbage). Peak memory is the
resident memory of that process (``main process``) and its descendants summed (an
upper bound: shared pages count once per process), with the processes holding most of it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from common import PeakMemory, timed_run
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from overhead import raw_pytorch

from pwfl import arithmetic, training
from pwfl.apps.settings import train_settings
from pwfl.config import Config, load_config
from pwfl.data import client_data, client_size, prepare, server_test_data
from pwfl.runner import quiet_libraries

HERE = Path(__file__).resolve().parent
COHORTS = (10, 100, 1_000)
ROUNDS = {10: 3, 100: 3, 1_000: 2}  # rounds 2 on are the steady ones; 1,000 costs minutes a round
EXAMPLES = 40
MODEL = "mlp"

PWFL_VARIANTS = {
    "pwfl messages=client": ["simulation.messages=client"],
    "pwfl messages=cohort": ["simulation.messages=cohort"],
    "pwfl messages=cohort + node_aggregation": [
        "simulation.messages=cohort",
        "simulation.node_aggregation=true",
        "simulation.pool_size=2",
    ],
}
PYTORCH = "plain PyTorch (process pool)"
FLOWER = "Flower run_simulation (FedAvg, node per client)"
TIMES = ("startup_s", "first_round_s", "to_round_2_s", "steady_round_s", "total_s")


def cohort_config(clients: int, rounds: int, overrides: list[str] | None = None) -> Config:
    """The experiment of one cohort: every one of ``clients`` clients trains each round."""
    return load_config(
        None,
        [
            "data.name=mnist-5k",
            f"data.num_clients={clients}",
            "data.partitioner=resample",
            f"data.examples_per_client={EXAMPLES}",
            f"model.name={MODEL}",
            "strategy.name=fedavg",
            f"strategy.num_rounds={rounds}",
            "strategy.fraction_train=1.0",
            "strategy.fraction_evaluate=0.0",
            "checkpoint.every=0",
            "simulation.client_cpus=1.0",
            "simulation.client_gpus=0.0",
            # No faults are injected, so no reply is ever late; a node's sum
            # (node_aggregation) asks for the server to wait for every reply.
            "faults.round_timeout_s=inf",
            *(overrides or []),
        ],
    )


def flower_client_app(cfg: Config) -> ClientApp:
    """A Message-API ClientApp: train the received weights on this node's partition."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """One client's local training, as the plain pool's worker does it."""
        arithmetic.ensure(cfg.reproducibility.arithmetic)
        torch.set_num_threads(1)
        pid = int(context.node_config["partition-id"])
        server_round = int(msg.content["config"]["server-round"])
        data = client_data(cfg.data, cfg.seed, pid)
        received = msg.content["arrays"].to_torch_state_dict()
        state, metrics = training.train(received, data, train_settings(cfg, server_round, pid))
        reply = RecordDict(
            {
                "arrays": ArrayRecord(state),
                "metrics": MetricRecord({"num-examples": len(data), "loss": metrics["loss"]}),
            }
        )
        return Message(reply, reply_to=msg)

    return app


def flower_server_app(cfg: Config, marks: list[float], accuracy: list[float]) -> ServerApp:
    """A ServerApp running Flower's FedAvg over every node; its ``evaluate_fn`` tests each
    round's average and appends the host time each round ended to ``marks`` (the first
    mark: round 1 starts)."""
    app = ServerApp()
    nodes = cfg.data.num_clients

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        """Run the rounds."""
        arithmetic.ensure(cfg.reproducibility.arithmetic)
        settings = train_settings(cfg)
        test = server_test_data(cfg.data, cfg.seed)

        def test_average(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            # Round 0 is the initial weights, which the other setups do not test.
            if server_round:
                tested = training.evaluate(arrays.to_torch_state_dict(), test, settings)
                accuracy.append(tested["accuracy"])
            marks.append(time.perf_counter())
            return None

        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=nodes,
            min_available_nodes=nodes,
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(training.initial_state(settings, cfg.seed)),
            num_rounds=cfg.strategy.num_rounds,
            evaluate_fn=test_average,
        )

    return app


def flower_simulation(cfg: Config) -> dict[str, float]:
    """The rounds of ``cfg`` on Flower's own simulation, one SuperNode per client."""
    from flwr.simulation import run_simulation

    start = time.perf_counter()
    arithmetic.ensure(cfg.reproducibility.arithmetic)
    prepare(cfg.data, cfg.seed)
    marks: list[float] = []
    accuracy: list[float] = []
    # Flower's Ray backend writes this process's sys.path into PYTHONPATH for good
    # (its workers import the apps' modules: benchmarks/ is on sys.path); the runs
    # after this one should start from the same environment as the ones before.
    saved = os.environ.get("PYTHONPATH")
    quiet_libraries(False)
    try:
        run_simulation(
            server_app=flower_server_app(cfg, marks, accuracy),
            client_app=flower_client_app(cfg),
            num_supernodes=cfg.data.num_clients,
            backend_config={
                "client_resources": {"num_cpus": 1, "num_gpus": 0},
                # "local": a Ray session of its own, as pwfl starts (not a cluster left
                # by an earlier `ray start`).
                "init_args": {
                    "address": "local",
                    "logging_level": logging.ERROR,
                    "log_to_driver": False,
                },
            },
        )
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        quiet_libraries(False)
    total = time.perf_counter() - start
    if len(marks) != cfg.strategy.num_rounds + 1:
        raise RuntimeError(f"Flower's simulation ended after {len(marks) - 1} rounds")
    rounds = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    steady = rounds[1:]
    return {
        "startup_s": marks[0] - start,
        "first_round_s": rounds[0],
        "steady_round_s": sum(steady) / len(steady) if steady else math.nan,
        "total_s": total,
        "final_accuracy": accuracy[-1],
    }


def _pwfl(cfg: Config) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return timed_run(cfg, Path(tmp) / "run")


CHILD_MARK = "cohorts-figures: "


def _child(kind: str, clients: str, rounds: str, overrides: str) -> None:
    """Run one setup in this fresh process and print its figures as one JSON line."""
    run = {"pytorch": raw_pytorch, "flower": flower_simulation, "pwfl": _pwfl}[kind]
    try:
        figures: dict[str, Any] = run(
            cohort_config(int(clients), int(rounds), json.loads(overrides))
        )
    except Exception as err:
        measures = ("startup_s", "first_round_s", "steady_round_s", "total_s")
        figures = dict.fromkeys((*measures, "final_accuracy"), math.nan)
        figures["error"] = f"{type(err).__name__}: {err}".splitlines()[0][:200]
    print(CHILD_MARK + json.dumps(figures), flush=True)


def _measured(
    label: str, kind: str, clients: int, rounds: int, overrides: list[str]
) -> dict[str, Any]:
    """One setup's figures and its peak memory, each setup in a fresh interpreter: run in
    this one after the others, a setup would inherit what they left (imports, caches,
    garbage the collector walks) and later setups would pay for earlier ones. NaN for a
    setup whose config is refused or whose run raises, so the other rows are still
    measured."""
    began = time.perf_counter()
    code = (
        "import sys; import pwfl; sys.path.insert(0, sys.argv[1]); import cohorts; "
        "cohorts._child(*sys.argv[2:])"
    )
    command = [sys.executable, "-c", code, str(HERE), kind, str(clients), str(rounds)]
    child = subprocess.Popen(
        [*command, json.dumps(overrides)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with PeakMemory(root=child.pid) as memory:
        out, err = child.communicate()
    lines = [line for line in out.splitlines() if line.startswith(CHILD_MARK)]
    if lines:
        figures = json.loads(lines[-1][len(CHILD_MARK) :])
    else:
        measures = ("startup_s", "first_round_s", "steady_round_s", "total_s")
        figures = dict.fromkeys((*measures, "final_accuracy"), math.nan)
        tail = (err.strip().splitlines() or ["no output"])[-1]
        figures["error"] = f"the setup's process ended with {child.returncode}: {tail}"[:200]
    # Where each setup's start-up ends differs (module docstring); round 2 starts
    # once every setup has loaded and run everything once.
    figures["to_round_2_s"] = figures["startup_s"] + figures["first_round_s"]
    # The case runs for minutes and prints its table at the end: a line per setup
    # shows how far it got.
    print(
        f"cohorts: {clients} clients, {label}: "
        f"{time.perf_counter() - began:.0f} s {figures.get('error', '')}",
        file=sys.stderr,
        flush=True,
    )
    return {
        **{name: figures[name] for name in (*TIMES, "final_accuracy")},
        "peak_rss_gib": memory.peak_bytes / 2**30,
        "memory_held_by": memory.holders(),
        "error": figures.get("error", ""),
    }


def _ratio(label: str, top: dict[str, Any], bottom: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"setup": label, "memory_held_by": "", "error": ""}
    for name in (*TIMES, "peak_rss_gib"):
        row[name] = top[name] / bottom[name] if bottom[name] else math.nan
    return row


def run(smoke: bool = False) -> pd.DataFrame:
    """Every setup at every cohort size; one row each, then the ratio rows."""
    cohorts = (4,) if smoke else COHORTS
    # The smoke check runs pwfl's clients in threads of this process (its Ray path is
    # the same apps, and tests/test_e2e.py runs it); Flower's simulation needs Ray.
    backend = ["simulation.backend=inline"] if smoke else []
    frames = []
    for clients in cohorts:
        rounds = 2 if smoke else ROUNDS.get(clients, 3)
        base = cohort_config(clients, rounds)
        measured = {
            PYTORCH: _measured(PYTORCH, "pytorch", clients, rounds, []),
            FLOWER: _measured(FLOWER, "flower", clients, rounds, []),
        }
        for label, overrides in PWFL_VARIANTS.items():
            measured[label] = _measured(label, "pwfl", clients, rounds, [*overrides, *backend])
        rows = [{"setup": label, **figures} for label, figures in measured.items()]
        for label in (FLOWER, *PWFL_VARIANTS):
            rows.append(_ratio(f"ratio {label} / PyTorch", measured[label], measured[PYTORCH]))
        for label in PWFL_VARIANTS:
            rows.append(_ratio(f"ratio {label} / Flower", measured[label], measured[FLOWER]))
        frame = pd.DataFrame(rows)
        frame.insert(0, "setting", f"{clients} clients")
        frame.insert(1, "clients_per_round", clients)
        frame.insert(2, "examples_per_client", client_size(base.data, base.seed, 0))
        frame.insert(3, "model", MODEL)
        frame.insert(4, "rounds", rounds)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)
