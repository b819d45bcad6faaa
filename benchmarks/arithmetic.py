"""Arithmetic: host time of portable against native kernels, side by side.

The mode is chosen before PyTorch loads, so each measurement is its own process; the
two modes alternate, so both see the same load. Per process: one client's local
training on the quick setting (400 mnist-5k images, 13 batches of 32, the CNN), the
server's test of a weight set (1,000 images) and a whole ``pwfl run`` of the quick
setting (3 rounds, inline backend). The simulated clock does not change with the mode
(it prices FLOPs, not this host's time).

Usage::

    .venv/bin/python benchmarks/bench.py --only arithmetic
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run(smoke: bool = False) -> pd.DataFrame:
    """Alternate native and portable worker processes; one row per process, and the
    portable/native ratio of each column's median."""
    repeats = 1 if smoke else 3
    rows = []
    for repeat in range(repeats):
        for mode in ("native", "portable"):
            env = {**os.environ, "PWFL_ARITHMETIC": mode, "PYTHONPATH": str(ROOT)}
            done = subprocess.run(
                [sys.executable, "-W", "ignore", __file__, "--worker", str(int(smoke))],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append({"mode": mode, "repeat": repeat, **json.loads(done.stdout)})
    frame = pd.DataFrame(rows)
    medians = frame.groupby("mode")[["train_s", "test_s", "run_s"]].median()
    ratio = (medians.loc["portable"] / medians.loc["native"]).to_dict()
    frame = pd.concat(
        [frame, pd.DataFrame([{"mode": "portable / native (medians)", "repeat": -1, **ratio}])]
    )
    return frame


def _worker(smoke: bool) -> dict[str, object]:
    import pwfl  # noqa: F401  (first: the pins precede PyTorch)
    from pwfl import arithmetic, data, training
    from pwfl.apps.settings import train_settings
    from pwfl.config import load_config
    from pwfl.runner import run_experiment

    mode = arithmetic.default_mode()
    config = ROOT / "experiments" / "configs" / ("tiny.toml" if smoke else "quick.toml")
    cfg = load_config(
        config,
        [
            f"reproducibility.arithmetic={mode}",
            "simulation.backend=inline",
            "strategy.num_rounds=1" if smoke else "strategy.num_rounds=3",
            "checkpoint.every=0",
        ],
    )
    arithmetic.ensure(mode)
    settings = train_settings(cfg)
    data.prepare(cfg.data, cfg.seed)
    client = data.client_data(cfg.data, cfg.seed, 0)
    test = data.server_test_data(cfg.data, cfg.seed)
    state = training.initial_state(settings, cfg.seed)
    training.train(state, client, settings)  # warm-up: first-call allocations
    start = time.perf_counter()
    trained, _ = training.train(state, client, settings)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    training.evaluate(trained, test, settings)
    test_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        run_experiment(cfg, Path(tmp) / "run", quiet=True)
        run_s = time.perf_counter() - start
    capability = arithmetic.provenance(mode)["cpu_capability"]
    return {"capability": capability, "train_s": train_s, "test_s": test_s, "run_s": run_s}


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    print(json.dumps(_worker(bool(int(sys.argv[2])))))
