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
from pwfl.models import build_model
from pwfl.runner import run_experiment
from pwfl.strategies import build_policy
from pwfl.strategies.fedprox import STEP, proximal_step
from pwfl.training import (
    PERSONAL,
    ClientData,
    StepContext,
    TrainSettings,
    initial_state,
    personal_keys,
    train_keeping,
)

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
    loss, reported = proximal_step(model, x, y, StepContext(received, {"mu": mu}))
    plain = nn.functional.cross_entropy(model(x), y)
    # (mu / 2) * 6 * 0.5^2 = 0.15
    assert float(loss - plain) == pytest.approx(0.15, rel=1e-6)
    assert float(reported) == float(plain)  # the loss reported is the task's alone
    loss.backward()
    weight_grad = model.weight.grad.clone()
    model.zero_grad()
    plain = nn.functional.cross_entropy(model(x), y)
    plain.backward()
    # The term's gradient is mu (w - w^t): 0.2 * 0.5 on every weight, 0 on the bias.
    torch.testing.assert_close(weight_grad - model.weight.grad, torch.full((2, 3), 0.1))


SEEN: list[tuple[list[str], float]] = []
"""What :func:`recording_step` saw: the received names and the batch's task loss."""


def recording_step(model, inputs, targets, context):
    """FedProx's step, noting what it saw (the tests below read it)."""
    loss, task = proximal_step(model, inputs, targets, context)
    SEEN.append((sorted(context.received), float(task)))
    return loss, task


def _train_recording(keep: str, local: dict) -> dict[str, float]:
    settings = TrainSettings(
        model="mlp", input_shape=(1, 4, 4), num_classes=3, batch_size=4, local_epochs=1,
        step="tests.test_fedprox:recording_step", step_options=(("mu", 10.0),),
    )  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    data = ClientData(torch.randn(12, 1, 4, 4, generator=generator), torch.arange(12) % 3)
    SEEN.clear()
    _, metrics, _ = train_keeping(initial_state(settings, seed=0), data, settings, keep, local)
    return metrics


def test_a_client_reports_the_task_loss_without_the_proximal_term():
    metrics = _train_recording("none", {})
    assert len(SEEN) == 3  # 12 examples in batches of 4; mu = 10 makes the term large
    assert metrics["loss"] == pytest.approx(sum(task for _, task in SEEN) / 3, rel=1e-12)


def test_the_proximal_term_leaves_a_personal_layer_out():
    settings = TrainSettings(model="mlp", input_shape=(1, 4, 4), num_classes=3)
    state = initial_state(settings, seed=1)
    head = personal_keys(build_model("mlp", (1, 4, 4), 3, seed=0))
    local = {PERSONAL + k: state[k] + 1.0 for k in head}
    _train_recording("personal", local)
    received = set(SEEN[0][0])
    assert received and not received & set(head)
    _train_recording("none", {})
    assert set(head) <= set(SEEN[0][0])  # without personal state the head is shared


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
