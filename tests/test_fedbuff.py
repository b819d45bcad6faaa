"""FedBuff (Nguyen et al., AISTATS 2022) as a policy of the round engine: its staleness-
weighted step by hand, on the scripted federation, and end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pwfl.aggregation import buffered_step
from pwfl.config import load_config
from pwfl.errors import ConfigError
from pwfl.runner import run_experiment
from pwfl.strategies.fedbuff import staleness_weight

from .conftest import CONFIGS
from .scripted import FAST_LINKS, run_scripted


def test_staleness_weight_is_polynomial():
    assert staleness_weight(0, 0.5) == 1.0
    assert staleness_weight(3, 0.5) == pytest.approx(0.5)
    assert staleness_weight(8, 1.0) == pytest.approx(1 / 9)
    assert staleness_weight(5, 0.0) == 1.0  # exponent 0: staleness ignored


def test_buffered_step_by_hand():
    base = {"w": np.array([1.0, 2.0], dtype=np.float32), "n": np.array(4, dtype=np.int64)}
    deltas = [
        ({"w": np.array([1.0, 1.0], dtype=np.float32), "n": np.array(2.0)}, 0.5),
        ({"w": np.array([3.0, -1.0], dtype=np.float32), "n": np.array(4.0)}, 0.25),
    ]
    out = buffered_step(deltas, base, server_lr=2.0)
    # w + 2 * (0.5 * [1, 1] + 0.25 * [3, -1]) = [1, 2] + 2 * [1.25, 0.25] = [3.5, 2.5]
    np.testing.assert_allclose(out["w"], [3.5, 2.5])
    assert out["w"].dtype == np.float32
    # counters: 4 + 2 * (0.5 * 2 + 0.25 * 4) = 8, back to int64
    assert out["n"].dtype == np.int64 and int(out["n"]) == 8


def test_running_statistics_become_the_weighted_mean_of_the_clients_values():
    """A variance is not stepped by deltas (a stale one could take it below zero): the
    update carries the client's own value and the step is their weighted mean."""
    base = {"var": np.array([0.1], dtype=np.float32), "w": np.array([0.0], dtype=np.float32)}
    updates = [
        ({"var": np.array([0.2], dtype=np.float32), "w": np.array([1.0], dtype=np.float32)}, 0.5),
        ({"var": np.array([0.5], dtype=np.float32), "w": np.array([2.0], dtype=np.float32)}, 0.25),
    ]
    out = buffered_step(updates, base, server_lr=1.0, statistics=frozenset({"var"}))
    # (0.5 * 0.2 + 0.25 * 0.5) / 0.75 = 0.3; the parameter steps: 0 + 0.5 + 0.5 = 1
    np.testing.assert_allclose(out["var"], [0.3], rtol=1e-6)
    np.testing.assert_allclose(out["w"], [1.0])


def scripted_fedbuff(clients: int):
    """FedBuff on a scripted federation: every client always busy, two updates per step,
    no transfer time, each client's compute as scripted."""
    return load_config(
        None,
        [
            "strategy.name=fedbuff",
            f"data.num_clients={clients}",
            "strategy.min_train_nodes=1",
            f"strategy.fedbuff.concurrency={clients}",
            "strategy.fedbuff.buffer_size=2",
            "strategy.num_rounds=2",
            "strategy.executor=serial",
            "checkpoint.every=0",
            "clock.compute=measured",
            *FAST_LINKS,
        ],
    )


def test_fedbuff_on_the_scripted_federation_takes_the_hand_computed_steps():
    """Two clients, both always busy (concurrency 2), two updates per step; the step
    takes effect when the buffer fills (Algorithm 1): the client sent next gets it.

    Client 0 takes 1 s, client 1 takes 2.5 s; every client adds 1 to what it gets.
    t=0: both are sent w = 0 (version 0).
    t=1: client 0's fresh update; it is sent w = 0 again.
    t=2: client 0's second fresh update fills the buffer: step 1, w = 0 + (1 + 1)/2 = 1;
    client 0 is sent the stepped w = 1 (version 1).
    t=2.5: client 1's update (sent at version 0) is one step old: weight 2^-0.5; its
    delta is 1. Client 1 is sent w = 1.
    t=3: client 0's update (sent at version 1) is fresh: delta 1. Step 2:
    w = 1 + (2^-0.5 + 1)/2, the last. Client 1, sent at 2.5, is still training: unused.
    """
    cfg = scripted_fedbuff(clients=2)
    rows, result = run_scripted(cfg, lambda client, _: 1.0 if client == 0 else 2.5, size=3)
    np.testing.assert_allclose(result.weight_sets["0"]["w"], [1 + (2**-0.5 + 1) / 2] * 3, rtol=1e-6)
    rounds, clients, server = rows.frames()
    assert rounds["round"].tolist() == [1, 2]
    assert rounds["status"].tolist() == ["ok", "ok"]
    assert rounds["num_clients"].tolist() == [2, 2]
    # The steps were taken when the second update of each buffer arrived.
    assert server["busy_start_s"].tolist() == pytest.approx([2.0, 3.0])
    train = clients[clients["phase"] == "train"].sort_values(["sim_start_s", "client"])
    assert train["client"].tolist() == [0, 1, 0, 0, 1]
    assert train["sim_start_s"].tolist() == pytest.approx([0.0, 0.0, 1.0, 2.0, 2.5])
    # The step each message was sent with (the model version + 1) and the step that
    # used its update; the last was still out when the run ended.
    assert train["sent_round"].tolist() == [1, 1, 1, 2, 2]
    assert train["round"].tolist() == [1, 2, 1, 2, 2]
    assert train["status"].tolist() == ["ok", "ok", "ok", "ok", "unused"]
    assert train["aggregated"].tolist() == [True, True, True, True, False]
    # Steps since sending: client 1's first update is one step old, the rest fresh.
    assert train["staleness"].tolist()[:4] == [0, 1, 0, 0]


