"""Portable arithmetic: the same bits whichever instruction set the host's libraries
would pick, also through Ray's actors; native arithmetic follows the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from pwfl import arithmetic

from .conftest import has_avx2

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "tests" / "arithmetic_probe.py"

OTHER_HOST = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
}
"""What a host without AVX2 would make the three libraries choose: ATen's scalar
kernels, oneDNN's SSE4.1 code and MKL's SSE4.2 branch. Any x86-64 CPU runs them."""


needs_avx2 = pytest.mark.skipif(not has_avx2(), reason="portable arithmetic pins x86-64 AVX2")


def _environment(mode: str, other_host: bool) -> dict[str, str]:
    dropped = (*arithmetic.PINS, arithmetic.SAVED_VARIABLE, "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env[arithmetic.MODE_VARIABLE] = mode
    env["PYTHONPATH"] = str(ROOT)
    if other_host:
        env.update(OTHER_HOST)
    return env


def _probe(mode: str, other_host: bool) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(PROBE)],
        env=_environment(mode, other_host),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ran, capability, digest = done.stdout.split()
    assert ran == mode
    return capability, digest


@needs_avx2
def test_native_follows_the_instruction_set_and_portable_does_not():
    native_here, native_there = _probe("native", False), _probe("native", True)
    portable_here, portable_there = _probe("portable", False), _probe("portable", True)
    # The emulated host really runs other kernels, and they give other bits ...
    assert native_there[0] == "DEFAULT" != native_here[0]
    assert native_here[1] != native_there[1]
    # ... unless the arithmetic is portable: both processes ran AVX2, with one result.
    assert portable_here == portable_there
    assert portable_here[0] == arithmetic.PORTABLE_CAPABILITY


@needs_avx2
def test_portable_run_through_ray_actors_matches_the_inline_run(tmp_path):
    """A Ray run whose driver starts as the other host (its actors inherit the pins)
    gives the records of an inline run started as this host."""
    runs = {}
    for backend, other in (("inline", False), ("ray", True)):
        out = tmp_path / backend
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pwfl",
                "run",
                "--quiet",
                "--config",
                str(ROOT / "experiments" / "configs" / "tiny.toml"),
                "--set",
                f"simulation.backend={backend}",
                "--set",
                "strategy.executor=threads",
                # 100 resampled examples per client: the records compared stay whole.
                "--set",
                "data.partitioner=resample",
                "--set",
                "data.examples_per_client=100",
                "--out",
                str(out),
            ],
            env=_environment("portable", other),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        runs[backend] = pd.read_csv(out / "rounds.csv")
        provenance = json.loads((out / "summary.json").read_text())["provenance"]
        assert provenance["arithmetic"] == "portable"
        assert provenance["cpu_capability"] == arithmetic.PORTABLE_CAPABILITY
        assert provenance["torch_version"]
        header = (out / "config.toml").read_text()
        assert "# arithmetic = portable" in header
        assert tomllib.loads(header)["reproducibility"]["arithmetic"] == "portable"
    for column in ("accuracy", "loss", "client_accuracy", "train_loss"):
        assert runs["ray"][column].tolist() == runs["inline"][column].tolist(), column


def test_torch_loaded_before_pwfl_is_refused_in_one_line():
    code = (
        "import torch; torch.ones(2) + 1\n"
        "from pwfl import arithmetic\n"
        "from pwfl.errors import PwflError\n"
        "try:\n"
        "    arithmetic.ensure('portable')\n"
        "except PwflError as err:\n"
        "    print(err)\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (*arithmetic.PINS, arithmetic.SAVED_VARIABLE)
    }
    env.pop(arithmetic.MODE_VARIABLE, None)
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "before PyTorch loads" in lines[0] and "import pwfl before torch" in lines[0]


def test_a_native_config_read_before_torch_undoes_the_pins():
    code = (
        "import os, pwfl\n"
        "assert os.environ['ATEN_CPU_CAPABILITY'] == 'avx2'\n"
        "from pwfl.config import load_config\n"
        "load_config(None, ['reproducibility.arithmetic=native', 'model.name=mlp'])\n"
        "print(os.environ.get('ATEN_CPU_CAPABILITY'), os.environ['PWFL_ARITHMETIC'])\n"
    )
    env = _environment("portable", False)
    env["ATEN_CPU_CAPABILITY"] = "default"  # the user's own choice comes back
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["default", "native"]


def test_unknown_mode_is_a_one_line_config_error():
    from pwfl.config import load_config
    from pwfl.errors import ConfigError

    with pytest.raises(ConfigError, match="reproducibility.arithmetic") as err:
        load_config(None, ["reproducibility.arithmetic=fast"])
    assert "\n" not in str(err.value)
