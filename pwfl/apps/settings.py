"""Reading the experiment config inside a Flower app, however the app was started.

In pwfl's own runner the config object is handed to the app factories. Under
Flower's tooling (``flwr run .``) it comes from the run config, whose dotted keys
(``strategy.k = 2``, from ``[tool.flwr.app.config]`` or ``--run-config``) map
one to one onto :class:`pwfl.config.Config`.
"""

from __future__ import annotations

from typing import Any

import torch

from pwfl.config import Config, config_from_dict
from pwfl.data import dataset_info
from pwfl.seeding import seed_for
from pwfl.training import TrainSettings

# Run-config keys that are about the Flower app, not the experiment.
APP_KEYS = ("out-dir",)

STEP_KEY = "train-step"
"""Message config key of the training step's dotted path (empty or absent: the plain
cross-entropy step)."""
STEP_OPTION = "step."
"""Prefix of the message config keys that are the step's options (``step.mu``)."""


def config_from_run_config(run_config: dict[str, Any]) -> Config:
    """Build the experiment config from Flower's flat, dotted run config."""
    nested: dict[str, Any] = {}
    for key, value in run_config.items():
        if key in APP_KEYS:
            continue
        *sections, leaf = key.split(".")
        node = nested
        for name in sections:
            node = node.setdefault(name, {})
        node[leaf] = value
    return config_from_dict(nested)


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
    info = dataset_info(cfg.data.name)
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