def test_fedbuff_prices_its_step_as_a_group_aggregation_int8_included(tmp_path):
    """A server step reads each buffered update as it came (its bytes_up) and decodes a
    compressed one, exactly as a group's aggregation is priced."""
    from pwfl.clock import aggregation_bytes, aggregation_seconds
    from pwfl.models import build_model

    cfg = load_config(
        CONFIGS / "tiny.toml",
        [
            "strategy.name=fedbuff",
            "strategy.fedbuff.concurrency=2",
            "strategy.fedbuff.buffer_size=2",
            "strategy.num_rounds=2",
            "comm.compression=int8",
        ],
    )
    run_experiment(cfg, tmp_path, quiet=True)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    train = pd.read_csv(tmp_path / "clients.csv").query("phase == 'train' and aggregated")
    state = build_model(cfg.model.name).state_dict()  # mnist: 1 x 28 x 28, 10 classes
    model = sum(v.numel() * v.element_size() for v in state.values())
    for _, row in rounds.iterrows():
        payloads = train.loc[train["round"] == row["round"], "bytes_up"].tolist()
        assert len(payloads) == 2
        expected = aggregation_seconds(
            aggregation_bytes(payloads, model, compressed=True), cfg.server.memory_gbps
        )
        assert row["aggregate_s"] == pytest.approx(expected)


def test_replies_that_fill_two_buffers_at_once_are_recorded_with_their_own_steps():
    """Four clients answer at t=1 together with a buffer of two: two steps, two replies each."""
    cfg = scripted_fedbuff(clients=4)
    rows, _ = run_scripted(cfg, lambda client, _: 1.0, size=3)
    rounds, clients, _ = rows.frames()
    assert rounds["round"].tolist() == [1, 2]
    assert rounds["num_clients"].tolist() == [2, 2]
    # The last step's messages include the three the run ended without using.
    assert rounds["num_sent"].tolist() == [2, 5]
    train = clients[clients["phase"] == "train"]
    used = train[train["aggregated"].astype(bool)]
    assert sorted(used["client"]) == [0, 1, 2, 3] and (used["status"] == "ok").all()
    assert used.groupby("round").size().tolist() == [2, 2]
    # The three clients sent again at t=1 were still training when the last step came.
    unused = train[train["status"] == "unused"]
    assert len(unused) == 3 and (unused["round"] == 2).all()
    assert not unused["aggregated"].astype(bool).any()


def test_fedbuff_learns_end_to_end_and_no_client_trains_twice_at_once(tmp_path):
    cfg = load_config(
        CONFIGS / "tiny.toml",
        [
            "strategy.name=fedbuff",
            "strategy.fedbuff.concurrency=3",
            "strategy.fedbuff.buffer_size=2",
            "strategy.num_rounds=4",
            "clients.profile=tiers",
            "clients.tiers=0.75:1.0,0.25:0.2",
        ],
    )
    run_experiment(cfg, tmp_path, quiet=True)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["round"].tolist() == [1, 2, 3, 4]
    # Learnt: well above chance (0.1). Not "above the first update": a buffer of two
    # one-epoch updates can already reach 0.8, depending on the seed's draws.
    assert rounds["accuracy"].iloc[-1] > 0.5
    assert rounds["sim_time_s"].is_monotonic_increasing
    train = pd.read_csv(tmp_path / "clients.csv").query("phase == 'train'")
    for _, mine in train.sort_values("sim_start_s").groupby("client"):
        assert (
            mine["sim_start_s"].to_numpy()[1:] >= mine["sim_end_s"].to_numpy()[:-1] - 1e-9
        ).all()
    in_flight = [
        ((train["sim_start_s"] <= t) & (train["sim_end_s"] > t)).sum()
        for t in np.linspace(0, rounds["sim_time_s"].max(), 50)
    ]
    assert max(in_flight) <= 3  # concurrency


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("strategy.fedbuff.concurrency=5", "strategy.fedbuff.concurrency"),
        ("strategy.aggregator=median", "strategy.aggregator"),
        ("strategy.server_opt=fedadam", "strategy.server_opt"),
    ],
)
def test_fedbuff_settings_that_cannot_be_meant_are_refused(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(CONFIGS / "tiny.toml", ["strategy.name=fedbuff", override])


def test_a_client_sent_twice_in_one_step_trains_other_batches(tmp_path):
    """FedBuff can send a client a second job before the step its first one fed: the
    two jobs are of one (step, client, set) but must not be one update counted twice."""
    cfg = load_config(
        CONFIGS / "tiny.toml",
        [
            "strategy.name=fedbuff",
            "strategy.fedbuff.concurrency=2",
            "strategy.fedbuff.buffer_size=3",
            "strategy.num_rounds=3",
            "simulation.backend=inline",
            "checkpoint.every=0",
        ],
    )
    run_experiment(cfg, tmp_path / "run", quiet=True)
    clients = pd.read_csv(tmp_path / "run" / "clients.csv")
    used = clients[(clients["phase"] == "train") & clients["aggregated"].fillna(False)]
    repeated = used[used.duplicated(["client", "sent_round"], keep=False)]
    assert len(repeated) >= 2  # the case this test is about happens here
    assert not repeated.duplicated(["client", "sent_round", "loss"]).any()
