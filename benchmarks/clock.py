"""The modelled clock beside this host: one client's training, modelled and measured.

For each model, one client of the quick setting (400 images, one epoch, batch
32) trains on one core of this host; the table puts its measured thread time
beside the modelled compute time of a device of speed 1 (the reference device,
``clock.reference_gflops``), so a reader can relate the reference device to real
hardware. It also estimates the share of work ``FlopCounterMode`` leaves out
(normalisation, activations, pooling, dropout, the loss and the optimiser step).
"""

from __future__ import annotations

import pandas as pd
import torch
from common import CONFIGS
from torch import nn

from pwfl import training
from pwfl.apps.settings import train_settings
from pwfl.clock import compute_seconds
from pwfl.config import load_config
from pwfl.data import client_data
from pwfl.models import build_model

# Rough costs of what FlopCounterMode does not count, per element they touch:
# batch norm about 10 FLOPs forward and backward, ReLU, max-pooling and dropout
# about 3, SGD with momentum 4 per parameter and step.
PER_ELEMENT = {nn.BatchNorm2d: 10.0, nn.ReLU: 3.0, nn.MaxPool2d: 3.0, nn.Dropout: 3.0}
SGD_FLOPS_PER_PARAMETER = 4.0


def uncounted_share(model_name: str, batch_size: int) -> float:
    """Estimated FLOPs left out per example over the counted ones."""
    settings = training.TrainSettings(model=model_name, batch_size=batch_size)
    model = build_model(model_name)
    model.eval()  # one example through: no batch statistics needed
    touched: list[int] = []
    hooks = [
        m.register_forward_hook(
            lambda mod, _, out: touched.append(PER_ELEMENT[type(mod)] * out[0].numel())
        )
        for m in model.modules()
        if type(m) in PER_ELEMENT
    ]
    model(torch.zeros(1, 1, 28, 28))
    for hook in hooks:
        hook.remove()
    parameters = sum(p.numel() for p in model.parameters())
    extra = sum(touched) + SGD_FLOPS_PER_PARAMETER * parameters / batch_size
    return extra / training.flops_per_example(settings)


def run(smoke: bool = False) -> pd.DataFrame:
    """One client's epoch, per model: measured here and modelled at the reference speed."""
    cfg = load_config(CONFIGS / "quick.toml")
    rows = []
    for model in ("small-cnn",) if smoke else ("cnn", "small-cnn", "mlp"):
        mcfg = cfg.with_overrides([f"model.name={model}"])
        data = client_data(mcfg.data, mcfg.seed, 0)
        settings = train_settings(mcfg, 1, 0)
        state = training.initial_state(settings, mcfg.seed)
        training.warm_up(settings)
        measured = []
        for _ in range(1 if smoke else 5):
            _, metrics = training.train(state, data, settings)
            measured.append(metrics["train_measured_s"])
        flops = training.flops_per_example(settings)
        examples = int(metrics["examples_run"])
        modelled = compute_seconds(examples, flops, mcfg.clock.reference_gflops, speed=1.0)
        host = min(measured)
        rows.append(
            {
                "model": model,
                "examples": examples,
                "mflop_per_example": flops / 1e6,
                "measured_s": host,
                "modelled_s": modelled,
                "modelled_over_measured": modelled / host,
                "host_gflops": examples * flops / host / 1e9,
                "reference_gflops": mcfg.clock.reference_gflops,
                "uncounted_share": uncounted_share(model, settings.batch_size),
            }
        )
    return pd.DataFrame(rows)
