"""Model registry: the networks clients train, by name, for a data set's input shape.

Every model is built from ``input_shape`` (an example's shape without the batch
dimension: ``(1, 28, 28)`` for MNIST, ``(3, 32, 32)`` for CIFAR-10, ``(60,)`` for
the synthetic data set, ``(1, 40)`` for MNIST-1D) and ``num_classes``. ``cnn`` and
``small-cnn`` need an image, ``(channels, side, side)``; ``cnn1d`` a signal,
``(channels, length)``; ``mlp`` and ``logreg`` take any shape. A dotted
path (``model.name = "mylab.nets:make"``) names your own function of the same
signature, ``(input_shape, num_classes) -> torch.nn.Module`` (:mod:`pwfl.extensions`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from pwfl.extensions import is_dotted, load_callable
from pwfl.seeding import seed_for

Shape = tuple[int, ...]


def _image(name: str, input_shape: Shape) -> tuple[int, int]:
    if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
        raise ValueError(
            f"model '{name}' needs square images (channels, side, side), got {input_shape}"
        )
    return input_shape[0], input_shape[1]


class CNN(nn.Module):
    """Two conv blocks (conv, batch norm, ReLU, 2x2 max-pool), a 128-unit FC layer
    with dropout, and one output per class: the "improved CNN" of the MNIST experiments."""

    def __init__(
        self, input_shape: Shape = (1, 28, 28), num_classes: int = 10, dropout: float = 0.5
    ):
        super().__init__()
        channels, side = _image("cnn", input_shape)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        reduced = side // 4  # two 2x2 pools: 28 -> 7, 32 -> 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * reduced * reduced, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """A lighter CNN (two conv+pool layers, no batch norm) for quick runs."""

    def __init__(self, input_shape: Shape = (1, 28, 28), num_classes: int = 10):
        super().__init__()
        channels, side = _image("small-cnn", input_shape)
        reduced = side // 4
        self.net = nn.Sequential(
            nn.Conv2d(channels, 8, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * reduced * reduced, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN1D(nn.Module):
    """Two 1D conv blocks (conv, ReLU, 2x pool) and a linear layer, for signals such as
    MNIST-1D: the small convolutional baseline of Greydanus ("Scaling down deep
    learning with MNIST-1D", 2020, section 3), which beats an MLP there."""

    def __init__(self, input_shape: Shape = (1, 40), num_classes: int = 10):
        super().__init__()
        if len(input_shape) != 2 or input_shape[1] < 4:
            raise ValueError(
                f"model 'cnn1d' needs signals (channels, length >= 4), got {input_shape}"
            )
        channels, length = input_shape
        self.net = nn.Sequential(
            nn.Conv1d(channels, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Flatten(),
            nn.Linear(32 * (length // 4), num_classes),  # two 2x pools: 40 -> 10
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, L)
        return self.net(x)


class MLP(nn.Module):
    """One hidden layer of 200 units on the flattened input: cheap, for scale runs."""

    def __init__(self, input_shape: Shape = (1, 28, 28), num_classes: int = 10, hidden: int = 200):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, *input_shape)
        return self.net(x)


class LogisticRegression(nn.Module):
    """Multinomial logistic regression on the flattened input: the model Li et al.
    ("Federated Optimization in Heterogeneous Networks", MLSys 2020) train on their
    synthetic data."""

    def __init__(self, input_shape: Shape = (60,), num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": CNN,
    "small-cnn": SmallCNN,
    "mlp": MLP,
    "logreg": LogisticRegression,
    "cnn1d": CNN1D,
}
"""Models by name (``model.name``): ``(input_shape, num_classes) -> nn.Module``; keyed by
exactly ``pwfl.registry.MODELS``, the names the config accepts."""


def build_model(
    name: str,
    input_shape: Shape = (1, 28, 28),
    num_classes: int = 10,
    seed: int | None = None,
) -> nn.Module:
    """Build a registered model, or the one your function at a dotted path returns;
    with ``seed`` its initial weights are reproducible.

    Raises
    ------
    ValueError
        For an unknown name, a dotted path that does not load, or a function that
        does not return a ``torch.nn.Module`` with parameters.
    """
    if is_dotted(name):
        make = load_callable(name, "model")
    elif name in MODELS:
        make = MODELS[name]
    else:
        raise ValueError(
            f"unknown model '{name}'; choose one of {', '.join(MODELS)} or give "
            "'package.module:function'"
        )
    if seed is None:
        return _built(name, make, tuple(input_shape), num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, "model-init"))
        return _built(name, make, tuple(input_shape), num_classes)


def _built(name: str, make: Callable[..., nn.Module], shape: Shape, classes: int) -> nn.Module:
    if name in MODELS:
        return make(input_shape=shape, num_classes=classes)
    model = make(shape, classes)  # your function: (input_shape, num_classes), by position
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model '{name}' returned {type(model).__name__}, not a torch.nn.Module; "
            "return the network built for (input_shape, num_classes)"
        )
    if not any(True for _ in model.parameters()):
        raise ValueError(f"model '{name}' returned a module without parameters to train")
    return model
