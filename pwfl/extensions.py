"""Your own code by dotted path, found from the working directory as ``python -m`` finds it.

Four config keys take a dotted path ``package.module:function`` (or
``package.module.function``) instead of a registered name::

    strategy.aggregator = "mylab.agg:mean"    # (updates) -> arrays, pwfl.aggregation
    model.name = "mylab.nets:make"            # (input_shape, num_classes) -> nn.Module
    data.name = "mylab.data:load"             # () -> (x_train, y_train, x_test, y_test)
    train.step = "mylab.steps:prox"           # (model, inputs, targets, context) -> loss

``mylab/`` is looked up in the working directory first, then on ``sys.path``:
:func:`load_callable` puts the working directory at the front of this
process's path, and every process pwfl starts for the run (Ray's client actors
and aggregation tasks, Flower's SuperNodes) gets it first on its ``PYTHONPATH``
(:func:`search_path`). This module never imports Flower or PyTorch.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


def is_dotted(name: str) -> bool:
    """Whether ``name`` is a dotted path rather than a registered name (which has no
    ``.`` or ``:``)."""
    return ":" in name or "." in name


def working_dir_on_path() -> None:
    """Put the working directory first on ``sys.path`` (once), as ``python -m`` does."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path[:1]:
        sys.path.insert(0, here)


def search_path() -> str:
    """``PYTHONPATH`` for the processes a run starts: the working directory first, then
    this process's own ``PYTHONPATH``."""
    entries = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    seen: list[str] = []
    for entry in entries:
        if entry and entry not in seen:
            seen.append(entry)
    return os.pathsep.join(seen)


def load_callable(spec: str, what: str) -> Any:
    """Import the function that ``spec`` names (``package.module:function``).

    Parameters
    ----------
    spec
        The dotted path; the part after ``:`` may itself be dotted (``Class.method``).
    what
        What it is, for the error message: ``"model"``, ``"aggregator"``, ...

    Raises
    ------
    ValueError
        With one line naming ``spec`` and the problem: not a dotted path, the module
        missing or failing to import, the attribute missing, or not callable.
    """
    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"cannot load {what} '{spec}': expected 'package.module:function'")
    working_dir_on_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ValueError(
            f"cannot load {what} '{spec}': no module named '{err.name}' (looked for in "
            f"{os.getcwd()} and on sys.path)"
        ) from None
    except Exception as err:
        problem = " ".join(str(err).split())
        raise ValueError(
            f"cannot load {what} '{spec}': importing '{module_name}' raised "
            f"{type(err).__name__}: {problem}"
        ) from err
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise ValueError(
                f"cannot load {what} '{spec}': module '{module_name}' has no attribute '{attr}'"
            )
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(
            f"cannot load {what} '{spec}': '{attr}' is not callable ({type(found).__name__})"
        )
    return found
