"""Portable arithmetic: PyTorch's CPU kernel choices pinned, so a seed gives the same bits
on every x86-64 CPU with AVX2.

PyTorch picks its CPU kernels at run time in three places, and each choice changes the
bits of a training run: ATen's own vectorised kernels (``ATEN_CPU_CAPABILITY``: AVX-512
on one host, AVX2 on the next), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``, and its
blocking follows the cache sizes) and MKL's matrix products (``MKL_CBWR``, MKL's
Conditional Numerical Reproducibility). NNPACK, PyTorch's convolution when oneDNN is
off, tiles by the cache sizes too. ``portable`` (the default of
``reproducibility.arithmetic``) therefore

- pins ATen to its AVX2 kernels, MKL to its AVX2 code path in strict CNR mode
  (``MKL_CBWR=AVX2,STRICT``, ``MKL_ENABLE_INSTRUCTIONS=AVX2``) and oneDNN to AVX2,
  all through environment variables that act only if set before the libraries load;
- turns oneDNN and NNPACK off, so convolutions run as PyTorch's own im2col + MKL GEMM;
- runs on one intra-op thread (a parallel reduction's order follows the thread count)
  with PyTorch's deterministic algorithms.

``native`` leaves every choice to the libraries: faster on some hosts, other bits on
another CPU. Usage::

    import pwfl                    # pins the kernels (before PyTorch loads)
    arithmetic.ensure("portable")  # in a process about to train: checks, sets threads

The mode travels to every process that trains or evaluates through the environment
(``PWFL_ARITHMETIC`` and the pins): Ray's actors and ``pwfl deploy``'s SuperNodes are
started with it (:func:`child_environment`), and each of them checks it before its first
training (:func:`ensure`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from importlib import metadata
from typing import Any

from pwfl import registry
from pwfl.errors import PwflError

MODES = registry.ARITHMETIC_MODES
"""The values of ``reproducibility.arithmetic`` (listed in :mod:`pwfl.registry`)."""

MODE_VARIABLE = "PWFL_ARITHMETIC"
"""The environment variable that carries the mode to child processes."""

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2,STRICT",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
"""What ``portable`` sets before PyTorch and MKL load. MKL_ENABLE_INSTRUCTIONS is pinned
too: a lower value set by the user would take MKL below the CNR branch."""

PORTABLE_CAPABILITY = "AVX2"
"""What ``torch.backends.cpu.get_cpu_capability()`` reports once ATen honours the pin."""

SAVED_VARIABLE = "PWFL_ARITHMETIC_UNPINNED"
"""The user's own values of the pinned variables (JSON), restored for ``native``."""
_unpinned_torch = False
"""PyTorch was loaded before pwfl could set the pins (a notebook that imported it first)."""


def default_mode() -> str:
    """The mode this process was started with (``PWFL_ARITHMETIC``), else ``portable``."""
    mode = os.environ.get(MODE_VARIABLE, "portable")
    return mode if mode in MODES else "portable"


def pin(mode: str) -> None:
    """Set the environment for ``mode`` before PyTorch loads; record it when too late.

    Called when pwfl is imported (with :func:`default_mode`) and again when a config is
    read (with its ``reproducibility.arithmetic``), both before anything imports
    PyTorch. Once PyTorch is loaded the kernels may already be chosen: the call then
    changes nothing, and :func:`ensure` tells whether the process can run ``mode``.
    """
    global _unpinned_torch
    if mode not in MODES:
        raise ValueError(f"unknown arithmetic mode {mode!r}; choose one of {', '.join(MODES)}")
    if "torch" in sys.modules:
        if os.environ.get(MODE_VARIABLE) is None and not _pins_in_environment():
            _unpinned_torch = True
        return
    if SAVED_VARIABLE not in os.environ:
        # The user's own values, before any pin: a child process started from a
        # portable one inherits the pins, and native must give back these instead.
        os.environ[SAVED_VARIABLE] = json.dumps({name: os.environ.get(name) for name in PINS})
    if mode == "portable":
        os.environ.update(PINS)
    else:
        for name, value in json.loads(os.environ[SAVED_VARIABLE]).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    os.environ[MODE_VARIABLE] = mode


def _pins_in_environment() -> bool:
    return all(os.environ.get(name) == value for name, value in PINS.items())


