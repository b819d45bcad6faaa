"""Output folders: finished or committed results are never overwritten silently, and a
stopped comparison carries on where it stopped."""

from __future__ import annotations

import subprocess
import threading

import pandas as pd
import pytest

from pwfl import cli
from pwfl.callbacks import Callback
from pwfl.config import load_config
from pwfl.errors import Interrupted
from pwfl.runner import run_experiment

from .conftest import CONFIGS, ROOT

TINY = CONFIGS / "tiny.toml"


def repeated(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column but those measured on the host."""
    return frame.drop(columns=[c for c in frame if c.endswith(("_wall_s", "_measured_s"))])


def compare(out, *extra: str) -> list[str]:
    return (
        ["compare", "--config", str(TINY), "--strategies", "fedavg,pwfl", "--quiet"]
        + (["--out", str(out)] if out is not None else [])
        + list(extra)
    )


def refused(capsys, argv: list[str], folder: str) -> str:
    """Run the CLI, expect the one-line refusal naming ``folder`` and both ways out."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert folder in err and "--out NEW" in err and "--overwrite" in err, err
    return err


def test_compare_without_out_does_not_touch_the_committed_quick_results(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    quick = ROOT / "results" / "compare" / "quick"
    before = {p: p.stat().st_mtime_ns for p in quick.rglob("*") if p.is_file()}
    argv = ["compare", "--config", "experiments/configs/quick.toml", "--quiet"]
    refused(capsys, argv, "results/compare/quick")
    assert {p: p.stat().st_mtime_ns for p in quick.rglob("*") if p.is_file()} == before


def test_finished_comparison_is_refused_and_replaced_with_overwrite(tmp_path, capsys):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "summary.csv").write_text("strategy\nold\n")
    refused(capsys, compare(out), str(out))
    assert (out / "summary.csv").read_text() == "strategy\nold\n"
    assert cli.main(compare(out, "--overwrite")) == 0
    assert set(pd.read_csv(out / "summary.csv")["strategy"]) == {"fedavg", "pwfl"}


def _git(folder, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.mark.parametrize("command", ["run", "compare"])
def test_folder_committed_to_git_is_refused(command, tmp_path, capsys):
    out = tmp_path / "results" / "mine"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("kept in git\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    argv = compare(out) if command == "compare" else ["run", "--config", str(TINY)]
    argv += ["--out", str(out)] if command == "run" else []
    err = refused(capsys, argv, str(out))
    assert "committed to git" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


class _StopAfterFirstRound(Callback):
    def __init__(self, stop: threading.Event):
        self.stop = stop

    def on_round_end(self, record) -> None:
        self.stop.set()


def test_stopped_comparison_carries_on_to_the_numbers_of_one_run_at_once(tmp_path):
    """The state a Ctrl-C leaves: fedavg finished, pwfl stopped after its first round, no
    summary. Running the same compare again keeps fedavg's folder as it is, resumes
    pwfl, and writes the comparison an uninterrupted one writes."""
    whole = tmp_path / "whole"
    assert cli.main(compare(whole)) == 0
    stopped = tmp_path / "stopped"
    cfg = load_config(TINY)
    run_experiment(cfg.with_overrides(["strategy.name=fedavg"]), stopped / "fedavg-seed0", True)
    stop = threading.Event()
    with pytest.raises(Interrupted):
        run_experiment(
            cfg,
            stopped / "pwfl-seed0",
            quiet=True,
            label="pwfl",
            callbacks=[_StopAfterFirstRound(stop)],
            stop=stop,
        )
    kept = stopped / "fedavg-seed0" / "rounds.csv"
    written = kept.stat().st_mtime_ns
    assert cli.main(compare(stopped)) == 0
    assert kept.stat().st_mtime_ns == written
    pd.testing.assert_frame_equal(
        repeated(pd.read_csv(stopped / "comparison.csv")),
        repeated(pd.read_csv(whole / "comparison.csv")),
        check_exact=True,
    )


def test_comparison_folder_of_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "cmp"
    cfg = load_config(TINY, ["strategy.name=fedavg", "seed=1"])
    run_experiment(cfg, out / "fedavg-seed0", quiet=True)
    refused(capsys, compare(out), str(out / "fedavg-seed0"))
