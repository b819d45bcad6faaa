"""The same experiment on Flower's Deployment Engine: a SuperLink and N SuperNodes on loopback.

Usage::

    pwfl deploy --config experiments/configs/tiny.toml --clients 3 --out results/deploy/tiny

Every Flower component is its own process, as on separate machines: one
``flower-superlink`` (all its APIs on one port), one ``flower-supernode`` per
client with its ``partition-id``/``num-partitions`` node config, and the run is
submitted with ``flwr run`` under a private ``FLWR_HOME``. The ServerApp and
ClientApp are the ones the simulation runs; the ServerApp writes the usual
records into the output folder. Every process started here is stopped when the
run ends, fails, or is interrupted. Logs go to ``<out>/deploy/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import tomli_w

from pwfl import arithmetic
from pwfl.config import Config, check_single_run
from pwfl.errors import PwflError
from pwfl.extensions import search_path

CONNECTION = "pwfl-local"
START_TIMEOUT_S = 60.0
POLL_S = 1.0
STOP_GRACE_S = 10.0


class DeployError(PwflError):
    """A deployment that could not start or did not finish."""


def app_dir() -> Path:
    """The Flower app folder (the one with ``pyproject.toml``): this source tree."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise DeployError(
            f"no pyproject.toml in {root}: pwfl deploy submits the app from the pwfl source "
            "tree; run it from a clone of the repository"
        )
    return root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_config_file(cfg: Config, out: Path, path: Path) -> Path:
    """Write the run config that carries ``cfg`` (its TOML text in the ``experiment`` key,
    ``[[weight_set]]`` tables included) and the output folder to the TOML file ``path``,
    which ``flwr run --run-config`` reads as it is."""
    from pwfl.apps.settings import run_config

    path.write_text(tomli_w.dumps(run_config(cfg, str(out.resolve()))))
    return path


