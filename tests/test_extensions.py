"""Your own model, data set, training step and aggregator by dotted path, found from the
working directory as ``python -m`` finds them (pwfl.extensions)."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid

import numpy as np
import pandas as pd
import pytest
import torch

from pwfl import cli, data, training
from pwfl.apps.server_app import load_weights
from pwfl.apps.settings import train_settings
from pwfl.config import load_config
from pwfl.runner import run_experiment

from .conftest import CONFIGS

TINY = CONFIGS / "tiny.toml"
SMALL = ["data.num_clients=3", "strategy.num_rounds=1"]

NETS = """
import torch
from torch import nn

CALLS = []

def make(input_shape, num_classes):
    CALLS.append((input_shape, num_classes))
    width = 1
    for n in input_shape:
        width *= n
    return nn.Sequential(nn.Flatten(), nn.Linear(width, num_classes))

def not_a_module(input_shape, num_classes):
    return 3

def too_few_outputs(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(1))
"""

DATA = """
import numpy as np

def load():
    # Two well-separated blobs of 8 features: labels 0 and 1.
    rng = np.random.default_rng(0)
    def draw(n):
        y = rng.integers(0, 2, n)
        x = rng.normal(0, 1, (n, 8)) + np.where(y[:, None] == 1, 3.0, -3.0)
        return x.astype(np.float32), y
    x_train, y_train = draw(600)
    x_test, y_test = draw(300)
    return x_train, y_train, x_test, y_test

def three():
    return load()[:3]
"""

STEPS = """
import torch
from torch import nn

SEEN = []

def prox(model, inputs, targets, context):
    SEEN.append((sorted(context.received), dict(context.options)))
    mu = context.options.get("mu", 0.01)
    drift = sum(((p - context.received[n]) ** 2).sum() for n, p in model.named_parameters())
    return nn.functional.cross_entropy(model(inputs), targets) + mu / 2 * drift

def not_a_scalar(model, inputs, targets, context):
    return nn.functional.cross_entropy(model(inputs), targets, reduction="none")
"""

AGG = """
import os
import numpy as np

CALLS = []

def mean(updates):
    # Leaves a mark in the working directory: which process aggregated.
    CALLS.append(len(updates))
    with open(f"aggregated-{os.getpid()}-{len(CALLS)}", "w") as mark:
        mark.write(str(len(updates)))
    total = sum(weight for _, weight in updates)
    return {
        name: sum(arrays[name] * (weight / total) for arrays, weight in updates).astype(
            updates[0][0][name].dtype
        )
        for name in updates[0][0]
    }
"""


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A package of your own code, in a fresh working directory the test runs from:
    ``<name>.nets``, ``<name>.data``, ``<name>.steps``, ``<name>.agg``."""
    name = f"lab{uuid.uuid4().hex[:8]}"  # fresh per test: nothing cached in sys.modules
    package = tmp_path / "work" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for module, text in (("nets", NETS), ("data", DATA), ("steps", STEPS), ("agg", AGG)):
        (package / f"{module}.py").write_text(textwrap.dedent(text))
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(sys, "path", list(sys.path))  # what pwfl adds is undone
    assert name not in sys.modules and str(tmp_path / "work") not in sys.path
    yield name
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]


def test_your_model_trains_in_a_run(lab, tmp_path):
    cfg = load_config(TINY, [*SMALL, "data.name=synthetic", f"model.name={lab}.nets:make"])
    run_experiment(cfg, tmp_path / "out", quiet=True)
    assert ((60,), 10) in sys.modules[f"{lab}.nets"].CALLS
    weights = load_weights(tmp_path / "out" / "final_weights.npz")
    assert sorted(weights["0"]) == ["1.bias", "1.weight"]  # the Sequential's Linear
    assert weights["0"]["1.weight"].shape == (10, 60)


def test_your_data_set_is_split_between_clients_and_learned(lab, tmp_path):
    cfg = load_config(TINY, [*SMALL, f"data.name={lab}.data:load", "model.name=logreg"])
    assert data.dataset_info(cfg.data.name) == data.DatasetInfo((8,), 2)
    parts = data.partition_indices(cfg.data, cfg.seed)
    assert len(parts) == 3
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(600))
    summary = run_experiment(cfg, tmp_path / "out", quiet=True)
    # The server tests on the 300 examples your function held out, less validation.
    held = data.server_test_data(cfg.data, cfg.seed), data.server_validation_data(cfg.data, 0)
    assert sum(len(part) for part in held) == 300
    sets = [v for k, v in summary.items() if isinstance(v, dict) and k.isdigit()]
    assert len(sets) == 2
    assert all(s["final_accuracy"] > 0.9 for s in sets)  # the blobs are apart


