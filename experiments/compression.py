"""Bytes and accuracy with and without 8-bit updates, side by side in one run.

Usage::

    .venv/bin/python experiments/compression.py [--config experiments/configs/quick.toml]

Runs ``pwfl`` once per compression mode on the same seed and clients, then writes
``results/compression/summary.csv`` and prints, per mode, the mean bytes clients
sent per round, its ratio to uncompressed updates, and the final accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from pwfl.config import load_config
from pwfl.records import atomic_write_text
from pwfl.runner import run_experiment

MODES = ("none", "int8", "int8-delta")


def main() -> None:
    """Run every compression mode and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/quick.toml")
    parser.add_argument("--out", default="results/compression")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for mode in MODES:
        cfg = load_config(args.config, [f"comm.compression={mode}"])
        summary = run_experiment(cfg, out / mode, quiet=True, label=f"pwfl {mode}")
        rounds = pd.read_csv(out / mode / "rounds.csv")
        sets = rounds[rounds["weight_set"].astype(str) != "merged"]
        per_round = sets.groupby("round")[["bytes_up", "bytes_down"]].sum()
        rows.append(
            {
                "compression": mode,
                "bytes_up_per_round": per_round["bytes_up"].mean(),
                "bytes_down_per_round": per_round["bytes_down"].mean(),
                "final_accuracy": summary["all"]["final_accuracy"],
                "mean_round_sim_s": summary["all"]["mean_round_sim_s"],
            }
        )
    table = pd.DataFrame(rows)
    table["bytes_up_ratio"] = table["bytes_up_per_round"] / table["bytes_up_per_round"].iloc[0]
    atomic_write_text(out / "summary.csv", table.to_csv(index=False))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
