"""FedProx (Li et al., MLSys 2020) through the local-training hook: its proximal step by
hand, mu = 0 giving FedAvg's bits, and a run with the term on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from pwfl.config import load_config
from pwfl.errors import ConfigError
from pwfl.runner import run_experiment
from pwfl.strategies import build_policy
from pwfl.strategies.fedprox import STEP, proximal_step
from pwfl.training import StepContext

from .conftest import CONFIGS

TINY = CONFIGS / "tiny.toml"


def test_the_proximal_step_adds_mu_over_two_times_the_squared_drift():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    received = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        model.weight += 0.5  # the client has moved: 6 weights, each 0.5 away
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    mu = 0.2
    loss = proximal_step(model, x, y, StepContext(received, {"mu": mu}))
    plain = nn.functional.cross_entropy(model(x), y)
    # (mu / 2) * 6 * 0.5^2 = 0.15
    assert float(loss - plain) == pytest.approx(0.15, rel=1e-6)
    loss.backward()
    weight_grad = model.weight.grad.clone()
    model.zero_grad()
    plain = nn.functional.cross_entropy(model(x), y)
    plain.backward()
    # The term's gradient is mu (w - w^t): 0.2 * 0.5 on every weight, 0 on the bias.
    torch.testing.assert_close(weight_grad - model.weight.grad, torch.full((2, 3), 0.1))


def test_fedprox_names_its_step_and_mu_in_every_training_message():
    cfg = load_config(TINY, ["strategy.name=fedprox", "strategy.fedprox.mu=0.5"])
    assert build_policy(cfg).train_config(0) == {"train-step": STEP, "step.mu": 0.5}
    with pytest.raises(ConfigError, match="fedprox trains with its own step"):
        load_config(TINY, ["strategy.name=fedprox", "train.step=mylab.steps:mine"])
    with pytest.raises(ConfigError, match=r"strategy.fedprox.mu' = -1.0 is invalid"):
        load_config(TINY, ["strategy.name=fedprox", "strategy.fedprox.mu=-1.0"])


def _weights(path) -> dict[str, np.ndarray]:
    with np.load(path / "final_weights.npz") as data:
        return {key: data[key] for key in data.files}


def test_mu_zero_gives_fedavgs_bits_and_mu_above_zero_does_not(tmp_path):
    base = ["strategy.num_rounds=2", "train.local_epochs=2"]
    run_experiment(
        load_config(TINY, ["strategy.name=fedavg", *base]), tmp_path / "fedavg", quiet=True
    )
    zero = ["strategy.name=fedprox", "strategy.fedprox.mu=0", *base]
    run_experiment(load_config(TINY, zero), tmp_path / "zero", quiet=True)
    strong = ["strategy.name=fedprox", "strategy.fedprox.mu=1.0", *base]
    run_experiment(load_config(TINY, strong), tmp_path / "strong", quiet=True)

    fedavg, zero_w, strong_w = (_weights(tmp_path / n) for n in ("fedavg", "zero", "strong"))
    assert fedavg.keys() == zero_w.keys()
    for key in fedavg:
        np.testing.assert_array_equal(zero_w[key], fedavg[key], err_msg=key)
    assert any(not np.array_equal(strong_w[k], fedavg[k]) for k in fedavg)

    host = ("strategy", "elapsed_wall_s", "round_wall_s", "aggregate_wall_s")
    a = pd.read_csv(tmp_path / "zero" / "rounds.csv").drop(columns=list(host))
    b = pd.read_csv(tmp_path / "fedavg" / "rounds.csv").drop(columns=list(host))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # The term pulls every client towards the model it was sent: with mu = 1 the
    # clients move less in their local epochs, so their reported losses differ.
    losses = pd.read_csv(tmp_path / "strong" / "clients.csv").query("phase == 'train'")["loss"]
    assert not np.allclose(
        losses, pd.read_csv(tmp_path / "fedavg" / "clients.csv").query("phase == 'train'")["loss"]
    )
