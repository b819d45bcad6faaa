"""A simulation on an existing Ray cluster (``--ray-address``), here a local head node."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil

from pwfl.deploy import free_port

from .conftest import CONFIGS, ROOT


def test_simulation_runs_on_a_ray_head_started_apart(tmp_path):
    port = free_port()
    ray = str(Path(sys.executable).with_name("ray"))
    # A temp dir of its own (short: Ray's socket paths must fit 107 characters), so the
    # head's address file does not outlive the test in /tmp/ray.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
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
            f"--temp-dir={temp_dir}",
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
                # 100 resampled examples per client: the run is about where clients run.
                "--set",
                "data.partitioner=resample",
                "--set",
                "data.examples_per_client=100",
                "--out",
                str(tmp_path),
                "--quiet",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        while run.poll() is None:  # note the head's processes, to stop them all after
            tree.update({p.pid: p for p in root.children(recursive=True)})
            time.sleep(0.5)
        assert run.returncode == 0, run.stderr.read()[-2000:]
        # The client actors ran on the head: their worker logs are in its session.
        logs = Path(temp_dir).glob("session_*/logs/worker-*.out")
        assert any("ClientAppActor" in log.read_text(errors="replace") for log in logs)
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
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not alive, [p.cmdline()[:2] for p in alive]
