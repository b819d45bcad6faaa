"""Model registry: the networks clients train, by name, for MNIST- and CIFAR-sized input."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pwfl.seeding import seed_for


class CNN(nn.Module):
    """Two conv blocks (conv, batch norm, ReLU, 2x2 max-pool), a 128-unit FC layer
    with dropout, and 10 outputs: the "improved CNN" of the MNIST experiments."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4  # two 2x2 pools: 28 -> 7, 32 -> 8
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 128),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W)
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """A lighter CNN (two conv+pool layers, no batch norm) for quick runs."""

    def __init__(self, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        side = image_size // 4
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 8, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * side * side, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLP(nn.Module):
    """One hidden layer of 200 units on the flattened image: cheap, for scale runs."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, hidden: int = 200):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "cnn": CNN,
    "small-cnn": SmallCNN,
    "mlp": MLP,
}
"""Networks by name (``model.name``); each is built as ``cls(in_channels, image_size)``."""


def build_model(
    name: str, in_channels: int = 1, image_size: int = 28, seed: int | None = None
) -> nn.Module:
    """Build a registered model; with ``seed`` its initial weights are reproducible."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; choose one of {', '.join(MODELS)}")
    if seed is None:
        return MODELS[name](in_channels=in_channels, image_size=image_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(seed, "model-init"))
        return MODELS[name](in_channels=in_channels, image_size=image_size)
