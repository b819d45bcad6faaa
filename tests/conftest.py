"""Shared fixtures: a private data cache, the --runslow switch, one Ray session per test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pwfl  # noqa: F401  (first: pins the CPU kernels before any test loads PyTorch)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


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
