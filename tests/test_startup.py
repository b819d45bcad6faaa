"""Start-up: which runs start Ray, the session started in a thread of its own, and the
deterministic algorithms switched on without loading PyTorch's compiler."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from pwfl import runner
from pwfl.callbacks import Callback
from pwfl.config import load_config
from pwfl.runner import RayStart, aggregation_executor, needs_ray, run_experiment

from .conftest import CONFIGS, ROOT

TINY = CONFIGS / "tiny.toml"


@pytest.mark.parametrize(
    ("overrides", "executor", "ray"),
    [
        # One machine, inline: the Ray executor's aggregations go to threads, no session.
        (["simulation.backend=inline", "strategy.executor=ray"], "threads", False),
        (["simulation.backend=inline", "strategy.executor=serial"], "serial", False),
        # Flower's simulation engine runs on Ray whatever aggregates.
        (["simulation.backend=ray", "strategy.executor=ray"], "ray", True),
        (["simulation.backend=ray", "strategy.executor=threads"], "threads", True),
    ],
)
def test_which_runs_start_ray(overrides, executor, ray):
    cfg = load_config(TINY, overrides)
    assert aggregation_executor(cfg) == executor
    assert needs_ray(cfg) is ray


class _RayState(Callback):
    def __init__(self) -> None:
        self.up: list[bool] = []

    def on_round_end(self, record) -> None:
        import ray

        self.up.append(ray.is_initialized())


def test_an_inline_run_with_the_ray_executor_starts_no_session(tmp_path):
    watch = _RayState()
    cfg = load_config(TINY, ["strategy.executor=ray", "strategy.num_rounds=1"])
    run_experiment(cfg, tmp_path, quiet=True, callbacks=[watch])
    assert watch.up and not any(watch.up)


def test_a_failed_start_is_raised_where_the_session_is_awaited(monkeypatch):
    def refuse(cfg, verbose=False):
        raise ConnectionError("no cluster at 127.0.0.1:1")

    monkeypatch.setattr(runner, "start_ray", refuse)
    start = RayStart(load_config(TINY))
    with pytest.raises(ConnectionError, match="no cluster"):
        start.wait()
    start.release()


def test_the_start_thread_outlives_ray_init_until_released(monkeypatch):
    # Ray's daemons die with the thread that started them: it must wait for release.
    started = threading.Event()
    monkeypatch.setattr(runner, "start_ray", lambda cfg, verbose=False: started.set())
    start = RayStart(load_config(TINY))
    start.wait()
    assert started.is_set()
    assert start._thread.is_alive()
    start.release()
    start._thread.join(timeout=10)
    assert not start._thread.is_alive()


def test_portable_arithmetic_is_deterministic_without_loading_the_compiler():
    code = (
        "import sys, pwfl, torch\n"
        "from pwfl import arithmetic\n"
        "arithmetic.ensure('portable')\n"
        "print(torch.are_deterministic_algorithms_enabled(),\n"
        "      'torch._inductor.config' in sys.modules)\n"
        "import torch._inductor.config as inductor\n"
        "print(inductor.deterministic)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert done.stdout.split() == ["True", "False", "True"]
