"""Kill a run anywhere, resume it, and get the records of a run never interrupted.

Every strategy and mode is killed at seeded random moments: between two events
on the simulated clock (jobs in flight in async PWFL, FedBuff and FedAsync),
after a round's rows are written but before its checkpoint, and halfway
through writing a checkpoint (the temporary file written, not yet renamed).
Each time it is resumed from what is on disk, as ``pwfl resume`` does, until it
finishes; then every column not measured on the host equals the uninterrupted
run's. A kill here is an exception no code of pwfl catches, raised at the
chosen moment in this process (:class:`Killed`); one test kills a real process
with SIGKILL (``test_reliability_e2e.py``).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pwfl import checkpoint, records
from pwfl.apps import server_app
from pwfl.checkpoint import CHECKPOINT_FILE, load_checkpoint
from pwfl.config import load_config
from pwfl.engine.loop import Engine
from pwfl.runner import run_experiment

from .conftest import CONFIGS

BASE = [
    "data.name=synthetic-iid",  # a logistic regression on 60 features: milliseconds a round
    "model.name=logreg",
    "data.num_clients=6",
    "strategy.fraction_evaluate=0.5",
    "checkpoint.every=1",
    "simulation.reply_timeout_s=120",  # a reply never asked again shows as lost, not a hang
    # Server links the transfers fill: transfers share them, part-way through, when a
    # checkpoint is taken and when the run resumes.
    "server.up_mbps=1",
    "server.down_mbps=1",
]
CASES = {
    "fedavg": ["strategy.name=fedavg"],
    "pwfl": ["strategy.name=pwfl", "train.client_state=momentum", "strategy.server_opt=fedavgm"],
    "pwfl-sequential": ["strategy.name=pwfl-sequential", "stragglers.load_balancing=proportional",
                        "clients.profile=tiers", "clients.tiers=0.5:1.0,0.5:0.25"],
    "pwfl-async": ["strategy.name=pwfl", "strategy.mode=async", "faults.transient_prob=0.3",
                   "clients.profile=tiers", "clients.tiers=0.5:1.0,0.5:0.2",
                   "clock.reference_gflops=0.0001"],  # compute, not transfers, sets the pace
    "fedbuff": ["strategy.name=fedbuff", "strategy.fedbuff.buffer_size=2",
                "strategy.fedbuff.concurrency=4", "clients.profile=tiers",
                "clients.tiers=0.5:1.0,0.5:0.3"],
    "fedprox": ["strategy.name=fedprox", "strategy.fedprox.mu=0.1"],
    "fedasync": ["strategy.name=fedasync", "strategy.fedasync.concurrency=3",
                 "faults.crash_prob=0.2"],
    "fedast": ["strategy.name=fedast", "strategy.fedast.buffer_size=2",
               "strategy.fedast.concurrency=4", "strategy.fedast.realloc_every=3",
               "faults.transient_prob=0.2", "clients.offline_prob=0.2",
               "clients.profile=tiers", "clients.tiers=0.5:1.0,0.5:0.3"],
}  # fmt: skip


class Killed(BaseException):
    """The process died here: nothing after this moment runs."""


def host_free(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column but those measured on the host."""
    return frame.drop(columns=[c for c in frame if c.endswith(("_wall_s", "_measured_s"))])


def kill_at(monkeypatch: pytest.MonkeyPatch, where: str, count: int) -> None:
    """Make the ``count``-th event handled, checkpoint saved or checkpoint file written
    (``where``: event, before-checkpoint, in-checkpoint) kill the run."""
    seen = {"n": 0}

    def due() -> bool:
        seen["n"] += 1
        return seen["n"] == count

    if where == "event":
        handle = Engine.handle

        def handle_or_die(self, event):
            if due():
                raise Killed
            handle(self, event)

        monkeypatch.setattr(Engine, "handle", handle_or_die)
    elif where == "before-checkpoint":
        save = checkpoint.save_checkpoint

        def save_or_die(path, ckpt):
            if due():
                raise Killed
            save(path, ckpt)

        monkeypatch.setattr(checkpoint, "save_checkpoint", save_or_die)
    else:
        savez = records.atomic_savez

        def half_written(path, arrays):
            if Path(path).name == CHECKPOINT_FILE and due():
                # What a kill leaves mid-write: the temporary file, partly there.
                torn = Path(path).with_name(f".{Path(path).name}.torn.tmp")
                torn.write_bytes(b"PK\x03\x04 torn")
                raise Killed
            savez(path, arrays)

        monkeypatch.setattr(records, "atomic_savez", half_written)
        monkeypatch.setattr(checkpoint, "atomic_savez", half_written, raising=False)
        monkeypatch.setattr(server_app, "atomic_savez", half_written, raising=False)


def run_until_done(cfg, out: Path, kills: list[tuple[str, int]], monkeypatch) -> int:
    """Run ``cfg`` into ``out``, killed at each of ``kills`` in turn and resumed from
    disk after each; return how many kills struck."""
    struck = 0
    for where, count in [*kills, ("", 0)]:
        with monkeypatch.context() as patch:
            if where:
                kill_at(patch, where, count)
            try:
                if (out / CHECKPOINT_FILE).is_file():
                    ckpt = load_checkpoint(out / CHECKPOINT_FILE)
                    run_experiment(ckpt.config, out, quiet=True, label=ckpt.label, resume=ckpt)
                else:
                    shutil.rmtree(out, ignore_errors=True)
                    run_experiment(cfg, out, quiet=True)
            except Killed:
                struck += 1
                continue
        if (out / "summary.json").is_file():
            break
    return struck


