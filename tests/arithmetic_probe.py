"""A tiny CNN training and evaluation whose bits ``tests/test_arithmetic.py`` compares
across processes: prints the arithmetic the process ran and a digest of the result.

Run as ``python tests/arithmetic_probe.py`` with ``PWFL_ARITHMETIC`` set."""

from __future__ import annotations

import hashlib

import pwfl  # noqa: F401  (first: the kernel pins must precede PyTorch)
from pwfl import arithmetic, training


def main() -> None:
    mode = arithmetic.default_mode()
    arithmetic.ensure(mode)
    import torch

    generator = torch.Generator().manual_seed(7)
    x = torch.randn(96, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (96,), generator=generator)
    data = training.ClientData(x, y)
    settings = training.TrainSettings(model="cnn", local_epochs=2, batch_size=32, lr=0.05, seed=3)
    state, _ = training.train(training.initial_state(settings, 0), data, settings)
    metrics = training.evaluate(state, data, settings)
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(state[name].numpy().tobytes())
    digest.update(repr(metrics["loss"]).encode())
    capability = torch.backends.cpu.get_cpu_capability()
    print(mode, capability, digest.hexdigest()[:16])


if __name__ == "__main__":
    main()