def _tool(name: str) -> str:
    """A Flower command from this Python's environment (the venv's bin folder)."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.is_file() else shutil.which(name)
    if not found:
        raise DeployError(f"'{name}' not found; install pwfl's dependencies (make install)")
    return found


class LocalDeployment:
    """A SuperLink and SuperNodes on this machine; a context manager that stops them all."""

    def __init__(self, cfg: Config, out: str | Path, clients: int):
        self.cfg = cfg
        self.out = Path(out)
        self.clients = clients
        self.logs = self.out / "deploy"
        self.port = free_port()
        self.superlink: subprocess.Popen | None = None
        self.supernodes: list[subprocess.Popen] = []
        self._handles: list = []
        self._tree: dict[int, psutil.Process] = {}
        home = self.logs / "flwr-home"
        # The SuperLink and SuperNodes start Flower's helper commands
        # (flower-superexec, flwr-serverapp, flwr-clientapp) by name: this
        # Python's bin folder goes first on their PATH.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        # The arithmetic mode and its kernel pins reach every process Flower starts
        # (the ServerApp and ClientApp processes load PyTorch after them), and so
        # does this working directory, where your code by dotted path is found first.
        self.env = {
            **os.environ,
            **arithmetic.child_environment(cfg.reproducibility.arithmetic),
            "FLWR_HOME": str(home.resolve()),
            "PATH": path,
            "PYTHONPATH": search_path(),
        }
        self.run_id: int | None = None

    # --- processes -----------------------------------------------------------------

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.logs / log_name, "w")  # noqa: SIM115 - closed in stop()
        self._handles.append(log)
        # A session of its own: stop() signals the process and its children.
        return subprocess.Popen(
            args,
            cwd=self.logs,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self) -> None:
        """Start the SuperLink, wait for its port, then start every SuperNode."""
        self.logs.mkdir(parents=True, exist_ok=True)
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            tomli_w.dumps(
                {
                    "superlink": {
                        "default": CONNECTION,
                        CONNECTION: {"address": f"127.0.0.1:{self.port}", "insecure": True},
                    }
                }
            )
        )
        self.superlink = self._spawn(
            [
                _tool("flower-superlink"),
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            "superlink.log",
        )
        self._wait_for_port(self.port, self.superlink, "superlink.log")
        for pid in range(self.clients):
            self.supernodes.append(
                self._spawn(
                    [
                        _tool("flower-supernode"),
                        "--insecure",
                        "--superlink",
                        f"127.0.0.1:{self.port}",
                        "--port",
                        str(free_port()),
                        "--node-config",
                        f"partition-id={pid} num-partitions={self.clients}",
                    ],
                    f"supernode-{pid}.log",
                )
            )

    def _wait_for_port(self, port: int, proc: subprocess.Popen, log: str) -> None:
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if proc.poll() is not None:
                raise DeployError(f"the SuperLink exited at start; see {self.logs / log}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise DeployError(f"the SuperLink did not open port {port}; see {self.logs / log}")

    def kill_node(self, index: int) -> None:
        """Kill one SuperNode at once (SIGKILL), as a machine that disappears."""
        proc = self.supernodes[index]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def track(self) -> None:
        """Note every descendant of the processes started here.

        Flower's daemons start their helpers (SuperExec, ServerApp, ClientApp
        processes) in sessions of their own, out of reach of a process-group
        signal, and a helper whose parent died is no longer its descendant: so
        the tree is noted while the parents live, and stopped by pid.
        """
        for proc in [*self.supernodes, *([self.superlink] if self.superlink else [])]:
            try:
                root = psutil.Process(proc.pid)
                for p in [root, *root.children(recursive=True)]:
                    self._tree.setdefault(p.pid, p)
            except psutil.NoSuchProcess:
                continue

    def stop(self) -> None:
        """Stop every process started here: SIGTERM, then SIGKILL after a grace period."""
        self.track()
        procs = [*self.supernodes, *([self.superlink] if self.superlink else [])]
        for proc in procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.time() + STOP_GRACE_S
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        survivors = [p for p in self._tree.values() if p.is_running()]
        for p in survivors:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(survivors, timeout=STOP_GRACE_S)
        for handle in self._handles:
            handle.close()

    def alive(self) -> list[psutil.Process]:
        """The processes started here (or by Flower for them) that still run."""
        return [p for p in self._tree.values() if p.is_running() and p.status() != "zombie"]

    def started_pids(self) -> list[int]:
        """Every process id started here or by Flower on its behalf (as far as seen)."""
        self.track()
        return sorted(self._tree)

    def __enter__(self) -> LocalDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the run -------------------------------------------------------------------

    def _flwr(self, *args: str, timeout: float = 120) -> dict:
        result = subprocess.run(
            [_tool("flwr"), *args, "--format", "json"],
            cwd=app_dir(),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            raise DeployError(
                f"flwr {args[0]} failed: {(result.stdout + result.stderr).strip()[-300:]}"
            ) from None

    def submit(self) -> int:
        """Submit the ServerApp/ClientApp run with the experiment as its run config."""
        overrides = run_config_file(self.cfg, self.out, self.logs / "run-config.toml")
        reply = self._flwr("run", str(app_dir()), CONNECTION, "--run-config", str(overrides))
        if not reply.get("success") or reply.get("run-id") is None:
            raise DeployError(f"the SuperLink refused the run: {reply.get('error-message', reply)}")
        self.run_id = int(reply["run-id"])
        return self.run_id

    def status(self) -> str:
        """The run's status as Flower reports it, e.g. ``running`` or ``finished:completed``."""
        reply = self._flwr("ls", CONNECTION, "--run-id", str(self.run_id))
        runs = reply.get("runs") or []
        return str(runs[0]["status"]) if runs else "unknown"

    def wait(self, timeout_s: float, on_poll: Callable[[], None] | None = None) -> str:
        """Wait until the run finishes; return its final status."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.superlink is not None and self.superlink.poll() is not None:
                raise DeployError(f"the SuperLink died; see {self.logs / 'superlink.log'}")
            self.track()
            status = self.status()
            if status.startswith("finished"):
                return status
            if on_poll is not None:
                on_poll()
            time.sleep(POLL_S)
        raise DeployError(f"the run did not finish within {timeout_s:.0f} s; logs in {self.logs}")


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def deploy(
    cfg: Config,
    out: str | Path,
    clients: int,
    timeout_s: float = 3600.0,
    on_poll: Callable[[LocalDeployment], None] | None = None,
) -> dict:
    """Run ``cfg`` on a local SuperLink with ``clients`` SuperNodes; return the summary.

    ``cfg.data.num_clients`` is set to ``clients``, and clients bind to nodes (each
    SuperNode is one client and holds its own data: ``simulation.client_binding =
    "node"``). ``on_poll`` is called with the
    deployment about once a second while the run goes on (tests use it to kill a
    node). Every process is stopped before this returns or raises.
    """
    from pwfl.apps.server_app import clear_stale_files
    from pwfl.runner import prepare_data

    check_single_run(cfg)
    cfg = cfg.with_overrides([f"data.num_clients={clients}", "simulation.client_binding=node"])
    out = Path(out)
    prepare_data(cfg)  # a data problem is reported now; the nodes read the cached split
    out.mkdir(parents=True, exist_ok=True)
    clear_stale_files(out)
    with LocalDeployment(cfg, out, clients) as deployment:
        deployment.start()
        deployment.submit()
        status = deployment.wait(
            timeout_s, None if on_poll is None else (lambda: on_poll(deployment))
        )
    summary_path = out / "summary.json"
    if not status.endswith("completed") or not summary_path.is_file():
        raise DeployError(
            f"the run ended as '{status}' without a summary; see {out / 'deploy'}/*.log"
        )
    summary = json.loads(summary_path.read_text())
    if summary.get("stopped"):
        raise PwflError(summary["stopped"])
    return summary
