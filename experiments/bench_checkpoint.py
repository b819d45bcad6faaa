"""How long a server checkpoint takes to write and read, and how big it is.

Usage::

    python experiments/bench_checkpoint.py            # the quick setting: CNN, K=2, 10 rounds

The checkpoint holds K CNN weight sets and the records of ``--rounds`` rounds
(rows shaped like those of experiments/configs/quick.toml).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pwfl import training
from pwfl.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from pwfl.config import load_config


def _records(rounds: int, k: int, clients: int) -> dict[str, list[dict]]:
    row = {"strategy": "pwfl", "seed": 0, "accuracy": 0.9, "loss": 0.3, "sim_time_s": 1.0}
    return {
        "rounds": [
            {**row, "round": r, "weight_set": str(w)} for r in range(rounds) for w in range(k)
        ],
        "clients": [
            {**row, "round": r, "client": c, "status": "ok", "rtt_s": 1.0}
            for r in range(rounds)
            for c in range(clients)
        ],
        "server": [],
    }


def main() -> None:
    """Print write and read times (median of ``--repeat``) and the file size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="experiments/configs/quick.toml")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cfg = load_config(args.config)
    from pwfl.apps.settings import train_settings

    state = training.initial_state(train_settings(cfg), cfg.seed)
    arrays = {
        f"weights/{w}/{name}": t.numpy() for w in range(cfg.strategy.k) for name, t in state.items()
    }
    ckpt = Checkpoint(
        round=args.rounds,
        num_rounds=cfg.strategy.num_rounds,
        label="pwfl",
        config_toml=cfg.to_toml(),
        arrays=arrays,
        records=_records(args.rounds, cfg.strategy.k, cfg.data.num_clients + 2),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.npz"
        writes, reads = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            save_checkpoint(path, ckpt)
            writes.append(time.perf_counter() - start)
            start = time.perf_counter()
            load_checkpoint(path)
            reads.append(time.perf_counter() - start)
        size = path.stat().st_size
    params = sum(a.size for a in arrays.values())
    print(f"config {args.config}: K={cfg.strategy.k}, {params:,} values, {args.rounds} rounds")
    print(f"checkpoint size  {size / 1e6:.2f} MB")
    print(f"write (median)   {statistics.median(writes) * 1000:.1f} ms")
    print(f"read  (median)   {statistics.median(reads) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
