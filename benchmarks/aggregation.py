"""Aggregation: K groups of C client updates of a P-value model, on each executor.

The updates are in this process's memory, as replies are in the ServerApp's, so
the ``ray`` figures include what Ray must do to hand them to its workers
(serialising them into the object store); ``threads`` shares them, ``serial``
runs the groups one after another.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pandas as pd

from pwfl.aggregation import make_executor, weighted_mean
from pwfl.config import Config
from pwfl.runner import start_ray

EXECUTORS = ("serial", "threads", "ray")
# Above this many bytes of updates in memory at once a case is skipped (24 GiB machine).
MEMORY_CAP_BYTES = 8.5e9
# Ray puts a second copy of every update into its object store (and spills what does
# not fit to disk); above this many bytes of updates its figure is not taken: an
# 8.4 GB case ran the node into Ray's out-of-memory killer here.
RAY_CAP_BYTES = 4.5e9
CNN_VALUES = 422_028  # the quick setting's CNN (experiments/bench_checkpoint.py: 844,056 / 2)


def _updates(k: int, c: int, p: int, seed: int) -> list[list[tuple[dict, float]]]:
    """K groups of C distinct updates, each four float32 tensors holding P values."""
    rng = np.random.default_rng(seed)
    sizes = [p // 2, p // 4, p // 8, p - p // 2 - p // 4 - p // 8]
    groups = []
    for _ in range(k):
        base = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
        groups.append(
            [
                ({f"t{i}": b + np.float32(j) for i, b in enumerate(base)}, float(10 + j))
                for j in range(c)
            ]
        )
    return groups


def _time_once(executor, groups) -> float:
    start = time.perf_counter()
    handles = [executor.submit(weighted_mean, updates) for updates in groups]
    for handle in handles:
        handle.result()
    return time.perf_counter() - start


def run(smoke: bool = False) -> pd.DataFrame:
    """Median seconds per executor for each (P, C) case with K = 4; speed-ups against serial."""
    start_ray(Config())
    k = 2 if smoke else 4
    values = (10_000,) if smoke else (CNN_VALUES, 5_000_000, 25_000_000)
    clients = (2,) if smoke else (10, 20, 50, 100)
    repeats = 1 if smoke else 3
    executors = {name: make_executor(name, workers=k) for name in EXECUTORS}
    rows = []
    for p in values:
        for c in clients:
            if k * c * p * 4 > MEMORY_CAP_BYTES:
                continue
            groups = _updates(k, c, p, seed=p + c)
            row = {"k": k, "clients_per_group": c, "values": p, "update_mb": p * 4 / 1e6}
            for name, executor in executors.items():
                if name == "ray" and k * c * p * 4 > RAY_CAP_BYTES:
                    row[f"{name}_s"] = float("nan")
                    continue
                _time_once(executor, [group[:1] for group in groups])  # workers warm
                times = [_time_once(executor, groups) for _ in range(repeats)]
                row[f"{name}_s"] = statistics.median(times)
            for name in ("threads", "ray"):
                row[f"{name}_speedup"] = row["serial_s"] / row[f"{name}_s"]
            rows.append(row)
            del groups
    for executor in executors.values():
        executor.shutdown()
    return pd.DataFrame(rows)
