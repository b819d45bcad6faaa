"""The pwfl command: compare and plot work end to end (bad input: tests/test_bad_input.py)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from pwfl.cli import main

from .conftest import CONFIGS, ROOT

QUICK = str(CONFIGS / "quick.toml")


def pwfl(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pwfl", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_compare_end_to_end_writes_tables_and_figure(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--config",
            str(CONFIGS / "tiny.toml"),
            "--strategies",
            "fedavg,pwfl-sequential,pwfl",
            "--seeds",
            "0",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["strategy"]) == {"fedavg", "pwfl-sequential", "pwfl"}
    # One row per run, round and weight set: 2 rounds x (1 + 2 + 2) sets.
    assert len(comparison) == 2 * 5
    summary = pd.read_csv(out / "summary.csv")
    summary = summary[summary["weight_set"] == "all"]
    assert summary["strategy"].tolist() == ["fedavg", "pwfl-sequential", "pwfl"]
    assert {"final_accuracy_mean", "final_accuracy_std", "mean_round_sim_s_mean"} <= set(summary)
    for name in ("convergence.png", "task_curves.png", "allocation.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    printed = capsys.readouterr().out
    assert "pwfl-sequential" in printed
    # Parallel groups are shorter on the simulated clock than the same groups in turn.
    sim = summary.set_index("strategy")["mean_round_sim_s_mean"]
    assert sim["pwfl"] < sim["pwfl-sequential"]
    png = out / "convergence.png"
    png.unlink()
    assert main(["plot", str(out)]) == 0
    assert png.is_file()


def test_compare_varies_one_config_key(tmp_path):
    out = tmp_path / "vary"
    code = main(
        [
            "compare",
            "--config",
            str(CONFIGS / "tiny.toml"),
            "--strategies",
            "pwfl",
            "--vary",
            "strategy.k=1,2",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    summary = pd.read_csv(out / "summary.csv")
    assert summary.query("weight_set == 'all'")["strategy"].tolist() == ["pwfl k=1", "pwfl k=2"]
    assert (out / "pwfl-k=1-seed0" / "rounds.csv").is_file()
    comparison = pd.read_csv(out / "comparison.csv")
    assert comparison.groupby("strategy")["weight_set"].nunique().to_dict() == {
        "pwfl k=1": 1,
        "pwfl k=2": 2,
    }
    assert (out / "timeline.png").is_file()


def test_bad_vary_is_one_line(tmp_path):
    result = pwfl("compare", "--config", QUICK, "--vary", "strategy.k", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--vary" in result.stderr and "Traceback" not in result.stderr
