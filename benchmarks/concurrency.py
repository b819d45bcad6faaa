"""Concurrency: K weight sets trained at once (pwfl) against one after another (pwfl-sequential).

Both clocks: on the host (2 cores: the groups share them either way) and on the
simulated clock (where each client is its own device).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from common import CONFIGS, timed_run

from pwfl.config import load_config


def run(smoke: bool = False) -> pd.DataFrame:
    """One run per (K, strategy); steady-state round times and the sequential/parallel ratio."""
    rows = []
    for k in (2,) if smoke else (2, 4):
        for strategy in ("pwfl", "pwfl-sequential"):
            cfg = load_config(
                CONFIGS / ("tiny.toml" if smoke else "quick.toml"),
                [
                    f"strategy.name={strategy}",
                    f"strategy.k={k}",
                    f"strategy.num_rounds={2 if smoke else 4}",
                    "checkpoint.every=0",
                ],
            )
            with tempfile.TemporaryDirectory() as tmp:
                timing = timed_run(cfg, Path(tmp) / "run")
            rows.append(
                {
                    "k": k,
                    "strategy": strategy,
                    "host_round_s": timing["steady_round_s"],
                    "sim_round_s": timing["steady_round_sim_s"],
                    "startup_s": timing["startup_s"],
                }
            )
    frame = pd.DataFrame(rows)
    wide = frame.pivot(index="k", columns="strategy", values=["host_round_s", "sim_round_s"])
    for clock in ("host_round_s", "sim_round_s"):
        ratio = wide[clock]["pwfl"] / wide[clock]["pwfl-sequential"]
        frame.loc[frame["strategy"] == "pwfl", f"{clock}_vs_sequential"] = frame.loc[
            frame["strategy"] == "pwfl", "k"
        ].map(ratio)
    return frame
