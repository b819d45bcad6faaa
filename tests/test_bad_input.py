"""Bad input, one table: every case exits non-zero with one line on stderr that names the
problem, prints no traceback, and leaves an existing results folder as it was."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pwfl.checkpoint import CHECKPOINT_FILE, Checkpoint, save_checkpoint
from pwfl.cli import main
from pwfl.config import load_config

from .conftest import CONFIGS, ROOT

TINY = str(CONFIGS / "tiny.toml")
LR_SEARCH = str(CONFIGS / "lr_search.toml")


def _finished_run(folder: Path) -> None:
    """A results folder as a finished 2-round run leaves it (contents are stand-ins)."""
    folder.mkdir(parents=True)
    (folder / "rounds.csv").write_text("strategy,seed,round,accuracy\npwfl,0,1,0.5\n")
    (folder / "summary.json").write_text('{"rounds": 2}\n')
    (folder / "config.toml").write_text(load_config(TINY).to_toml())
    save_checkpoint(
        folder / CHECKPOINT_FILE,
        Checkpoint(2, 2, "pwfl", load_config(TINY).to_toml(), {}, {"w": np.zeros(3)}, {}),
    )


def _unfinished_run(folder: Path) -> None:
    _finished_run(folder)
    (folder / "summary.json").unlink()


def _corrupt_checkpoint(folder: Path) -> None:
    _unfinished_run(folder)
    path = folder / CHECKPOINT_FILE
    path.write_bytes(path.read_bytes()[:100])


def _future_checkpoint(folder: Path) -> None:
    import pwfl.checkpoint as checkpoint

    _unfinished_run(folder)
    old, checkpoint.FORMAT_VERSION = checkpoint.FORMAT_VERSION, 99
    try:
        save_checkpoint(
            folder / CHECKPOINT_FILE, Checkpoint(1, 2, "pwfl", load_config(TINY).to_toml())
        )
    finally:
        checkpoint.FORMAT_VERSION = old


def _no_checkpoint(folder: Path) -> None:
    _unfinished_run(folder)
    (folder / CHECKPOINT_FILE).unlink()


def run(*overrides: str, extra: tuple[str, ...] = ("--overwrite",)) -> list[str]:
    args = ["run", "--config", TINY, "--out", "{out}", *extra]
    for item in overrides:
        args += ["--set", item]
    return args


CASES = {
    "unknown key": (run("strategy.nme=x"), "strategy.nme", _finished_run),
    "unknown section": (run("nosection=1"), "nosection", _finished_run),
    "not a number": (run("strategy.num_rounds=ten"), "strategy.num_rounds", _finished_run),
    "fraction out of range": (run("strategy.fraction_train=1.5"), "fraction_train", _finished_run),
    "negative learning rate": (run("train.lr=-0.1"), "train.lr", _finished_run),
    "NaN learning rate": (run("train.lr=nan"), "'train.lr' = nan", _finished_run),
    "infinite CPUs per client": (
        run("simulation.client_cpus=inf"),
        "'simulation.client_cpus' = inf",
        _finished_run,
    ),
    "empty value": (run("clients.latency_ms="), "'clients.latency_ms' = ''", _finished_run),
    "hangs without a timeout": (
        run("faults.hang_prob=0.1", "faults.round_timeout_s=inf"),
        "faults.round_timeout_s",
        _finished_run,
    ),
    "k above sampled clients": (run("strategy.k=5"), "strategy.k", _finished_run),
    "unknown data set": (run("data.name=imagenet"), "data.name", _finished_run),
    "unknown model": (run("model.name=resnet"), "model.name", _finished_run),
    "image model on features": (
        run("data.name=synthetic"),
        "'model.name' = 'small-cnn' does not fit data.name = 'synthetic'",
        _finished_run,
    ),
    "augment features": (
        run("data.name=synthetic", "model.name=mlp", "train.augment=true"),
        "train.augment",
        _finished_run,
    ),
    "negative synthetic alpha": (
        run("data.name=synthetic", "model.name=mlp", "data.synthetic_alpha=-1"),
        "data.synthetic_alpha",
        _finished_run,
    ),
    "unknown client binding": (
        run("simulation.client_binding=actor"),
        "simulation.client_binding",
        _finished_run,
    ),
    "resample more than the data set": (
        run("data.partitioner=resample", "data.examples_per_client=4001"),
        "data.examples_per_client",
        _finished_run,
    ),
    "bad merge policy": (run("strategy.merge=every:0"), "strategy.merge", _finished_run),
    "unknown executor": (run("strategy.executor=gpu"), "strategy.executor", _finished_run),
    "quorum zero": (run("faults.quorum=0"), "faults.quorum", _finished_run),
    "quorum above one": (run("faults.quorum=1.5"), "faults.quorum", _finished_run),
    "fault shares above one": (
        run("faults.crash_prob=0.8", "faults.transient_prob=0.5"),
        "faults.crash_prob",
        _finished_run,
    ),
    "negative retries": (run("faults.max_retries=-1"), "faults.max_retries", _finished_run),
    "unknown client state": (run("train.client_state=all"), "train.client_state", _finished_run),
    "missing config file": (
        ["run", "--config", "absent.toml", "--out", "{out}"],
        "absent.toml",
        _finished_run,
    ),
    "missing trace file": (
        run("clients.profile=trace", "clients.trace=absent.csv"),
        "clients.trace",
        _finished_run,
    ),
    "data files not there": (
        run("data.name=mnist", "data.root={out}/no-data"),
        "mnist",
        _finished_run,
    ),
    "overwrite a finished run": (run(extra=()), "finished run", _finished_run),
    "overwrite an unfinished run": (run(extra=()), "pwfl resume", _unfinished_run),
    "resume a corrupt checkpoint": (["resume", "{out}"], "corrupt", _corrupt_checkpoint),
    "resume a newer format": (["resume", "{out}"], "format 99", _future_checkpoint),
    "resume without checkpoint": (["resume", "{out}"], "no checkpoint", _no_checkpoint),
    "resume a finished run": (["resume", "{out}"], "nothing to resume", _finished_run),
    "no supernodes": (
        ["deploy", "--config", TINY, "--clients", "0", "--out", "{out}"],
        "--clients",
        _finished_run,
    ),
    "k above supernodes": (
        ["deploy", "--config", TINY, "--clients", "2", "--set", "strategy.k=3", "--out", "{out}"],
        "strategy.k",
        _finished_run,
    ),
    "a node per client past what flower simulates": (
        run("data.num_clients=6000", "data.partitioner=resample", "simulation.client_binding=node"),
        "simulation.client_binding = pool",
        _finished_run,
    ),
    "weight sets fewer than k": (
        [*run("strategy.k=3"), "--config", LR_SEARCH],
        "[[weight_set]] tables",
        _finished_run,
    ),
    "unknown per-set key": (
        [*run("weight_set.0.train.lrr=0.1"), "--config", LR_SEARCH],
        "weight_set.0.train.lrr",
        _finished_run,
    ),
    "per-set key that cannot vary": (
        [*run("weight_set.1.data.num_clients=3"), "--config", LR_SEARCH],
        "cannot differ between weight sets",
        _finished_run,
    ),
    "a model that does not fit under deploy": (
        ["deploy", "--config", TINY, "--clients", "2", "--set", "data.name=synthetic"]
        + ["--out", "{out}", "--overwrite"],
        "'model.name' = 'small-cnn' does not fit data.name = 'synthetic'",
        _finished_run,
    ),
    "a model that does not fit in a comparison": (
        ["compare", "--config", TINY, "--vary", "data.name=mnist-5k,synthetic"]
        + ["--strategies", "fedavg", "--out", "{out}", "--overwrite"],
        "does not fit data.name = 'synthetic'",
        _finished_run,
    ),
    "bad seeds": (
        ["compare", "--config", TINY, "--seeds", "a,b", "--out", "{out}"],
        "--seeds",
        _finished_run,
    ),
    "unknown strategy": (
        ["compare", "--config", TINY, "--strategies", "fedavg,fedsgd", "--out", "{out}"],
        "fedsgd",
        _finished_run,
    ),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _check_one_line(code: int, stderr: str, named: str, out: Path) -> None:
    assert code != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pwfl: error: ")
    assert named.replace("{out}", str(out)) in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize(("args", "named", "prepare"), CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_and_touches_nothing(args, named, prepare, tmp_path, capsys):
    """In this process: the CLI's main, as the console script calls it."""
    out = tmp_path / "results"
    prepare(out)
    before = _snapshot(out)
    capsys.readouterr()
    code = main([a.replace("{out}", str(out)) for a in args])
    _check_one_line(code, capsys.readouterr().err, named, out)
    assert _snapshot(out) == before


@pytest.mark.parametrize("case", ["unknown key", "resume a corrupt checkpoint", "no supernodes"])
def test_the_command_itself_prints_one_line(case, tmp_path):
    """The same through ``python -m pwfl`` in a process of its own: no library's start-up
    output or exit path adds to the line."""
    args, named, prepare = CASES[case]
    out = tmp_path / "results"
    prepare(out)
    result = subprocess.run(
        [sys.executable, "-m", "pwfl", *(a.replace("{out}", str(out)) for a in args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    _check_one_line(result.returncode, result.stderr, named, out)
