"""Communication: bytes and time per round with and without 8-bit updates (pwfl, K=2)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from common import CONFIGS, timed_run

from pwfl.config import load_config


def run(smoke: bool = False) -> pd.DataFrame:
    """One run per compression mode."""
    rows = []
    for mode in ("none", "int8"):
        cfg = load_config(
            CONFIGS / ("tiny.toml" if smoke else "quick.toml"),
            [f"comm.compression={mode}", f"strategy.num_rounds={2 if smoke else 4}"],
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            timing = timed_run(cfg, out)
            rounds = pd.read_csv(out / "rounds.csv")
        per_round = rounds.groupby("round")[["bytes_up", "bytes_down"]].sum()
        rows.append(
            {
                "compression": mode,
                "mb_up_per_round": per_round["bytes_up"].mean() / 1e6,
                "mb_down_per_round": per_round["bytes_down"].mean() / 1e6,
                "host_round_s": timing["steady_round_s"],
                "sim_round_s": timing["steady_round_sim_s"],
                "final_accuracy": float(rounds.groupby("round")["accuracy"].mean().iloc[-1]),
            }
        )
    frame = pd.DataFrame(rows)
    frame["up_vs_none"] = frame["mb_up_per_round"] / frame["mb_up_per_round"].iloc[0]
    return frame
