"""Reading and validating a config loads neither Flower nor PyTorch nor Ray."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT

HEAVY = ("flwr", "torch", "ray")


def _loaded_after(call: str) -> list[str]:
    """The heavy modules in a fresh interpreter's ``sys.modules`` after ``call``."""
    code = (
        "import json, sys\n"
        "from pwfl.config import load_config\n"
        f"cfg = {call}\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "call",
    [
        "load_config('experiments/configs/quick.toml')",
        # [[weight_set]] tables, each set validated as its own config.
        "load_config('experiments/configs/lr_search.toml')",
        "load_config('experiments/configs/quick.toml', ['strategy.k=3', 'model.name=mlp'])",
        "load_config('experiments/configs/lr_search.toml', ['weight_set.1.model.name=mlp'])",
        "load_config(None).with_overrides(['strategy.name=fedbuff']).to_toml()",
    ],
)
def test_loading_a_config_imports_no_flower_torch_or_ray(call):
    assert _loaded_after(call) == []


def test_the_check_the_config_leaves_out_is_made_where_the_model_is_built():
    from pwfl.config import ConfigError, load_config
    from pwfl.data import check_inputs

    # The CNN needs images; the config alone accepts it, building it does not.
    cfg = load_config(None, ["data.name=synthetic"])
    with pytest.raises(ConfigError) as info:
        check_inputs(cfg)
    assert str(info.value).startswith(
        "config key 'model.name' = 'cnn' does not fit data.name = 'synthetic': "
    )
    assert "\n" not in str(info.value)
    check_inputs(cfg.with_overrides(["model.name=mlp"]))  # fits: no error


def test_a_weight_set_whose_model_does_not_fit_is_named(tmp_path):
    from pwfl.config import ConfigError, load_config
    from pwfl.data import check_inputs

    path = tmp_path / "sets.toml"
    path.write_text(
        '[data]\nname = "synthetic"\n[model]\nname = "mlp"\n'
        '[[weight_set]]\nname = "linear"\n[[weight_set]]\nname = "conv"\nmodel.name = "cnn"\n'
    )
    with pytest.raises(ConfigError, match=r"^weight set 1 \(conv\): config key 'model.name'"):
        check_inputs(load_config(path))
