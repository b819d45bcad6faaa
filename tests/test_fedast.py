"""FedAST (Askin et al., UAI 2024): a buffer per task, one pool of client slots, shares
that follow the tasks' update variance; by hand, on the scripted federation, end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pwfl.config import ConfigError, load_config
from pwfl.invariants import check_run
from pwfl.runner import run_experiment
from pwfl.seeding import rng_for
from pwfl.strategies.fedast import FedAST, _apportion, relative_variance

from .conftest import CONFIGS
from .scripted import FAST_LINKS, run_scripted
from .test_tasks import three_tasks

TINY = CONFIGS / "tiny.toml"


def test_relative_variance_by_hand():
    deltas = [{"w": np.array([1.0, 0.0])}, {"w": np.array([3.0, 0.0])}]
    # mean [2, 0]; sum ||d - mean||^2 = 1 + 1 = 2; n ||mean||^2 = 2 * 4 = 8
    assert relative_variance(deltas) == pytest.approx(0.25)
    same = [{"w": np.array([1.0, 2.0]), "bn": np.array([9.0])}] * 3
    assert relative_variance(same, frozenset({"bn"})) == 0.0
    # Biases are left out, as the reference code leaves them out.
    with_bias = [{**d, "fc.bias": np.array([float(i)])} for i, d in enumerate(deltas)]
    assert relative_variance(with_bias) == pytest.approx(0.25)
    assert math.isnan(relative_variance([{"w": np.zeros(2)}]))


def test_slots_are_apportioned_by_largest_remainder_with_one_each():
    assert _apportion(10, [1.0, 1.0, 1.0], [True] * 3) == [4, 3, 3]
    # One each, then 7 by 0.7 / 0.2 / 0.1: 4.9, 1.4, 0.7 -> floors 4, 1, 0, and the 2 left
    # by the largest remainders (0.9 and 0.7; 0.4 misses): 5, 1, 1 -> 6, 2, 2
    assert _apportion(10, [0.7, 0.2, 0.1], [True] * 3) == [6, 2, 2]
    assert _apportion(6, [5.0, 1.0, 1.0], [False, True, True]) == [0, 3, 3]
    assert sum(_apportion(7, [0.01, 100.0], [True, True])) == 7


def scripted_fedast(*extra: str):
    """Two tasks (weight sets) on two scripted clients, both always busy, no transfers."""
    return load_config(
        None,
        [
            "strategy.name=fedast",
            "strategy.k=2",
            "data.num_clients=2",
            "strategy.min_train_nodes=1",
            "strategy.fedast.concurrency=2",
            "strategy.fedast.buffer_size=1",
            "strategy.fedast.staleness_exponent=0.5",
            "strategy.fedast.realloc=none",
            "strategy.num_rounds=2",
            "strategy.executor=serial",
            "checkpoint.every=0",
            "clock.compute=measured",
            *FAST_LINKS,
            *extra,
        ],
    )


def test_fedast_on_the_scripted_federation_takes_the_hand_computed_steps():
    """Client 0 takes 1 s, client 1 2.5 s; every client adds 1 to what it gets; one
    update per step. Each task starts with one slot of two.

    t=0: the first slot goes to task 0 (ties to the lower set), to a client drawn from
    the seed; the second to task 1, the other client. Call task A client 0's, B client 1's.
    t=1: A steps (w_A = 0.1, eta 0.1); A is one slot short, client 0 the one free: A again.
    t=2: A's second step, its last (w_A = 0.2): its two slots go to B; client 0 trains B
    from w_B = 0 (B's version 0).
    t=2.5: client 1's update: B steps (w_B = 0.1); client 1 trains B again.
    t=3: client 0's update is one step of B old: weight 2^-0.5, w_B = 0.1 + 0.1 x 2^-0.5,
    B's last.
    The run ends; client 1 is still training: unused.
    """
    cfg = scripted_fedast()
    first = int(rng_for(cfg.seed, "fedast-sample", 0).choice([0, 1]))
    a = 0 if first == 0 else 1  # the task client 0 trains first
    b = 1 - a
    rows, result = run_scripted(cfg, lambda client, _: 1.0 if client == 0 else 2.5, size=3)
    # eta = 0.1 (strategy.server_lr 0: the reference code's global learning rate)
    np.testing.assert_allclose(result.weight_sets[str(a)]["w"], [0.2] * 3, rtol=1e-6)
    np.testing.assert_allclose(
        result.weight_sets[str(b)]["w"], [0.1 + 0.1 * 2**-0.5] * 3, rtol=1e-6
    )
    rounds, clients, _ = rows.frames()
    steps = {ws: rows_["sim_time_s"].tolist() for ws, rows_ in rounds.groupby("weight_set")}
    assert steps[str(a)] == pytest.approx([1.0, 2.0], abs=1e-3)  # plus the step on a core
    assert steps[str(b)] == pytest.approx([2.5, 3.0], abs=1e-3)
    train = clients[clients["phase"] == "train"].sort_values(["sim_start_s", "client"])
    assert train["client"].tolist() == [0, 1, 0, 0, 1]
    assert train["weight_set"].astype(int).tolist() == [a, b, a, b, b]
    assert train["sim_start_s"].tolist() == pytest.approx([0.0, 0.0, 1.0, 2.0, 2.5])
    assert train["status"].tolist() == ["ok", "ok", "ok", "ok", "unused"]
    assert train["staleness"].tolist()[:4] == [0, 0, 0, 1]


def test_shares_follow_the_tasks_mean_update_variance():
    cfg = scripted_fedast("strategy.fedast.realloc=variance", "strategy.fedast.realloc_every=4",
                          "data.num_clients=10", "strategy.fedast.concurrency=10",
                          "strategy.num_rounds=20")  # fmt: skip
    policy = FedAST(cfg)
    assert policy.shares == [5, 5]
    policy._variance = [[0.9, 3], [0.1, 1]]  # means 0.3 and 0.1: shares 3 to 1
    policy._replies, policy.steps = 3, [9, 9]
    policy._maybe_reallocate()
    assert policy.shares == [5, 5]  # not yet: 4 updates between reallocations
    policy._replies, policy.steps = 4, [9, 8]
    policy._maybe_reallocate()
    assert policy.shares == [5, 5]  # not yet: set 1 has taken only 8 steps
    policy.steps = [9, 9]
    policy._maybe_reallocate()
    # one each, then 8 by 0.75 / 0.25: 6, 2 -> 7, 3
    assert policy.shares == [7, 3]
    assert policy._replies == 0 and policy._variance == [[0.0, 0], [0.0, 0]]


def test_a_task_without_a_step_since_keeps_the_shares():
    policy = FedAST(scripted_fedast("strategy.fedast.realloc=variance",
                                    "strategy.fedast.realloc_every=1",
                                    "strategy.num_rounds=20"))  # fmt: skip
    policy._variance, policy._replies, policy.steps = [[0.5, 2], [0.0, 0]], 5, [9, 9]
    policy._maybe_reallocate()
    assert policy.shares == [1, 1]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["strategy.fedast.realloc=greedy"], "strategy.fedast.realloc"),
        (["strategy.fedast.concurrency=1"], "strategy.fedast.concurrency"),
        (["strategy.fedast.concurrency=99"], "strategy.fedast.concurrency"),
        (["strategy.server_opt=fedadam"], "strategy.server_opt"),
        (["strategy.aggregator=median"], "strategy.aggregator"),
        (["strategy.merge=final"], "strategy.merge"),
        (["strategy.group_policy=random"], "strategy.group_policy"),
    ],
)
def test_bad_fedast_settings_are_one_line(overrides, named):
    with pytest.raises(ConfigError) as info:
        load_config(TINY, ["strategy.name=fedast", *overrides])
    assert named in str(info.value) and "\n" not in str(info.value)


def test_three_tasks_with_faults_and_offline_clients_keep_every_invariant(tmp_path):
    cfg = three_tasks(
        tmp_path,
        "strategy.name=fedast",
        "strategy.num_rounds=4",
        "strategy.fedast.realloc_every=4",
        "faults.transient_prob=0.2",
        "faults.crash_prob=0.1",
        "clients.offline_prob=0.2",
        "checkpoint.every=1",
    )
    run_experiment(cfg, tmp_path / "run", quiet=True)
    rounds = pd.read_csv(tmp_path / "run" / "rounds.csv")
    assert rounds.groupby("set_name")["round"].max().to_dict() == {
        "digits": 4,
        "mnist1d": 4,
        "synthetic": 4,
    }
    clients = pd.read_csv(tmp_path / "run" / "clients.csv")
    assert {"failed", "retried"} & set(clients["status"])
    # No client ever trains two tasks at once.
    train = clients[clients["phase"] == "train"]
    for _, mine in train.groupby("client"):
        spans = mine.sort_values("sim_start_s")[["sim_start_s", "sim_end_s"]].to_numpy()
        assert (spans[1:, 0] >= spans[:-1, 1] - 1e-9).all()
    assert check_run(tmp_path / "run") == []


def test_fedast_reads_participation_without_a_group_policy(tmp_path):
    from .test_tasks import with_tables

    path = with_tables(tmp_path, "train.lr = 0.05", 'data.name = "digits"\nmodel.name = "mlp"\n'
                       "data.participation = 0.5")  # fmt: skip
    cfg = load_config(path, ["strategy.name=fedast", "data.num_clients=6", "strategy.num_rounds=2"])
    run_experiment(cfg, tmp_path / "run", quiet=True)
    clients = pd.read_csv(tmp_path / "run" / "clients.csv")
    pairs = clients[["client", "weight_set"]].drop_duplicates().itertuples(index=False)
    assert all(cfg.holds(int(c), int(ws)) for c, ws in pairs)
    assert check_run(tmp_path / "run") == []
