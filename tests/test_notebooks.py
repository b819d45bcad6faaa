"""Every notebook runs top to bottom on a tiny setting, in a kernel of this interpreter."""

from __future__ import annotations

import json
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import CONFIGS, ROOT

NOTEBOOKS = ROOT / "notebooks"
TINY = str(CONFIGS / "tiny.toml")
KERNEL = "pwfl-test"
SMALL = ["data.partitioner=resample", "data.examples_per_client=100"]
"""100 resampled training examples per client: each run a second or two, not ten."""


def tiny_settings(tmp) -> dict[str, dict]:
    """Per notebook, the values that replace its ``parameters`` cell: seconds, not minutes."""
    return {
        "01_quickstart.ipynb": {"CONFIG": TINY, "OVERRIDES": SMALL, "OUT": str(tmp / "run")},
        "02_pwfl_vs_baselines.ipynb": {
            "COMPARISON": str(tmp / "compare"),  # empty: the notebook runs the comparison
            "CONFIG": TINY,
            "OVERRIDES": SMALL,
            "STRATEGIES": ["fedavg", "pwfl"],
            "SEEDS": [0],
        },
        "03_heterogeneity.ipynb": {
            "OUT": str(tmp / "heterogeneity"),
            "CONFIG": TINY,
            # One of the four tiny clients computes five times slower.
            "OVERRIDES": [*SMALL, "clients.profile=tiers", "clients.tiers=0.75:1.0,0.25:0.2"],
            "STRATEGIES": ["pwfl"],
            "VARY": "stragglers.load_balancing=off,proportional",
            "SEEDS": [0],
            "RERUN": True,
        },
        "04_federated_search.ipynb": {
            "CONFIG": str(CONFIGS / "lr_search.toml"),
            # Four sets of two clients, two rounds, the small CNN, no Ray: seconds.
            "OVERRIDES": [
                *SMALL,
                "data.num_clients=8",
                "strategy.num_rounds=2",
                "model.name=small-cnn",
                "simulation.backend=inline",
            ],
            "OUT": str(tmp / "search"),
        },
        "05_multi_task.ipynb": {
            "CONFIG": str(CONFIGS / "mmfl_three_tasks.toml"),
            # Two clients per task, two rounds, one seed: seven runs of about a second.
            "OVERRIDES": [*SMALL, "data.num_clients=6", "strategy.num_rounds=2"],
            "SEEDS": [0],
            "OUT": str(tmp / "mmfl"),
            "RERUN": True,
        },
    }


NAMES = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def parameters_cell(notebook) -> int:
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return tagged[0]


@pytest.fixture
def kernel_of_this_python(tmp_path, monkeypatch) -> str:
    """A kernelspec that starts this interpreter, so the kernel imports what the tests import.

    It lives in a private folder on ``JUPYTER_PATH``: a user's own ``python3``
    kernelspec (another Python) cannot take its place.
    """
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "pwfl tests", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # The kernel starts its own Ray session, not one this process may hold.
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return KERNEL


def test_every_notebook_has_tiny_settings(tmp_path):
    assert NAMES == sorted(tiny_settings(tmp_path))


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    parameters_cell(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, tmp_path, kernel_of_this_python):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    settings = tiny_settings(tmp_path)[name]
    # Like papermill: a cell after the parameters cell overrides them.
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in settings.items()))
    notebook.cells.insert(parameters_cell(notebook) + 1, injected)
    client = NotebookClient(
        notebook,
        kernel_name=kernel_of_this_python,
        timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # cwd, as in Jupyter
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # figures were drawn