def test_your_training_step_gets_the_sent_weights_and_its_options(lab, tmp_path):
    cfg = load_config(TINY, [*SMALL, f"train.step={lab}.steps:prox"])
    run_experiment(cfg, tmp_path / "out", quiet=True)
    seen = sys.modules[f"{lab}.steps"].SEEN
    names = sorted(n for n, _ in training.build_model("small-cnn").named_parameters())
    # Every batch of every client (one epoch each) and the check's one batch before.
    batches = sum(-(-data.client_size(cfg.data, cfg.seed, c) // 32) for c in range(3))
    assert len(seen) == batches + 1
    assert all(received == names and options == {} for received, options in seen)
    train = pd.read_csv(tmp_path / "out" / "clients.csv").query("phase == 'train'")
    assert (train["status"] == "ok").all()


def test_step_reads_received_parameters_and_options_from_the_message(lab):
    """Unit level: the step and its options come from the message config (a strategy
    may set them), the weights it sees are the parameters sent (no batch-norm
    statistics), untouched by training."""
    cfg = load_config(TINY, ["train.step=ignored.by:clients"])
    sent = {"train-step": f"{lab}.steps:prox", "step.mu": 0.5, "lr": 0.05}
    settings = train_settings(cfg, 1, 0, sent)
    assert settings.step == f"{lab}.steps:prox" and settings.step_options == (("mu", 0.5),)
    assert train_settings(cfg, 1, 0, {}).step == ""  # not the server's train.step
    settings = training.TrainSettings(
        model="cnn", step=settings.step, step_options=settings.step_options
    )
    state = training.initial_state(settings, seed=0)
    before = {k: v.clone() for k, v in state.items()}
    generator = torch.Generator().manual_seed(1)
    batch = training.ClientData(
        torch.randn(8, 1, 28, 28, generator=generator), torch.arange(8) % 10
    )
    new_state, _ = training.train(state, batch, settings)
    received, options = sys.modules[f"{lab}.steps"].SEEN[-1]
    parameters = sorted(n for n, _ in training.build_model("cnn").named_parameters())
    assert received == parameters and set(received) < set(state)  # buffers left out
    assert options == {"mu": 0.5}
    assert all(torch.equal(state[k], before[k]) for k in state)
    assert not torch.equal(new_state["features.0.weight"], state["features.0.weight"])


def test_the_default_step_is_cross_entropy_bit_for_bit():
    settings = training.TrainSettings(model="cnn")
    state = training.initial_state(settings, seed=0)
    generator = torch.Generator().manual_seed(2)
    batch = training.ClientData(
        torch.randn(40, 1, 28, 28, generator=generator), torch.arange(40) % 10
    )
    plain, plain_metrics = training.train(state, batch, settings)
    named = training.TrainSettings(model="cnn", step="pwfl.training:cross_entropy_step")
    hooked, hooked_metrics = training.train(state, batch, named)
    assert all(torch.equal(plain[k], hooked[k]) for k in plain)
    assert plain_metrics["loss"] == hooked_metrics["loss"]


def test_your_aggregator_is_found_from_the_working_directory(lab, tmp_path):
    cfg = load_config(TINY, [*SMALL, f"strategy.aggregator={lab}.agg:mean"])
    run_experiment(cfg, tmp_path / "out", quiet=True)
    assert sorted(sys.modules[f"{lab}.agg"].CALLS) == [1, 2]  # K = 2 groups of 3 clients


def test_ray_workers_find_your_model_and_aggregator_in_the_working_directory(
    lab, tmp_path, ray_session
):
    """Client actors build your model and Ray tasks run your aggregator, in processes
    of their own: they import them from the working directory of the run."""
    cfg = load_config(
        TINY,
        [
            *SMALL,
            "data.name=synthetic",
            f"model.name={lab}.nets:make",
            f"strategy.aggregator={lab}.agg:mean",
            "strategy.executor=ray",
            "simulation.backend=ray",
        ],
    )
    run_experiment(cfg, tmp_path / "out", quiet=True)
    marks = [p.name for p in (tmp_path / "work").glob("aggregated-*")]
    assert len(marks) == 2
    assert all(int(m.split("-")[1]) != os.getpid() for m in marks)  # in Ray's workers
    weights = load_weights(tmp_path / "out" / "final_weights.npz")
    assert sorted(weights["1"]) == ["1.bias", "1.weight"]


@pytest.mark.parametrize(
    ("overrides", "key", "problem"),
    [
        (["model.name=nolab.nets:make"], "model.name", "no module named 'nolab'"),
        (["model.name={lab}.nets:missing"], "model.name", "has no attribute 'missing'"),
        (["model.name={lab}.nets:not_a_module"], "model.name", "not a torch.nn.Module"),
        (["model.name={lab}.nets:too_few_outputs"], "model.name", "not (2, 10)"),
        (["data.name={lab}.data:three", "model.name=mlp"], "data.name", "returned tuple"),
        (["data.name=nolab.data:load", "model.name=mlp"], "data.name", "no module named"),
        (["train.step={lab}.steps:missing"], "train.step", "has no attribute 'missing'"),
        (["train.step={lab}.steps:not_a_scalar"], "train.step", "not a scalar tensor"),
        (["strategy.aggregator={lab}.agg:missing"], "strategy.aggregator", "no attribute"),
    ],
)
def test_bad_dotted_paths_fail_in_one_line_before_the_run(
    lab, tmp_path, capsys, overrides, key, problem
):
    out = tmp_path / "out"
    argv = ["run", "--config", str(TINY), "--out", str(out), "--quiet"]
    for item in [*SMALL, "data.name=synthetic", "model.name=mlp", *overrides]:
        argv += ["--set", item.format(lab=lab)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert key in err and problem in err, err
    assert not out.exists()