@pytest.mark.parametrize("case", list(CASES))
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_records(case, tmp_path, monkeypatch):
    cfg = load_config(CONFIGS / "tiny.toml", [*BASE, *CASES[case], "strategy.num_rounds=4"])
    full = tmp_path / "full"
    run_experiment(cfg, full, quiet=True)
    draw = random.Random(f"kill-{case}")
    kills = [
        ("event", draw.randint(5, 60)),
        ("before-checkpoint", draw.randint(1, 3)),
        ("event", draw.randint(5, 60)),
        ("in-checkpoint", draw.randint(1, 3)),
        ("event", draw.randint(5, 60)),
    ]
    killed = tmp_path / "killed"
    struck = run_until_done(cfg, killed, kills, monkeypatch)
    assert struck >= 3, f"only {struck} of the kills struck before the run ended"
    assert (killed / "summary.json").is_file()
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        pd.testing.assert_frame_equal(
            host_free(pd.read_csv(killed / name)),
            host_free(pd.read_csv(full / name)),
            check_exact=True,
            obj=f"{case}: {name}",
        )


def test_an_async_run_killed_with_sigkill_resumes_to_the_uninterrupted_records(tmp_path):
    """A real kill: the process group gets SIGKILL at a seeded random moment after its
    second checkpoint, with groups in flight; ``pwfl resume`` finishes the run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import ROOT

    overrides = [*BASE, *CASES["pwfl-async"], "strategy.num_rounds=30", "simulation.backend=inline"]
    killed = tmp_path / "killed"
    args = ["run", "--config", str(CONFIGS / "tiny.toml"), "--out", str(killed), "--quiet"]
    for item in overrides:
        args += ["--set", item]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pwfl", *args],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    delay = random.Random("sigkill").uniform(0.0, 0.2)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            ckpt = killed / CHECKPOINT_FILE
            if ckpt.is_file() and load_checkpoint(ckpt).round >= 2:
                time.sleep(delay)
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it was killed: {proc.stderr.read()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    saved = load_checkpoint(killed / CHECKPOINT_FILE)
    assert saved.round < 30 and saved.strategy["jobs"]  # killed with a group in flight
    resumed = subprocess.run(
        [sys.executable, "-m", "pwfl", "resume", str(killed), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    full = tmp_path / "full"
    run_experiment(load_config(CONFIGS / "tiny.toml", overrides), full, quiet=True)
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        pd.testing.assert_frame_equal(
            host_free(pd.read_csv(killed / name)),
            host_free(pd.read_csv(full / name)),
            check_exact=True,
            obj=name,
        )


def test_the_first_round_after_a_resume_counts_its_wall_time_from_the_checkpoint(
    tmp_path, monkeypatch
):
    """``round_wall_s`` is the run's host seconds between a set's round ends: after a
    resume too (the checkpointed round's end is restored), not from the first start."""
    cfg = load_config(CONFIGS / "tiny.toml", [*BASE, *CASES["fedavg"], "strategy.num_rounds=4"])
    out = tmp_path / "killed"
    assert run_until_done(cfg, out, [("before-checkpoint", 3)], monkeypatch) == 1
    rows = pd.read_csv(out / "rounds.csv")
    elapsed, wall = rows["elapsed_wall_s"].to_numpy(), rows["round_wall_s"].to_numpy()
    assert wall[0] == pytest.approx(elapsed[0], abs=1e-9)
    # Round 3 is the first the resumed process runs (its checkpoint was never written).
    for r in range(1, len(rows)):
        assert wall[r] == pytest.approx(elapsed[r] - elapsed[r - 1], abs=1e-9), r


def test_a_run_killed_with_an_aggregation_pending_tells_the_policy_its_updates(
    tmp_path, monkeypatch
):
    """Async PWFL checkpoints a set's round while another set's aggregation is still on
    a server core: killed right after such a checkpoint, the resumed run hands the
    policy that job's updates when the aggregation ends, and its records are those of
    the uninterrupted run."""
    overrides = [
        *BASE,
        *CASES["pwfl-async"],
        "strategy.num_rounds=4",
        "server.memory_gbps=0.000001",
        "server.cores=1",
    ]
    cfg = load_config(CONFIGS / "tiny.toml", overrides)
    full = tmp_path / "full"
    run_experiment(cfg, full, quiet=True)
    killed = tmp_path / "killed"
    save, pending = checkpoint.save_checkpoint, []

    def save_then_die_if_pending(path, ckpt):
        save(path, ckpt)
        if any(event["kind"] == "aggregated" for *_, event in ckpt.strategy["sim"]["queue"]):
            pending.append(ckpt.round)
            raise Killed

    told = []
    finish = Engine.finish

    def noting_finish(self, finished):
        told.append((finished.status, len(finished.updates), len(self.job(finished.job).counted())))
        finish(self, finished)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save_checkpoint", save_then_die_if_pending)
        with pytest.raises(Killed):
            run_experiment(cfg, killed, quiet=True)
    assert pending, "no checkpoint was taken with an aggregation pending"
    monkeypatch.setattr(Engine, "finish", noting_finish)
    ckpt = load_checkpoint(killed / CHECKPOINT_FILE)
    run_experiment(ckpt.config, killed, quiet=True, label=ckpt.label, resume=ckpt)
    assert told and all(n == counted for status, n, counted in told if status == "ok")
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        pd.testing.assert_frame_equal(
            host_free(pd.read_csv(killed / name)),
            host_free(pd.read_csv(full / name)),
            check_exact=True,
            obj=name,
        )
