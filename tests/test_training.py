"""Unit tests for pwfl.training and pwfl.models: plain-PyTorch training, evaluation, registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from pwfl.config import DataConfig
from pwfl.data import load_dataset
from pwfl.models import MODELS, build_model
from pwfl.training import ClientData, TrainSettings, evaluate, initial_state, train

SETTINGS = TrainSettings(model="small-cnn", local_epochs=3, batch_size=32, lr=0.05, seed=1)


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset(DataConfig(name="mnist-5k"), 0)


@pytest.fixture(scope="module")
def small_train(mnist5k):
    """256 random training examples (the data set is sorted by label, so not the first 256)."""
    train_set, _ = mnist5k
    idx = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0))[:256]
    data = ClientData(x=train_set.x[idx], y=train_set.y[idx])
    assert len(torch.unique(data.y)) == 10
    return data


@pytest.fixture(scope="module")
def trained(small_train):
    state = initial_state(SETTINGS, seed=0)
    new_state, metrics = train(state, small_train, SETTINGS)
    return state, new_state, metrics


def _states_equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- train


def test_training_lowers_the_loss(trained):
    _, _, metrics = trained
    assert metrics["loss"] < metrics["first_loss"]
    assert metrics["loss"] < 0.9 * metrics["first_loss"]


def test_training_metrics(trained):
    _, _, metrics = trained
    assert set(metrics) == {
        "loss",
        "first_loss",
        "num_examples",
        "examples_run",
        "steps",
        "train_measured_s",
    }
    assert metrics["steps"] == SETTINGS.local_epochs * 256 / SETTINGS.batch_size
    assert metrics["examples_run"] == SETTINGS.local_epochs * 256.0
    assert metrics["num_examples"] == 256.0  # each example counts once in the weight
    assert metrics["train_measured_s"] > 0.0


def test_a_fraction_of_an_epoch_runs_whole_batches_and_weighs_what_it_saw():
    data = ClientData(torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,)))
    settings = TrainSettings(model="small-cnn", batch_size=32, local_epochs=0.2, seed=1)
    _, metrics = train(initial_state(settings, seed=0), data, settings)
    # 0.2 of a 4-batch epoch: ceil(0.8) = 1 batch of 32 examples.
    assert metrics["steps"] == 1 and metrics["examples_run"] == 32
    assert metrics["num_examples"] == 32


def test_float_noise_in_the_epochs_buys_no_extra_batch():
    from pwfl.training import step_budget

    # Load balancing's ratios give 1 + 2.2e-16 for a client at the median; 13 batches.
    assert step_budget(1.0000000000000002, 13) == 13
    assert step_budget(1.0000000000000009, 13) == 13
    assert step_budget(1.01, 13) == 14
    assert step_budget(0.2, 13) == 3 and step_budget(1e-6, 13) == 1


def test_flops_per_example_counts_forward_and_backward_of_convolutions_and_products():
    from pwfl.training import flops_per_example

    mlp = TrainSettings(model="mlp", batch_size=8)
    # mlp: 784 -> 200 -> 10. Forward: 2 x (784 x 200 + 200 x 10) FLOPs per example;
    # backward: twice that for the weight and input gradients, less the first
    # layer's input gradient, which nothing needs.
    forward = 2 * (784 * 200 + 200 * 10)
    assert flops_per_example(mlp) == pytest.approx(3 * forward - 2 * 784 * 200)
    assert flops_per_example(TrainSettings(model="cnn")) > 10 * flops_per_example(mlp)


def test_on_a_cuda_device_training_time_is_wall_time_between_synchronisations(monkeypatch):
    """thread_time() cannot see work a GPU does asynchronously: the timer must
    synchronise the device and read the wall clock (a stand-in for the device here)."""
    import pwfl.training as training_module

    synced: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    ticks = iter([10.0, 12.5])
    monkeypatch.setattr(training_module.time, "perf_counter", lambda: next(ticks))
    timer = training_module.device_timer("cuda:0")
    assert timer() == 10.0 and timer() == 12.5
    assert synced == ["cuda:0", "cuda:0"]
    assert training_module.device_timer("cpu") is training_module.time.thread_time


def test_training_improves_accuracy(trained, mnist5k):
    state, new_state, _ = trained
    _, test = mnist5k
    before = evaluate(state, test, SETTINGS)
    after = evaluate(new_state, test, SETTINGS)
    assert after["accuracy"] > before["accuracy"] + 0.3
    assert after["accuracy"] > 0.5
    assert after["loss"] < before["loss"]


def test_training_does_not_modify_the_input_state(trained):
    state, new_state, _ = trained
    assert _states_equal(state, initial_state(SETTINGS, seed=0))
    assert not _states_equal(state, new_state)


def test_same_seed_gives_bitwise_identical_states(small_train):
    state = initial_state(SETTINGS, seed=0)
    settings = TrainSettings(model="small-cnn", local_epochs=1, batch_size=32, lr=0.05, seed=7)
    a, metrics_a = train(state, small_train, settings)
    b, metrics_b = train(state, small_train, settings)
    assert _states_equal(a, b)
    assert metrics_a["loss"] == metrics_b["loss"]


def test_different_seed_gives_different_states(small_train):
    state = initial_state(SETTINGS, seed=0)
    a, _ = train(state, small_train, TrainSettings(model="small-cnn", local_epochs=1, seed=7))
    b, _ = train(state, small_train, TrainSettings(model="small-cnn", local_epochs=1, seed=8))
    assert a.keys() == b.keys()
    assert not _states_equal(a, b)


def test_training_is_independent_of_global_rng(small_train):
    settings = TrainSettings(model="mlp", local_epochs=1, seed=3)
    state = initial_state(settings, 0)
    torch.manual_seed(1)
    a, _ = train(state, small_train, settings)
    torch.manual_seed(2)
    b, _ = train(state, small_train, settings)
    assert _states_equal(a, b)


def test_cnn_batch_norm_counter_counts_steps(small_train):
    # 2 epochs of ceil(256 / 100) = 3 batches: num_batches_tracked goes 0 -> 6.
    settings = TrainSettings(model="cnn", local_epochs=2, batch_size=100, lr=0.02, seed=0)
    state = initial_state(settings, 0)
    assert int(state["features.1.num_batches_tracked"]) == 0
    new_state, _ = train(state, small_train, settings)
    assert int(new_state["features.1.num_batches_tracked"]) == 6
    assert int(new_state["features.5.num_batches_tracked"]) == 6
    assert new_state["features.1.num_batches_tracked"].dtype == torch.int64


def test_train_on_empty_data_raises():
    empty = ClientData(x=torch.zeros(0, 1, 28, 28), y=torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        train(initial_state(SETTINGS, 0), empty, SETTINGS)


def test_train_with_augmentation_runs_and_is_seeded(small_train):
    data = ClientData(x=small_train.x[:64], y=small_train.y[:64])
    settings = TrainSettings(model="mlp", local_epochs=1, augment=True, seed=5)
    state = initial_state(settings, 0)
    a, _ = train(state, data, settings)
    b, _ = train(state, data, settings)
    c, _ = train(state, data, TrainSettings(model="mlp", local_epochs=1, augment=False, seed=5))
    assert _states_equal(a, b)
    assert not _states_equal(a, c)


# ---------------------------------------------------------------- evaluate


def test_evaluate_matches_a_hand_computed_accuracy(trained, mnist5k):
    _, new_state, _ = trained
    _, test = mnist5k
    result = evaluate(new_state, test, SETTINGS)
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["num_examples"] == 1000.0

    model = build_model("small-cnn")
    model.load_state_dict(new_state)
    model.eval()
    with torch.no_grad():
        logits = model(test.x)
    expected_acc = int((logits.argmax(dim=1) == test.y).sum()) / len(test)
    expected_loss = float(torch.nn.functional.cross_entropy(logits, test.y))
    assert result["accuracy"] == pytest.approx(expected_acc, abs=1e-9)
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-4)


def test_evaluate_does_not_depend_on_batch_size(trained, mnist5k):
    _, new_state, _ = trained
    _, test = mnist5k
    part = ClientData(x=test.x[:300], y=test.y[:300])
    big = evaluate(new_state, part, SETTINGS, batch_size=512)
    small = evaluate(new_state, part, SETTINGS, batch_size=7)
    assert big["accuracy"] == small["accuracy"]
    assert big["loss"] == pytest.approx(small["loss"], rel=1e-4)


def test_evaluate_empty_data():
    empty = ClientData(x=torch.zeros(0, 1, 28, 28), y=torch.zeros(0, dtype=torch.int64))
    assert evaluate(initial_state(SETTINGS, 0), empty, SETTINGS) == {
        "loss": 0.0,
        "accuracy": 0.0,
        "num_examples": 0.0,
    }


# ---------------------------------------------------------------- models and initial state


@pytest.mark.parametrize("name", ["cnn", "small-cnn", "mlp", "logreg"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_models_forward_shape(name, shape):
    model = build_model(name, input_shape=shape, seed=0)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(5, *shape))
    assert tuple(out.shape) == (5, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["mlp", "logreg"])
def test_flat_models_take_any_input_shape_and_class_count(name):
    model = build_model(name, input_shape=(60,), num_classes=7, seed=0)
    assert tuple(model(torch.randn(4, 60)).shape) == (4, 7)
    first = next(iter(model.state_dict().values()))
    assert first.shape[-1] == 60


def test_logreg_is_one_linear_layer():
    params = dict(build_model("logreg", input_shape=(60,), seed=0).named_parameters())
    assert {tuple(p.shape) for p in params.values()} == {(10, 60), (10,)}


@pytest.mark.parametrize("name", ["cnn", "small-cnn"])
def test_convolutional_models_reject_flat_input(name):
    with pytest.raises(ValueError, match="needs square images"):
        build_model(name, input_shape=(60,))


def test_registry_names():
    assert set(MODELS) == {"cnn", "small-cnn", "mlp", "logreg", "cnn1d"}
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet")


@pytest.mark.parametrize("name", ["cnn", "small-cnn", "mlp", "logreg"])
def test_build_model_is_seeded(name):
    a = build_model(name, seed=4).state_dict()
    b = build_model(name, seed=4).state_dict()
    c = build_model(name, seed=5).state_dict()
    assert _states_equal(a, b)
    assert not _states_equal(a, c)


def test_seeded_build_leaves_global_rng_untouched():
    torch.manual_seed(321)
    expected = torch.rand(3)
    torch.manual_seed(321)
    build_model("cnn", seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["cnn", "small-cnn", "mlp"])
def test_initial_state_is_seeded(name):
    settings = TrainSettings(model=name, input_shape=(3, 32, 32))
    a = initial_state(settings, seed=0)
    b = initial_state(settings, seed=0)
    c = initial_state(settings, seed=1)
    assert _states_equal(a, b)
    assert not _states_equal(a, c)
    # A detached copy: changing it does not change a fresh one.
    first = next(iter(a))
    a[first].add_(1)
    assert not torch.equal(a[first], initial_state(settings, seed=0)[first])


# ---------------------------------------------------------------- no Flower import


def _imports_flwr(modules: str) -> bool:
    code = (
        f"import sys, {modules}; "
        "print(any(m == 'flwr' or m.startswith('flwr.') for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip().splitlines()[-1] == "True"


def test_core_modules_do_not_import_flower():
    modules = "pwfl.training, pwfl.models, pwfl.data, pwfl.aggregation, pwfl.partition, pwfl.clock"
    assert _imports_flwr(modules) is False


def test_fractional_epochs_run_that_share_of_the_batches(mnist5k):
    train_data, _ = mnist5k
    data = ClientData(train_data.x[:320], train_data.y[:320])
    state = initial_state(SETTINGS, seed=0)
    half = TrainSettings(model=SETTINGS.model, local_epochs=0.5, batch_size=32, seed=1)
    _, metrics = train(state, data, half)
    assert metrics["steps"] == 5  # 10 batches per epoch
    two_and_half = TrainSettings(model=SETTINGS.model, local_epochs=2.5, batch_size=32, seed=1)
    _, metrics = train(state, data, two_and_half)
    assert metrics["steps"] == 25
