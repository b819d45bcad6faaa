"""FedAsync (Xie et al., 2019) as a policy of the round engine: its mixing rule by hand,
a three-update run on the scripted federation, its settings table, and end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pwfl.config import load_config
from pwfl.errors import ConfigError
from pwfl.runner import run_experiment
from pwfl.strategies.fedasync import mix

from .conftest import CONFIGS
from .scripted import FAST_LINKS, run_scripted


def test_mix_is_the_convex_combination_and_keeps_integer_counters():
    base = {"w": np.array([1.0, 3.0], dtype=np.float32), "n": np.array(4, dtype=np.int64)}
    new = {"w": np.array([3.0, -1.0], dtype=np.float32), "n": np.array(9, dtype=np.int64)}
    out = mix([(new, 10.0)], base, weight=0.25)
    # 0.75 * [1, 3] + 0.25 * [3, -1] = [1.5, 2.0]
    np.testing.assert_allclose(out["w"], [1.5, 2.0])
    assert out["w"].dtype == np.float32
    assert out["n"].dtype == np.int64 and int(out["n"]) == 9


def scripted_fedasync(**settings: float):
    return load_config(
        None,
        [
            "strategy.name=fedasync",
            "data.num_clients=2",
            "strategy.min_train_nodes=1",
            "strategy.num_rounds=3",
            "strategy.executor=serial",
            "checkpoint.every=0",
            "clock.compute=measured",
            *FAST_LINKS,
            "strategy.fedasync.concurrency=2",
            *[f"strategy.fedasync.{k}={v}" for k, v in settings.items()],
        ],
    )


def test_fedasync_on_the_scripted_federation_takes_the_hand_computed_updates():
    """Two clients always busy; client 0 takes 1 s and adds 1 to what it gets, client 1
    takes 2.5 s and adds 4. alpha = 0.5, a = 1: s(tau) = 1 / (tau + 1).

    t=0:   both are sent w = 0 (version 0).
    t=1:   client 0 sends 1, fresh: w1 = 0.5 * 0 + 0.5 * 1 = 0.5; it is sent 0.5.
    t=2:   client 0 sends 1.5, fresh: w2 = 0.5 * 0.5 + 0.5 * 1.5 = 1.0; it is sent 1.0.
    t=2.5: client 1 sends 0 + 4 = 4, two updates old: alpha_t = 0.5 / 3,
           w3 = (5/6) * 1.0 + (1/6) * 4 = 1.5, the last of three updates; client 0,
           sent at t=2, is still training (unused), and nobody is sent the last model.
    """
    cfg = scripted_fedasync(alpha=0.5, staleness_exponent=1.0)
    rows, result = run_scripted(
        cfg,
        lambda client, _: 1.0 if client == 0 else 2.5,
        size=3,
        step=lambda client, _: 1.0 if client == 0 else 4.0,
    )
    np.testing.assert_allclose(result.weight_sets["0"]["w"], [1.5] * 3, rtol=1e-6)
    rounds, clients, server = rows.frames()
    assert rounds["round"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(rounds["accuracy"], [0.5, 1.0, 1.5], rtol=1e-6)
    assert rounds["num_clients"].tolist() == [1, 1, 1]
    assert server["busy_start_s"].tolist() == pytest.approx([1.0, 2.0, 2.5])
    train = clients[clients["phase"] == "train"].sort_values(["sim_start_s", "client"])
    assert train["client"].tolist() == [0, 1, 0, 0]
    assert train["sim_start_s"].tolist() == pytest.approx([0.0, 0.0, 1.0, 2.0])
    assert train["status"].tolist() == ["ok", "ok", "ok", "unused"]
    assert train["staleness"].tolist()[:3] == [0, 2, 0]


def test_fedasync_settings_live_in_its_own_table():
    cfg = load_config(None, ["strategy.name=fedasync", "strategy.fedasync.alpha=0.9"])
    assert cfg.strategy.table("fedasync") == {"alpha": 0.9}
    assert "[strategy.fedasync]" in cfg.to_toml()
    again = load_config(None, []).with_overrides(["strategy.name=fedasync"])
    assert again.strategy.table("fedasync") == {}
    with pytest.raises(ConfigError, match="did you mean 'strategy.fedasync.alpha'"):
        load_config(None, ["strategy.name=fedasync", "strategy.fedasync.alfa=0.9"])
    with pytest.raises(ConfigError, match=r"strategy.fedasync.alpha' = 1.5 is invalid"):
        load_config(None, ["strategy.name=fedasync", "strategy.fedasync.alpha=1.5"])
    with pytest.raises(ConfigError, match="strategy.fedasync.concurrency"):
        load_config(
            None,
            ["strategy.name=fedasync", "data.num_clients=4", "strategy.fedasync.concurrency=5"],
        )
    with pytest.raises(ConfigError, match="aggregates its own way"):
        load_config(None, ["strategy.name=fedasync", "strategy.aggregator=median"])


def test_fedasync_end_to_end(tmp_path):
    cfg = load_config(CONFIGS / "tiny.toml", ["strategy.name=fedasync", "strategy.num_rounds=3"])
    run_experiment(cfg, tmp_path, quiet=True)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["round"].tolist() == [1, 2, 3]
    assert (rounds["num_clients"] == 1).all()
    assert rounds["accuracy"].notna().all()
