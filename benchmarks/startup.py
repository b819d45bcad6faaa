"""Start-up and teardown: the host seconds a one-round run spends outside its round.

Each run is a fresh interpreter, as ``pwfl run`` is, so that importing PyTorch, Flower
and Ray and the interpreter's exit are counted: this script starts itself with
``--child``, which notes the host clock before any import, runs the experiment and
reports when its round started and ended. The table gives, per backend, the medians
of ``REPEATS`` runs of

- ``total_s``: from starting the process to its exit;
- ``round_s``: the round's own host seconds (``round_wall_s`` of ``rounds.csv``);
- ``outside_s``: ``total_s - round_s``, what start-up and teardown cost;
- ``startup_s``: from starting the process to the start of round 1;
- ``teardown_s``: from the end of the last round to the process's exit.

Usage::

    .venv/bin/python benchmarks/bench.py --only startup
"""

from __future__ import annotations

import time

STARTED = time.time()  # before the imports below: they are start-up too

import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "experiments" / "configs"
REPEATS = 3
"""Runs per backend; the table holds their medians (another process's load moves a
single run by seconds on a small machine)."""

SETTINGS = {
    # quick.toml aggregates with the Ray executor: on the Ray backend in tasks of the
    # simulation's session, on the inline backend in threads (pwfl.runner).
    "quick": ("quick.toml", ("inline", "ray")),
}
SMOKE = {"tiny": ("tiny.toml", ("inline",))}


def _child(config: str, backend: str, out: str) -> None:
    """Run one round of ``config`` on ``backend`` into ``out``; print the host clock at
    the round's start and end as JSON (the parent notes the exit)."""
    sys.path.insert(0, str(HERE))
    from common import RoundClock

    from pwfl.config import load_config
    from pwfl.runner import run_experiment

    cfg = load_config(config, ["strategy.num_rounds=1", f"simulation.backend={backend}"])
    clock = RoundClock()
    run_experiment(cfg, out, quiet=True, callbacks=[clock])
    # RoundClock keeps perf_counter readings: turn them into the wall clock.
    offset = time.time() - time.perf_counter()
    print(json.dumps({"round_start": clock.started + offset, "round_end": clock.ends[-1] + offset}))


def one_run(config: Path, backend: str) -> dict[str, float]:
    """One fresh process running one round of ``config`` on ``backend``; host seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        launched = time.time()
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(config), backend, str(out)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        exited = time.time()
        if done.returncode != 0:
            raise RuntimeError(f"the {backend} run failed: {done.stderr.strip()[-2000:]}")
        clock = json.loads(done.stdout.strip().splitlines()[-1])
        rounds = pd.read_csv(out / "rounds.csv").drop_duplicates("round")
    total = exited - launched
    round_s = float(rounds["round_wall_s"].sum())
    return {
        "total_s": total,
        "round_s": round_s,
        "outside_s": total - round_s,
        "startup_s": clock["round_start"] - launched,
        "teardown_s": exited - clock["round_end"],
    }


def run(smoke: bool = False) -> pd.DataFrame:
    """Per setting and backend, the medians of ``REPEATS`` one-round runs (one in smoke
    mode: the tiny config on the inline backend)."""
    settings = SMOKE if smoke else SETTINGS
    repeats = 1 if smoke else REPEATS
    rows = []
    for label, (name, backends) in settings.items():
        for backend in backends:
            runs = [one_run(CONFIGS / name, backend) for _ in range(repeats)]
            medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            rows.append({"setting": label, "backend": backend, "runs": repeats, **medians})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(*sys.argv[2:5])
    else:
        pd.set_option("display.float_format", lambda v: f"{v:.2f}")
        print(run(smoke="--smoke" in sys.argv).to_string(index=False))
