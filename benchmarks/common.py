"""Shared by the benchmarks: where results go, timing a run's rounds, memory of a process tree."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import psutil

from pwfl.callbacks import RoundRecord
from pwfl.config import Config
from pwfl.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench"
CONFIGS = ROOT / "experiments" / "configs"


class RoundClock:
    """A run callback that notes when the rounds started and when each ended (host clock)."""

    def __init__(self) -> None:
        self.started = 0.0
        self.ends: list[float] = []

    def on_run_start(self, total_rounds: int, done: int) -> None:
        """Note the time: the clients are known, round 1 starts now."""
        self.started = time.perf_counter()

    def on_round_end(self, record: RoundRecord) -> None:
        """Note the time."""
        self.ends.append(time.perf_counter())

    def on_run_end(self) -> None:
        """Nothing to do."""


class PeakMemory:
    """Samples the resident memory of this process and all its descendants (Ray's too).

    Summing RSS counts pages shared between processes (libraries, Ray's object
    store) once per process, so the figure is an upper bound. ``peak_by_name`` splits
    the peak sample by process name (Ray titles its workers ``ray::<class>``), to
    tell what holds it.
    """

    def __init__(self, interval_s: float = 1.0, root: int | None = None):
        self.interval_s = interval_s
        self.root = root  # the process whose tree is sampled; None: this one
        self.peak_bytes = 0
        self.peak_by_name: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        try:
            me = psutil.Process(self.root)
        except psutil.Error:
            return  # the process ended before the first sample
        own = "this process" if self.root is None else "main process"
        while not self._stop.is_set():
            by_name: dict[str, int] = {}
            try:
                tree = [me, *me.children(recursive=True)]
            except psutil.Error:
                return  # it ended
            for proc in tree:
                try:
                    name = own if proc.pid == me.pid else proc.name()
                    by_name[name] = by_name.get(name, 0) + proc.memory_info().rss
                except psutil.Error:
                    continue
            total = sum(by_name.values())
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_by_name = total, by_name
            self._stop.wait(self.interval_s)

    def holders(self, top: int = 3) -> str:
        """The processes that held most of the peak, by name: ``raylet 0.3 GiB; ...``."""
        ranked = sorted(self.peak_by_name.items(), key=lambda item: -item[1])[:top]
        return "; ".join(f"{name} {size / 2**30:.2f} GiB" for name, size in ranked)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed_run(cfg: Config, out: Path) -> dict[str, float]:
    """Run ``cfg``; return start-up time, steady-state round time and totals (host seconds).

    Start-up is from the call to the start of round 1 (Ray, client actors,
    discovery); the first round from then to its end; the mean round over all
    rounds; steady state is the mean host time of rounds 2 onwards. Also the server's
    test accuracy of the last round's average.
    """
    clock = RoundClock()
    start = time.perf_counter()
    run_experiment(cfg, out, quiet=True, callbacks=[clock])
    total = time.perf_counter() - start
    rounds = pd.read_csv(out / "rounds.csv").drop_duplicates("round")
    first_round = clock.ends[0] - clock.started
    steady = rounds["round_wall_s"].iloc[1:]
    return {
        "startup_s": clock.started - start,
        "first_round_s": first_round,
        "mean_round_s": (clock.ends[-1] - clock.started) / len(clock.ends),
        "steady_round_s": float(steady.mean()) if len(steady) else float("nan"),
        "steady_round_sim_s": float(rounds["round_sim_s"].iloc[1:].mean())
        if len(steady)
        else float("nan"),
        "total_s": total,
        "final_accuracy": float(rounds["accuracy"].iloc[-1]),
    }


def write(name: str, frame: pd.DataFrame) -> Path:
    """Write one case's table to ``results/bench/<name>.csv``."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path
