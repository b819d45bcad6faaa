"""What one model can learn of Synthetic(alpha, beta): a centralised reference.

Multinomial logistic regression (pwfl's ``logreg``) trained on the union of the
paper's 30 clients' examples with SGD (lr 0.01, batch 10, as the paper), tested
on fresh examples of the same 30 clients (``pwfl.synthetic.test_set``), and on
fresh examples of 100 other clients of a large population. Prints one row per
variant::

    .venv/bin/python experiments/synthetic_reference.py
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch
from torch import nn

from pwfl import synthetic

VARIANTS = {
    "synthetic(0, 0)": (0.0, 0.0, False),
    "synthetic(0.5, 0.5)": (0.5, 0.5, False),
    "synthetic(1, 1)": (1.0, 1.0, False),
    "synthetic-iid": (0.0, 0.0, True),
}
CLIENTS = 30
"""The paper's number of clients."""
OTHERS = range(1_000_000, 1_000_100)
"""Clients of a large population that the model never saw."""


def _union(alpha: float, beta: float, seed: int, iid: bool) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [synthetic.client_examples(alpha, beta, seed, c, iid=iid) for c in range(CLIENTS)]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(x), torch.from_numpy(y)


def _accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1) == torch.from_numpy(y)).float().mean())


def reference(alpha: float, beta: float, iid: bool, seed: int, epochs: int) -> dict[str, float]:
    """Train on the 30 clients' union; accuracy on their fresh examples and on others'."""
    torch.manual_seed(seed)
    x, y = _union(alpha, beta, seed, iid)
    model = nn.Linear(synthetic.FEATURES, synthetic.CLASSES)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(10):
            optimiser.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimiser.step()
    seen = synthetic.test_set(alpha, beta, seed, CLIENTS, iid)
    others = [synthetic.client_examples(alpha, beta, seed, c, count=50, iid=iid) for c in OTHERS]
    unseen = (np.concatenate([o[0] for o in others]), np.concatenate([o[1] for o in others]))
    return {
        "examples": len(y),
        "test_30_clients": _accuracy(model, *seen),
        "test_other_clients": _accuracy(model, *unseen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    rows = [
        {"data": name, **reference(a, b, iid, args.seed, args.epochs)}
        for name, (a, b, iid) in VARIANTS.items()
    ]
    print(pd.DataFrame(rows).to_string(index=False, float_format="{:.3f}".format))


if __name__ == "__main__":
    main()
