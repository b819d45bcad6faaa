"""The README's ``flwr run . --stream`` on Flower's default federation (2 simulated SuperNodes).

Marked slow: Flower installs the app's dependencies into a runtime environment
of its own first (about a minute here, from the package index), then the
ServerApp runs 10 simulated clients on the 2 nodes through the client pool.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest

from pwfl.apps.settings import run_config_argument

from .conftest import ROOT


def _stop_local_superlink(home: Path) -> None:
    """``flwr run`` leaves the local SuperLink it started running; stop it and its children."""
    for proc in psutil.process_iter(["cmdline"]):
        if str(home) in " ".join(proc.info["cmdline"] or []):
            for each in [*proc.children(recursive=True), proc]:
                with contextlib.suppress(psutil.Error):
                    each.kill()


@pytest.mark.slow
def test_flwr_run_finishes_on_two_supernodes_with_ten_clients(tmp_path):
    flwr = Path(sys.executable).with_name("flwr")
    if not flwr.is_file():
        pytest.skip("the flwr command is not installed beside this Python")
    out = tmp_path / "records"
    env = {
        **os.environ,
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "PATH": f"{flwr.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # The experiment is one key of TOML text; a one-round run of pyproject.toml's app.
    config = f"{run_config_argument('strategy.num_rounds = 1')} out-dir='{out}'"
    try:
        result = subprocess.run(
            [str(flwr), "run", ".", "--stream", "--run-config", config],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        _stop_local_superlink(tmp_path / "flwr-home")
        shutil.rmtree(tmp_path / "flwr-home", ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 simulated SuperNodes" in result.stdout + result.stderr
    rounds = pd.read_csv(out / "rounds.csv")
    assert rounds["round"].tolist() == [1, 1] and (rounds["status"] == "ok").all()
    train = pd.read_csv(out / "clients.csv").query("phase == 'train'")
    assert sorted(train["client"]) == list(range(10))  # ten clients on two nodes
