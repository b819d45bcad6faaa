"""A simulation on an existing Ray cluster (``--ray-address``), here a local head node."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

from .conftest import CONFIGS, ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_simulation_runs_on_a_ray_head_started_apart(tmp_path):
    port = _free_port()
    ray = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            "--block",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tree: dict[int, psutil.Process] = {}
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:  # the head is up once its GCS port answers
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        root = psutil.Process(head.pid)
        tree = {p.pid: p for p in [root, *root.children(recursive=True)]}
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pwfl",
                "run",
                "--config",
                str(CONFIGS / "tiny.toml"),
                "--ray-address",
                address,
                "--out",
                str(tmp_path),
                "--quiet",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        names = set()
        while run.poll() is None:  # the client actors must appear under the head's raylet
            for p in root.children(recursive=True):
                tree.setdefault(p.pid, p)
                try:
                    names.add(" ".join(p.cmdline()))
                except psutil.Error:
                    continue
            time.sleep(0.5)
        assert run.returncode == 0, run.stderr.read()[-2000:]
        assert any("ClientAppActor" in name for name in names)
        rounds = pd.read_csv(tmp_path / "rounds.csv")
        assert rounds["round"].max() == 2
    finally:
        tree.update({p.pid: p for p in psutil.Process(head.pid).children(recursive=True)})
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        gone, alive = psutil.wait_procs(list(tree.values()), timeout=30)
        for p in alive:
            p.kill()
    assert not alive, [p.cmdline()[:2] for p in alive]
