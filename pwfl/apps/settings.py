"""Reading the experiment config inside a Flower app, however the app was started.

In pwfl's own runner the config object is handed to the app factories. Under
Flower's tooling (``flwr run .``, ``pwfl deploy``) it travels in one run-config key,
``experiment``: the experiment's TOML text, as a config file or ``config.toml`` of a
run folder holds it (``[[weight_set]]`` tables included); empty means the defaults.
``pyproject.toml`` lists it (Flower accepts overrides of listed keys only) with a short
default run. On the command line its value is a TOML basic string without a ``"``
inside (Flower splits ``--run-config`` with a pattern that ends a quoted value at the
next ``"``); :func:`run_config_argument` writes it::

    flwr run . --run-config 'experiment="strategy.k = 3\\nstrategy.num_rounds = 5"'
    flwr run . --run-config 'experiment="strategy = {k = 3, num_rounds = 5}"'
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from pwfl.config import Config, config_from_toml
from pwfl.data import check_inputs, dataset_info
from pwfl.errors import ConfigError
from pwfl.seeding import seed_for
from pwfl.training import TrainSettings

EXPERIMENT_KEY = "experiment"
"""The run-config key holding the experiment's TOML text (empty: the defaults)."""

# Run-config keys that are about the Flower app, not the experiment.
APP_KEYS = ("out-dir",)

STEP_KEY = "train-step"
"""Message config key of the training step's dotted path (empty or absent: the plain
cross-entropy step)."""
STEP_OPTION = "step."
"""Prefix of the message config keys that are the step's options (``step.mu``)."""


def config_from_run_config(run_config: dict[str, Any]) -> Config:
    """Build the experiment config from Flower's run config (its ``experiment`` key).

    Raises
    ------
    ConfigError
        On another key, a value that is not TOML text, or an invalid experiment
        (including a model that does not take the data set's examples).
    """
    unknown = sorted(set(run_config) - {EXPERIMENT_KEY, *APP_KEYS})
    if unknown:
        raise ConfigError(
            f"run-config key '{unknown[0]}' is not pwfl's; put the experiment's settings "
            f"in the '{EXPERIMENT_KEY}' key as TOML text"
        )
    text = run_config.get(EXPERIMENT_KEY, "")
    if not isinstance(text, str):
        raise ConfigError(
            f"run-config key '{EXPERIMENT_KEY}' must be the experiment's TOML text, got {text!r}"
        )
    return _experiment(text)


@functools.lru_cache(maxsize=8)
def _experiment(text: str) -> Config:
    # Cached: a ClientApp reads the run config for every message it handles.
    cfg = config_from_toml(text)
    check_inputs(cfg)
    return cfg


def run_config(cfg: Config, out_dir: str | None = None) -> dict[str, str]:
    """The run config that carries ``cfg`` to a Flower app (and ``out-dir`` if given)."""
    extra = {} if out_dir is None else {"out-dir": out_dir}
    return {**extra, EXPERIMENT_KEY: cfg.to_toml()}


def run_config_argument(text: str) -> str:
    """``experiment="..."``: TOML text as one ``--run-config`` item of ``flwr run``.

    Flower 1.41 splits ``--run-config`` with the pattern ``key=("..."|'...'|word)``
    and parses what it found as TOML, so the value must be a TOML string with no
    ``"`` inside. No TOML writer avoids that character (they escape it as ``\\"``), so
    the basic string is written here: backslashes doubled, quotes and control
    characters as ``\\uXXXX``, new lines as ``\\n``.
    """
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == '"' or ord(char) < 0x20 or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return f'{EXPERIMENT_KEY}="{"".join(out)}"'


def repeat_key(sent: dict[str, Any]) -> tuple[int, ...]:
    """What a client's n-th job of one (round, set) adds to its seeds: nothing for the
    first (every synchronous round), ``(n,)`` after it."""
    repeat = int(sent.get("repeat", 0))
    return (repeat,) if repeat else ()


def train_settings(
    cfg: Config,
    server_round: int = 0,
    partition_id: int = 0,
    overrides: dict[str, Any] | None = None,
) -> TrainSettings:
    """Training settings of one client in one round.

    ``overrides`` are the values the server sent in the message's config
    (``model``, ``local-epochs``, ``lr``, ...: the settings of the weight set the
    message carries), which win over the experiment config. The seed of batch order
    and dropout is drawn from (round, client, ``weight-set``): a client training
    two sets in one round shuffles each its own way; and from ``repeat`` when that is
    not 0 (the second job of one client in one FedBuff step trains on other batches).
    The training step and its options come from the message alone (``train-step``,
    ``step.<name>``): the server's engine sends ``train.step``, and a strategy may
    send a step of its own.
    """
    overrides = overrides or {}
    # The data set is the weight set's task (its own [[weight_set]] data keys, if any).
    weight_set = int(overrides.get("weight-set", 0))
    info = dataset_info(cfg.for_set(weight_set).data if cfg.weight_set else cfg.data)
    use_gpu = cfg.simulation.client_gpus > 0 and torch.cuda.is_available()
    return TrainSettings(
        model=str(overrides.get("model", cfg.model.name)),
        input_shape=info.input_shape,
        num_classes=info.num_classes,
        local_epochs=float(overrides.get("local-epochs", cfg.train.local_epochs)),
        batch_size=int(overrides.get("batch-size", cfg.train.batch_size)),
        lr=float(overrides.get("lr", cfg.train.lr)),
        momentum=float(overrides.get("momentum", cfg.train.momentum)),
        augment=bool(overrides.get("augment", cfg.train.augment)),
        seed=seed_for(
            cfg.seed,
            "client-train",
            server_round,
            partition_id,
            int(overrides.get("weight-set", 0)),
            *repeat_key(overrides),
        ),
        device="cuda" if use_gpu else "cpu",
        step=str(overrides.get(STEP_KEY, "")),
        step_options=tuple(
            sorted(
                (key[len(STEP_OPTION) :], value)
                for key, value in overrides.items()
                if key.startswith(STEP_OPTION)
            )
        ),
    )
