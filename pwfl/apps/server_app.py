"""The ServerApp: read the config, build the round engine and its strategy, run, save.

Everything a round does lives in :mod:`pwfl.engine`; this app only wires it to
Flower's grid and to the run folder, and hands the outcome back as a value.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from pwfl import arithmetic, training
from pwfl.aggregation import Arrays, make_executor
from pwfl.apps.settings import config_from_run_config, train_settings
from pwfl.callbacks import Callback
from pwfl.checkpoint import (
    CHECKPOINT_FILE,
    CLIENT_STATE_DIR,
    Checkpoint,
    Checkpointer,
    drop_client_state_after,
)
from pwfl.config import Config, DataConfig, check_single_run
from pwfl.data import client_size, server_test_data, server_validation_data
from pwfl.devices import make_profiles
from pwfl.engine import Engine, SetModel, connect
from pwfl.errors import PwflError
from pwfl.interrupt import StoppableGrid
from pwfl.population import Population
from pwfl.records import RunRecorder, atomic_savez, atomic_write_text
from pwfl.schema import ROUNDS, SERVER
from pwfl.strategies import build_policy
from pwfl.strategies.base import Policy
from pwfl.strategies.rounds import SynchronousRounds

# What a fresh run removes from its folder, so that no stale checkpoint, client
# state or summary of an earlier run can be mistaken for this one's.
STALE = ("summary.json", CHECKPOINT_FILE, CLIENT_STATE_DIR)


@dataclass
class Outcome:
    """What a run hands back: its summary and final weights, or the error that ended it."""

    summary: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Arrays] = field(default_factory=dict)
    error: PwflError | None = None


def run_server(
    grid: Grid,
    cfg: Config,
    out_dir: str | Path,
    callbacks: Sequence[Callback] = (),
    label: str | None = None,
    resume: Checkpoint | None = None,
    pool_size: int = 0,
    stop: threading.Event | None = None,
    aggregate_with: str | None = None,
) -> Outcome:
    """Run one experiment on a Flower grid and write its records to ``out_dir``.

    ``label`` names the run in the tables (default: the strategy's name);
    ``resume`` continues the run saved in that checkpoint; ``pool_size`` is the
    number of nodes a pool-bound run waits for (0: those connected);
    ``aggregate_with`` names the executor that aggregates instead of
    ``strategy.executor`` (the runner's choice on the inline backend,
    :func:`pwfl.runner.aggregation_executor`). A run
    whose every weight set keeps missing quorum stops early; its outcome (and
    ``summary.json``) says why. Once ``stop`` is set, the next grid call raises
    :class:`pwfl.errors.Interrupted` (:mod:`pwfl.interrupt`): the run ends with
    its folder as its last round's records and checkpoint left it.
    """
    if stop is not None:
        grid = StoppableGrid(grid, stop)
    out = Path(out_dir)
    label = label or cfg.strategy.name
    arithmetic.ensure(cfg.reproducibility.arithmetic)
    policy = build_policy(cfg)
    if resume is not None and not checkpoints_kept(cfg, policy):
        raise PwflError(
            f"strategy '{cfg.strategy.name}' (mode {cfg.strategy.mode}) with client state kept "
            "on the nodes writes no checkpoints and cannot be resumed; start it again with "
            "pwfl run --overwrite"
        )
    if resume is None:
        clear_stale_files(out)
    else:
        drop_client_state_after(out / CLIENT_STATE_DIR, resume.round)
    provenance = arithmetic.provenance(cfg.reproducibility.arithmetic)
    atomic_write_text(out / "config.toml", arithmetic.provenance_header(provenance) + cfg.to_toml())
    settings = train_settings(cfg)
    evaluate_weights = _tester(lambda: _held_out(cfg.data, cfg.seed), settings)

    nodes = connect(grid, cfg, pool_size)
    population = Population(cfg, _client_sizes(cfg, nodes))
    executor = make_executor(
        aggregate_with or cfg.strategy.executor, workers=policy.num_weight_sets
    )
    profiles = make_profiles(cfg.clients, cfg.data.num_clients, cfg.seed)
    engine = Engine(
        cfg,
        label,
        policy,
        grid,
        population,
        nodes,
        evaluate_weights,
        executor,
        profiles,
        statistics=_statistics(cfg, policy.num_weight_sets),
        flops_per_example=training.flops_per_example(settings),
        set_models=_set_models(cfg, policy.num_weight_sets),
    )
    recorder = RunRecorder(out)
    watchers: list[Callback] = [recorder]
    if cfg.checkpoint.every > 0 and checkpoints_kept(cfg, policy):
        # After the recorder: a checkpoint marks the files with the round's rows.
        watchers.append(Checkpointer(out / CHECKPOINT_FILE, cfg, label, engine, recorder))
    else:
        engine.checkpoint_round = -1  # no checkpoint will need the clients' older state
    watchers += callbacks
    engine.callbacks = watchers
    if resume is not None:
        recorder.restore(resume.files)
    try:
        # With [[weight_set]] tables each set starts from its own model's (SetModel):
        # the shared model, which may not fit the shared data no set uses, is not built.
        shared = training.initial_state(settings, cfg.seed) if not cfg.weight_set else {}
        initial = {k: v.numpy() for k, v in shared.items()}
        result = engine.run(initial, resume)
    finally:
        executor.shutdown()
    save_weights(out / "final_weights.npz", result.weight_sets)
    summary = {**run_summary(recorder, cfg, label, result.stopped), "provenance": provenance}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    for callback in watchers:
        callback.on_run_end()
    if result.stopped:
        logging.getLogger(__name__).error("%s", result.stopped)
    error = PwflError(result.stopped) if result.stopped else None
    return Outcome(summary, result.weight_sets, error)


def checkpoints_kept(cfg: Config, policy: Policy) -> bool:
    """Whether the run can be checkpointed: always, except without a round barrier
    (async PWFL, FedBuff, FedAsync) when clients keep state on their own nodes (node binding),
    whose files follow each client's own rounds, not a checkpoint's."""
    return (
        isinstance(policy, SynchronousRounds)
        or cfg.train.client_state == "none"
        or cfg.simulation.client_binding == "pool"
    )


def _held_out(data: DataConfig, seed: int) -> tuple[Any, Any]:
    """A task's server (validation, test) sets."""
    return server_validation_data(data, seed), server_test_data(data, seed)


def _tester(
    held_out: Callable[[], tuple[Any, Any]], settings: training.TrainSettings
) -> Callable[[Arrays], dict[str, float]]:
    """The server's evaluation of one set of weights on its (validation, test) sets:
    ``accuracy`` and ``loss`` on the test set, ``val_accuracy`` and ``val_loss`` on
    validation. The sets are loaded at the first evaluation (``held_out``), so a
    shared data set that no weight set trains on is never loaded."""

    loaded: list[tuple[Any, Any]] = []

    def evaluate_weights(arrays: Arrays) -> dict[str, float]:
        if not loaded:
            loaded.append(held_out())
        validation, test = loaded[0]
        state = {name: torch.tensor(value) for name, value in arrays.items()}
        tested = training.evaluate(state, test, settings)
        validated = training.evaluate(state, validation, settings)
        return {
            "accuracy": tested["accuracy"],
            "loss": tested["loss"],
            "val_accuracy": validated["accuracy"],
            "val_loss": validated["loss"],
        }

    return evaluate_weights


def _set_models(cfg: Config, num_weight_sets: int) -> list[SetModel]:
    """Each weight set's model, test and cost when ``[[weight_set]]`` tables make them
    differ; none otherwise (every set is the shared model). A set's initial weights
    depend on its own model and the seed only, so a set trains as it would in a run
    whose every set had its settings. A set is tested on its own task's server test
    and validation sets."""
    if not cfg.weight_set:
        return []
    models = []
    for ws in range(num_weight_sets):
        settings = train_settings(cfg.for_set(ws))
        initial = training.initial_state(settings, cfg.seed)
        data, seed = cfg.set_data(ws)
        models.append(
            SetModel(
                {k: v.numpy() for k, v in initial.items()},
                _tester(functools.partial(_held_out, data, seed), settings),
                training.flops_per_example(settings),
            )
        )
    return models


def _client_sizes(cfg: Config, nodes: Any) -> Callable[[int, int], int]:
    """A client's example count for one weight set, ``(client, weight set) -> count``:
    of its share of that set's task. In node binding with one task, as the client's
    node reported it; otherwise derived from the config, which every node shares."""
    if len(cfg.tasks()) == 1:
        if nodes.pool:
            return lambda c, ws: client_size(cfg.data, cfg.seed, c)
        return lambda c, ws: nodes.sizes[c]
    return lambda c, ws: client_size(*cfg.set_data(ws), c)


def _statistics(cfg: Config, num_weight_sets: int) -> frozenset[str]:
    """Names of the running statistics (batch norm's) of every weight set's model: sets
    may train different models."""
    sets = [cfg.for_set(ws) for ws in range(num_weight_sets)] if cfg.weight_set else [cfg]
    return frozenset().union(*(training.statistics_of(train_settings(one)) for one in sets))


def run_summary(recorder: RunRecorder, cfg: Config, label: str, stopped: str) -> dict[str, Any]:
    """The headline numbers of a run (``summary.json``), from its records: each weight
    set's and ``all`` of them (:func:`pwfl.analysis.summarize_run`)."""
    from pwfl.analysis import summarize_run

    rounds = pd.DataFrame(recorder.rounds, columns=ROUNDS.names)
    server = pd.DataFrame(recorder.server, columns=SERVER.names)
    summary: dict[str, Any] = {"strategy": label, "seed": cfg.seed}
    summary["target_accuracy"] = cfg.targets()
    if len(rounds):
        summary.update(summarize_run(rounds, cfg.targets(), server))
    if stopped:
        summary["stopped"] = stopped
    return summary


def clear_stale_files(out: Path) -> None:
    """Remove an earlier run's summary, checkpoint and client state from ``out``."""
    for name in STALE:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def save_weights(path: Path, weight_sets: dict[str, Arrays]) -> None:
    """Save weight sets in one ``.npz`` (keys ``"<set>/<tensor>"``), atomically."""
    flat = {
        f"{ws}/{name}": value
        for ws, arrays in weight_sets.items()
        for name, value in arrays.items()
    }
    atomic_savez(path, flat)


def load_weights(path: str | Path) -> dict[str, Arrays]:
    """Read weight sets saved by :func:`save_weights`."""
    out: dict[str, Arrays] = {}
    with np.load(path) as data:
        for key in data.files:
            ws, name = key.split("/", 1)
            out.setdefault(ws, {})[name] = data[key]
    return out


def make_server_app(
    cfg: Config | None = None,
    out_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    label: str | None = None,
    resume: Checkpoint | None = None,
    outcome: Outcome | None = None,
    pool_size: int = 0,
    stop: threading.Event | None = None,
) -> ServerApp:
    """A ServerApp for ``cfg``, or for the run config when ``cfg`` is None.

    ``resume`` continues the run saved in that checkpoint; ``outcome`` (when
    given) receives the run's summary and weights, or the one-line error that
    ended it, so the caller in this process gets them as values; ``stop`` stops the
    run (:func:`run_server`).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            config = cfg if cfg is not None else config_from_run_config(context.run_config)
            check_single_run(config)  # flwr run: a table this strategy would ignore
            out = (
                out_dir
                if out_dir is not None
                else context.run_config.get("out-dir", "results/flwr-run")
            )
            done = run_server(
                grid, config, str(out), callbacks, label, resume, pool_size, stop=stop
            )
        except PwflError as err:
            if outcome is None:
                raise
            outcome.error = err
            return
        if outcome is not None:
            outcome.summary, outcome.weights, outcome.error = done.summary, done.weights, done.error

    return app


# Loaded by Flower's tooling (``flwr run .``): the config comes from the run config.
app = make_server_app()
