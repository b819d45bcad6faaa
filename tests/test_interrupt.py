"""One Ctrl-C stops a run within seconds, leaves no process behind, and the run resumes
to the numbers of an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from pwfl.callbacks import Callback
from pwfl.checkpoint import CHECKPOINT_FILE, load_checkpoint
from pwfl.config import load_config
from pwfl.errors import Interrupted
from pwfl.runner import run_experiment

from .conftest import CONFIGS, ROOT

TINY = CONFIGS / "tiny.toml"
ROUNDS = 3


def repeated(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column but those measured on the host."""
    return frame.drop(columns=[c for c in frame if c.endswith(("_wall_s", "_measured_s"))])


def _group(pgid: int) -> list[str]:
    """The processes still in process group ``pgid`` (the run and all it started)."""
    found = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return found.stdout.split()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The rounds of the same run, left alone (inline: the backends give the same numbers)."""
    out = tmp_path_factory.mktemp("full")
    run_experiment(load_config(TINY, [f"strategy.num_rounds={ROUNDS}"]), out, quiet=True)
    return pd.read_csv(out / "rounds.csv")


@pytest.mark.parametrize(
    ("command", "backend"),
    [
        ("run", "inline"),
        # A minute on 2 cores (a Ray session, stopped and started again); the engine's
        # stop is the same code on both backends, and the inline cases run in CI.
        pytest.param("run", "ray", marks=pytest.mark.slow),
        ("compare", "inline"),
    ],
)
def test_one_ctrl_c_stops_the_run_and_it_resumes_exactly(command, backend, tmp_path, uninterrupted):
    folder = tmp_path / "out"
    # A comparison of one strategy: its run folder is the one stopped.
    out = folder / "pwfl-seed0" if command == "compare" else folder
    args = [command, "--config", str(TINY), "--out", str(folder), "--quiet"]
    args += ["--set", f"strategy.num_rounds={ROUNDS}", "--set", f"simulation.backend={backend}"]
    args += ["--strategies", "pwfl"] if command == "compare" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "pwfl", *args],
        cwd=ROOT,
        start_new_session=True,  # its own process group, as a terminal's job is
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "rounds.csv").is_file():
            assert proc.poll() is None, (
                f"the run ended before its first round: {proc.stderr.read()}"
            )
            assert time.monotonic() < deadline, "the run did not record a round in time"
            time.sleep(0.05)
        # Ctrl-C in a terminal signals the whole foreground group: Ray's processes too.
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == 130, err
    assert took < 10, f"the run took {took:.1f} s to stop"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pwfl: interrupted:"), err
    again = "the same pwfl compare command" if command == "compare" else f"pwfl resume {out}"
    assert again in lines[0]

    # Nothing it started outlives it (Ray's workers die a few seconds after the raylet).
    gone_by = time.monotonic() + 15
    while _group(proc.pid) and time.monotonic() < gone_by:
        time.sleep(0.5)
    assert _group(proc.pid) == []

    # Nothing half-written: no temporary file, no summary; a whole checkpoint.
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not (out / "summary.json").exists()
    saved = load_checkpoint(out / CHECKPOINT_FILE)
    assert 1 <= saved.round < ROUNDS

    resumed = subprocess.run(
        [sys.executable, "-m", "pwfl", *(args if command == "compare" else ["resume", str(out)])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    if command == "compare":
        assert (folder / "summary.csv").is_file()
    pd.testing.assert_frame_equal(
        repeated(pd.read_csv(out / "rounds.csv")), repeated(uninterrupted), check_exact=True
    )


class _StopAfter(Callback):
    def __init__(self, stop: threading.Event, rounds: int):
        self.stop, self.left = stop, rounds

    def on_round_end(self, record) -> None:
        self.left -= 1
        if self.left == 0:
            self.stop.set()


def test_a_stop_event_ends_a_run_at_its_next_poll(tmp_path):
    """The library's way in: another thread sets the event, the run raises Interrupted
    with the command that continues it, and the folder holds the checkpoint."""
    stop = threading.Event()
    cfg = load_config(TINY, [f"strategy.num_rounds={ROUNDS}"])
    with pytest.raises(Interrupted, match=f"saved at round 1 of {ROUNDS}.*pwfl resume"):
        run_experiment(cfg, tmp_path, quiet=True, callbacks=[_StopAfter(stop, 1)], stop=stop)
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE).round == 1
    assert not (tmp_path / "summary.json").exists()
