"""How long a server checkpoint takes to write and read, and how big it is.

Usage::

    python experiments/bench_checkpoint.py            # the quick setting: CNN, K=2, 10 rounds

The checkpoint holds K CNN weight sets and, for each record file of ``--rounds``
rounds, how far it is written (its rows are appended to the CSV files, not copied
into the checkpoint, so its size does not grow with the rounds).
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
from pwfl.records import FileMark


def _marks(rounds: int, k: int, clients: int) -> dict[str, FileMark]:
    # A checkpoint holds no rows, only how far each record file is written.
    rows = {"rounds.csv": rounds * k, "clients.csv": rounds * clients, "server.csv": rounds * k}
    return {name: FileMark(n, 300 * (n + 1), "0" * 64) for name, n in rows.items()}


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
        files=_marks(args.rounds, cfg.strategy.k, cfg.data.num_clients + 2),
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
