"""The ServerApp: read the config, discover the clients, build the strategy and run it."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from pwfl import training
from pwfl.aggregation import Arrays
from pwfl.apps.settings import config_from_run_config, train_config, train_settings
from pwfl.callbacks import Callback
from pwfl.checkpoint import (
    CHECKPOINT_FILE,
    CLIENT_STATE_DIR,
    Checkpoint,
    Checkpointer,
    drop_client_state_after,
)
from pwfl.config import Config
from pwfl.data import server_test_data
from pwfl.quorum import QuorumLost
from pwfl.records import RunRecorder, atomic_savez, atomic_write_text
from pwfl.strategies import PWFL, AsyncPWFL, RecordingFedAvg, build_strategy
from pwfl.strategies.common import discover_clients, grid_timeout

DISCOVERY_TIMEOUT_S = 600.0  # deployment nodes may take a while to connect
# What a fresh run removes from its folder, so that no stale checkpoint, client
# state or summary of an earlier run can be mistaken for this one's.
STALE = ("summary.json", CHECKPOINT_FILE, CLIENT_STATE_DIR)


def run_server(
    grid: Grid,
    cfg: Config,
    out_dir: str | Path,
    callbacks: Sequence[Callback] = (),
    label: str | None = None,
    resume: Checkpoint | None = None,
) -> dict[str, Arrays]:
    """Run one experiment on a Flower grid and write its records to ``out_dir``.

    ``label`` names the run in the tables (default: the strategy's name);
    ``resume`` continues the run saved in that checkpoint. Returns the final
    weights by weight-set name (``"0"``, ``"1"``, ...). A run whose every weight
    set keeps missing quorum stops early: its ``summary.json`` says why.
    """
    out = Path(out_dir)
    if resume is None:
        clear_stale_files(out)
    else:
        drop_client_state_after(out / CLIENT_STATE_DIR, resume.round)
    atomic_write_text(out / "config.toml", cfg.to_toml())
    test = server_test_data(cfg.data, cfg.seed)
    settings = train_settings(cfg)

    def evaluate_weights(arrays: Arrays) -> dict[str, float]:
        state = {name: torch.tensor(value) for name, value in arrays.items()}
        return training.evaluate(state, test, settings)

    directory = discover_clients(grid, cfg.data.num_clients, DISCOVERY_TIMEOUT_S)
    label = label or cfg.strategy.name
    recorder = RunRecorder(out, label, cfg.seed, cfg.strategy.target_accuracy)
    everyone = [recorder, *callbacks]
    strategy = build_strategy(cfg, directory, evaluate_weights, everyone)
    if cfg.checkpoint.every > 0 and not isinstance(strategy, AsyncPWFL):
        # After the recorder: a checkpoint holds the round's rows.
        checkpointer = Checkpointer(out / CHECKPOINT_FILE, cfg, label, strategy, recorder)
        strategy.callbacks.insert(1, checkpointer)
    initial = ArrayRecord(training.initial_state(settings, cfg.seed))
    num_rounds = cfg.strategy.num_rounds
    if resume is not None:
        recorder.restore(resume.records)
        if isinstance(strategy, RecordingFedAvg):
            initial = strategy.restore(resume)
            num_rounds -= resume.round  # Flower's loop counts from 1
        else:
            strategy.resume = resume
    evaluate_fn = strategy.central_evaluate if isinstance(strategy, RecordingFedAvg) else None
    try:
        strategy.start(
            grid,
            initial,
            num_rounds=num_rounds,
            # None for round_timeout_s = inf: Flower's start hands the timeout to
            # grid.send_and_receive, which then waits for every reply.
            timeout=grid_timeout(cfg.faults.round_timeout_s),  # type: ignore[arg-type]
            train_config=ConfigRecord(train_config(cfg)),
            evaluate_config=ConfigRecord(),
            evaluate_fn=evaluate_fn,
        )
    except QuorumLost as err:
        logging.getLogger(__name__).error("%s", err)
        recorder.stopped = str(err)
    finally:
        if isinstance(strategy, PWFL):
            strategy.executor.shutdown()
    if isinstance(strategy, PWFL):
        final = {str(ws.id): ws.arrays for ws in strategy.weight_sets}
    else:
        final = {"0": strategy.current}
    save_weights(out / "final_weights.npz", final)
    for callback in everyone:
        callback.on_run_end()
    return final


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
) -> ServerApp:
    """A ServerApp for ``cfg``, or for the run config when ``cfg`` is None.

    ``resume`` continues the run saved in that checkpoint.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = cfg if cfg is not None else config_from_run_config(context.run_config)
        out = (
            out_dir
            if out_dir is not None
            else context.run_config.get("out-dir", "results/flwr-run")
        )
        run_server(grid, config, str(out), callbacks, label, resume)

    return app


# Loaded by Flower's tooling (``flwr run .``): the config comes from the run config.
app = make_server_app()