def child_environment(mode: str) -> dict[str, str]:
    """The environment variables a process started for a run in ``mode`` needs."""
    if mode == "portable":
        return {MODE_VARIABLE: mode, **PINS}
    return {MODE_VARIABLE: mode}


def portable_host() -> bool:
    """Whether this machine can run the pinned kernels: x86-64 with AVX2."""
    return platform.machine().lower() in ("x86_64", "amd64")


_ensured: str | None = None


def ensure(mode: str) -> None:
    """Make this process run ``mode``, or stop with one line saying why it cannot.

    For ``portable``: the pins must have been in the environment before PyTorch loaded,
    and ATen must report its AVX2 kernels; then oneDNN and NNPACK are turned off, the
    intra-op threads set to one and PyTorch's deterministic algorithms switched on. On a
    host that is not x86-64 (ARM) there are no AVX2 kernels to pin: the run goes on with
    one thread and deterministic algorithms, and its provenance says which capability
    ran (its bits are that architecture's, not the committed tables').

    Raises
    ------
    PwflError
        When PyTorch was loaded before the pins were set, or with the other mode.
    """
    global _ensured
    if _ensured == mode:
        return
    import torch

    running = os.environ.get(MODE_VARIABLE, "native")
    if mode == "portable":
        if _unpinned_torch or running != "portable" or not _pins_in_environment():
            raise PwflError(_too_late("portable"))
        capability = torch.backends.cpu.get_cpu_capability()
        if portable_host() and capability != PORTABLE_CAPABILITY:
            raise PwflError(
                f"portable arithmetic needs PyTorch's AVX2 kernels, but this process runs "
                f"{capability} (a CPU without AVX2, or kernels chosen before pwfl loaded); "
                f'set reproducibility.arithmetic = "native"'
            )
        if not portable_host():
            logging.getLogger("pwfl").warning(
                "portable arithmetic pins x86-64 AVX2 kernels; this %s host has none, so the "
                "run is deterministic here but its bits are this architecture's own",
                platform.machine(),
            )
        # torch types this flag as its descriptor class, not the bool it sets.
        torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
        torch.backends.nnpack.set_flags(False)
        torch.set_num_threads(1)
        _deterministic_algorithms()
    elif running == "portable" and _pins_in_environment():
        raise PwflError(_too_late("native"))
    _ensured = mode


def _deterministic_algorithms() -> None:
    """Switch PyTorch's deterministic algorithms on, as ``torch.use_deterministic_algorithms``
    does, without importing its compiler.

    That function also sets the flag of TorchInductor (PyTorch's compiler) and imports
    it to do so: about 1.5 s of TorchDynamo and Inductor modules in every process that
    trains, for a compiler pwfl never calls. The flag that eager kernels read is set
    here directly; a compiler imported later reads its own from
    ``TORCHINDUCTOR_DETERMINISTIC``, and one already imported is set as PyTorch would.
    """
    import torch

    torch._C._set_deterministic_algorithms(True, warn_only=False)
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = True  # type: ignore[attr-defined]
    else:
        os.environ.setdefault("TORCHINDUCTOR_DETERMINISTIC", "1")


def _too_late(mode: str) -> str:
    return (
        f'reproducibility.arithmetic = "{mode}" must be chosen before PyTorch loads, and '
        f"this process loaded it with other kernel settings; import pwfl before torch "
        f"(restart the notebook's kernel), or run the experiment with the pwfl command"
    )


def provenance(mode: str) -> dict[str, Any]:
    """What produced a run's numbers: the mode, the kernels and the library versions."""
    import torch

    from pwfl.training import TrainSettings

    versions = {}
    for package in ("torch", "numpy", "flwr", "ray", "flwr-datasets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = ""
    return {
        "arithmetic": mode,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        # What training and evaluation run on (pwfl.training sets it for each call),
        # not the process default PyTorch starts with.
        "intra_op_threads": TrainSettings().num_threads,
        "onednn": bool(torch.backends.mkldnn.enabled),
        **{f"{name}_version": version for name, version in versions.items()},
    }


def provenance_header(record: dict[str, Any]) -> str:
    """The provenance as TOML comment lines, for the top of a run's ``config.toml``."""
    lines = [f"# {key} = {value}" for key, value in record.items()]
    return "# Provenance of this run's numbers (pwfl.arithmetic):\n" + "\n".join(lines) + "\n\n"
