"""Flower's server optimisers applied per weight set, against hand-computed steps."""

from __future__ import annotations

import numpy as np
import pytest

from pwfl.config import ConfigError, load_config
from pwfl.strategies.server_optimizer import ServerOptimizer


def optimizer(*overrides: str) -> ServerOptimizer:
    return ServerOptimizer(load_config(None, list(overrides)).strategy)


def arrays(w: float, n: int = 5) -> dict[str, np.ndarray]:
    return {"w": np.full(3, w, dtype=np.float32), "n": np.array(n)}


def test_fedavgm_momentum_by_hand():
    opt = optimizer("strategy.server_opt=fedavgm", "strategy.server_momentum=0.9")
    # Step 1: pseudo-gradient old - new = -1, momentum = -1, new = 0 + 1 = 1.
    first = opt.step(1, arrays(0.0), arrays(1.0, 7))
    np.testing.assert_allclose(first["w"], 1.0)
    # Step 2: gradient 1 - 2 = -1, momentum 0.9 * -1 - 1 = -1.9, new = 1 + 1.9.
    second = opt.step(2, first, arrays(2.0))
    np.testing.assert_allclose(second["w"], 2.9, rtol=1e-6)
    assert second["n"].dtype == np.int64 and second["w"].dtype == np.float32


def test_fedadagrad_first_step_by_hand():
    opt = optimizer("strategy.server_opt=fedadagrad", "strategy.server_lr=0.1")
    # delta = 1, m = delta (beta_1 = 0), v = delta**2, step = eta * m / (sqrt(v) + tau).
    new = opt.step(1, arrays(0.0), arrays(1.0))
    np.testing.assert_allclose(new["w"], 0.1 / (1 + 1e-3), rtol=1e-6)


def test_each_weight_set_keeps_its_own_state():
    a = optimizer("strategy.server_opt=fedavgm", "strategy.server_momentum=0.9")
    b = optimizer("strategy.server_opt=fedavgm", "strategy.server_momentum=0.9")
    a.step(1, arrays(0.0), arrays(1.0))  # only a has momentum now
    moved_a = a.step(2, arrays(1.0), arrays(2.0))["w"]
    moved_b = b.step(1, arrays(1.0), arrays(2.0))["w"]
    assert moved_a[0] == pytest.approx(2.9) and moved_b[0] == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["fedadam", "fedyogi"])
def test_adaptive_optimisers_move_towards_the_aggregate(name):
    opt = optimizer(f"strategy.server_opt={name}")
    new = opt.step(1, arrays(0.0), arrays(1.0))
    assert 0 < new["w"][0] < 1


def test_fedavg_strategy_rejects_a_server_optimiser():
    with pytest.raises(ConfigError, match="strategy.server_opt"):
        load_config(None, ["strategy.name=fedavg", "strategy.server_opt=fedadam"])
