"""The ServerApp: read the config, discover the clients, build the strategy and run it."""

from __future__ import annotations

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
from pwfl.config import Config
from pwfl.data import server_test_data
from pwfl.records import RunRecorder, atomic_write_text
from pwfl.strategies import PWFL, RecordingFedAvg, build_strategy
from pwfl.strategies.common import discover_clients, to_numpy

DISCOVERY_TIMEOUT_S = 600.0  # deployment nodes may take a while to connect
ROUND_TIMEOUT_S = 3600.0


def run_server(
    grid: Grid,
    cfg: Config,
    out_dir: str | Path,
    callbacks: Sequence[Callback] = (),
    label: str | None = None,
) -> dict[str, Arrays]:
    """Run one experiment on a Flower grid and write its records to ``out_dir``.

    ``label`` names the run in the tables (default: the strategy's name).
    Returns the final weights by weight-set name (``"0"``, ``"1"``, ...).
    """
    out = Path(out_dir)
    atomic_write_text(out / "config.toml", cfg.to_toml())
    test = server_test_data(cfg.data, cfg.seed)
    settings = train_settings(cfg)

    def evaluate_weights(arrays: Arrays) -> dict[str, float]:
        state = {name: torch.tensor(value) for name, value in arrays.items()}
        return training.evaluate(state, test, settings)

    directory = discover_clients(grid, cfg.data.num_clients, DISCOVERY_TIMEOUT_S)
    recorder = RunRecorder(out, label or cfg.strategy.name, cfg.seed, cfg.strategy.target_accuracy)
    everyone = [recorder, *callbacks]
    strategy = build_strategy(cfg, directory, evaluate_weights, everyone)
    initial = ArrayRecord(training.initial_state(settings, cfg.seed))
    evaluate_fn = strategy.central_evaluate if isinstance(strategy, RecordingFedAvg) else None
    try:
        result = strategy.start(
            grid,
            initial,
            num_rounds=cfg.strategy.num_rounds,
            timeout=ROUND_TIMEOUT_S,
            train_config=ConfigRecord(train_config(cfg)),
            evaluate_config=ConfigRecord(),
            evaluate_fn=evaluate_fn,
        )
    finally:
        if isinstance(strategy, PWFL):
            strategy.executor.shutdown()
    if isinstance(strategy, PWFL):
        final = {str(ws.id): ws.arrays for ws in strategy.weight_sets}
    else:
        final = {"0": to_numpy(result.arrays)}
    save_weights(out / "final_weights.npz", final)
    for callback in everyone:
        callback.on_run_end()
    return final


def save_weights(path: Path, weight_sets: dict[str, Arrays]) -> None:
    """Save weight sets in one ``.npz`` (keys ``"<set>/<tensor>"``), atomically."""
    flat = {
        f"{ws}/{name}": value
        for ws, arrays in weight_sets.items()
        for name, value in arrays.items()
    }
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **flat)
    tmp.replace(path)


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
) -> ServerApp:
    """A ServerApp for ``cfg``, or for the run config when ``cfg`` is None."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = cfg if cfg is not None else config_from_run_config(context.run_config)
        out = (
            out_dir
            if out_dir is not None
            else context.run_config.get("out-dir", "results/flwr-run")
        )
        run_server(grid, config, str(out), callbacks, label)

    return app


# Loaded by Flower's tooling (``flwr run .``): the config comes from the run config.
app = make_server_app()
