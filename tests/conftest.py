"""Shared fixtures: a private data cache, the --runslow switch (and the Hypothesis
profile it picks), one Ray session per test run, and the run checker on every run a
test makes."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest
from hypothesis import settings

import pwfl  # noqa: F401  (first: pins the CPU kernels before any test loads PyTorch)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


# Hypothesis's own profiles size the property tests that leave ``max_examples`` to
# them: a CI run draws a sample that keeps the suite short, ``--runslow`` the full one
# (``--hypothesis-profile NAME`` still picks any profile by name).
settings.register_profile("ci", max_examples=60)
settings.register_profile("thorough", max_examples=200)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hypothesis_profile", None) is None:
        settings.load_profile("thorough" if config.getoption("--runslow") else "ci")
    config.addinivalue_line(
        "markers",
        "checks_its_own_records: the test checks every run it makes itself "
        "(the checked_runs fixture stands aside)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cached partitions go to a fresh folder, so every test run computes them once."""
    path = tmp_path_factory.mktemp("pwfl-cache")
    os.environ["PWFL_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def ray_session():
    """Experiments in this process share one Ray session, shut down at the end."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(autouse=True)
def checked_runs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Every run a test makes in this process has its records checked (pwfl.invariants).

    ``run_server`` writes every run's folder, whatever the backend; its records are
    checked as soon as it returns (before the test can look at or edit them), and
    the test fails at teardown on any violation ``tests/records_check.py`` does not
    list as a known defect. Failing at teardown, not inside the run, keeps a run that
    raises on purpose (a lost quorum) raising what the test expects.
    """
    if request.node.get_closest_marker("checks_its_own_records") or (
        "pwfl.runner" not in sys.modules and "pwfl.apps.server_app" not in sys.modules
    ):
        yield []  # no run in this test module: torch and Flower stay unloaded
        return
    from pwfl.apps import server_app
    from tests.records_check import violations

    found: list[str] = []
    original = server_app.run_server

    def run_server(grid, cfg, out_dir, *args, **kwargs):
        outcome = original(grid, cfg, out_dir, *args, **kwargs)
        found.extend(str(v) for v in violations(out_dir))
        return outcome

    monkeypatch.setattr(server_app, "run_server", run_server)
    yield found
    if found:
        pytest.fail("the run's records break invariants:\n" + "\n".join(found))


def has_avx2() -> bool:
    """Whether this CPU is x86-64 with AVX2 (what portable arithmetic pins)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        return " avx2 " in f" {Path('/proc/cpuinfo').read_text().replace(chr(10), ' ')} "
    except OSError:
        return False
