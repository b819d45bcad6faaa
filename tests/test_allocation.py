"""The multi-model allocation rules (random, alpha-fair, variance-reduced) against hand-computed
probabilities and draws, their config keys, and tiny runs with each in sync and async mode."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pwfl.allocation import (
    alpha_fair_shares,
    assign_sets,
    draw_by_probabilities,
    update_norm,
    variance_reduced_shares,
)
from pwfl.config import ConfigError, load_config
from pwfl.invariants import check_run
from pwfl.partition import GroupContext, draw_group, split_clients
from pwfl.runner import run_experiment

from .conftest import CONFIGS

NAN = float("nan")


def test_alpha_fair_probabilities_match_the_rule_by_hand():
    # alpha = 3: p_s ~ f_s^2 = (0.25, 0.0625) -> (0.8, 0.2).
    assert alpha_fair_shares((0.5, 0.25), 3.0) == pytest.approx([0.8, 0.2])
    assert alpha_fair_shares((0.5, 0.25), 1.0) == pytest.approx([0.5, 0.5])
    # alpha = 0: p_s ~ 1 / f_s = (2, 4) -> (1/3, 2/3).
    assert alpha_fair_shares((0.5, 0.25), 0.0) == pytest.approx([1 / 3, 2 / 3])
    # weights (1, 3), alpha = 3: (0.25, 3 * 0.0625) -> (4/7, 3/7).
    assert alpha_fair_shares((0.5, 0.25), 3.0, (1.0, 3.0)) == pytest.approx([4 / 7, 3 / 7])
    # Before a validation loss: the weights alone.
    assert alpha_fair_shares((NAN, NAN), 3.0) == pytest.approx([0.5, 0.5])
    assert alpha_fair_shares((NAN, 0.3), 3.0, (1.0, 3.0)) == pytest.approx([0.25, 0.75])


def test_variance_reduced_probabilities_match_the_rule_by_hand():
    norms = {(0, 0): 3.0, (0, 1): 1.0, (1, 0): 1.0}
    rows = variance_reduced_shares([0, 1, 2], 2, norms)
    # Client 0: (3, 1) / 4. Client 1: set 1 unseen, set 1's mean known norm is 1 -> (1, 1) / 2.
    # Client 2: never seen: set 0's mean (3 + 1) / 2 = 2, set 1's 1 -> (2, 1) / 3.
    assert rows == pytest.approx(np.array([[0.75, 0.25], [0.5, 0.5], [2 / 3, 1 / 3]]))
    # A set no client has sent for takes the mean of every known norm: (1, 3) -> 2.
    rows = variance_reduced_shares([5], 3, {(0, 0): 1.0, (1, 1): 3.0})
    assert rows == pytest.approx(np.array([[1 / 6, 3 / 6, 2 / 6]]))
    assert variance_reduced_shares([0, 1], 2, {}) == pytest.approx(np.full((2, 2), 0.5))


def test_update_norm_is_the_norm_of_trained_minus_sent_over_the_arrays_sent_back():
    sent = {"a": np.array([1.0, 1.0], np.float32), "b": np.zeros(1, np.float32)}
    trained = {"a": np.array([4.0, 5.0], np.float32), "kept": np.full(2, 9.0)}
    assert update_norm(trained, sent) == pytest.approx(5.0)


@settings(max_examples=100, deadline=None)
@given(
    policy=st.sampled_from(["random", "alpha-fair", "variance-reduced"]),
    clients=st.lists(st.integers(0, 1000), min_size=1, max_size=30, unique=True),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_sampled_client_is_in_exactly_one_group(policy, clients, k, seed):
    rng = np.random.default_rng(seed)
    losses = tuple(rng.uniform(0.1, 3.0, k))
    norms = {(c, ws): float(rng.uniform(0, 2)) for c in clients[::2] for ws in range(k)}
    ctx = GroupContext(1, losses, alpha=2.5, norms=norms)
    if k > len(clients):
        with pytest.raises(ValueError):
            split_clients(policy, clients, k, rng, context=ctx)
        return
    groups = split_clients(policy, clients, k, rng, context=ctx)
    flat = [c for g in groups for c in g]
    assert len(groups) == k and sorted(flat) == sorted(clients)  # disjoint, all placed
    group = draw_group(policy, clients, k - 1, k, 2, rng, {}, ctx)
    assert len(set(group)) == len(group) and set(group) <= set(clients)


def test_assign_sets_draws_one_uniform_per_row_by_hand():
    probs = np.array([[0.2, 0.8], [0.7, 0.3], [0.5, 0.5], [0.9, 0.1]])
    u = np.random.default_rng(4).random(4)
    expected = [int(u[i] >= probs[i, 0]) for i in range(4)]
    assert assign_sets(probs, np.random.default_rng(4)).tolist() == expected


def test_random_split_equals_a_hand_draw_from_the_same_generator():
    clients = [3, 8, 1, 6, 9, 2, 7]
    u = np.random.default_rng(11).random(len(clients))
    sets = [int(x >= 1 / 3) + int(x >= 2 / 3) for x in u]
    expected = [[c for c, s in zip(clients, sets, strict=True) if s == g] for g in range(3)]
    assert split_clients("random", clients, 3, np.random.default_rng(11)) == expected
    assert sorted(c for g in expected for c in g) == sorted(clients)


def test_alpha_fair_split_follows_its_probabilities_by_hand():
    clients = list(range(10))
    ctx = GroupContext(2, (0.5, 0.25), alpha=3.0)
    u = np.random.default_rng(2).random(len(clients))  # p = (0.8, 0.2)
    expected = [[c for c in clients if u[c] < 0.8], [c for c in clients if u[c] >= 0.8]]
    assert split_clients("alpha-fair", clients, 2, np.random.default_rng(2), context=ctx) == (
        expected
    )


def test_variance_reduced_split_uses_each_clients_own_row():
    clients = [0, 1, 2]
    ctx = GroupContext(norms={(0, 0): 3.0, (0, 1): 1.0, (1, 0): 1.0})
    u = np.random.default_rng(9).random(3)
    first = [0.75, 0.5, 2 / 3]  # each client's probability of set 0 (the test above)
    expected = [[c for c in clients if u[c] < first[c]], [c for c in clients if u[c] >= first[c]]]
    got = split_clients("variance-reduced", clients, 2, np.random.default_rng(9), context=ctx)
    assert got == expected


def test_async_draw_keeps_the_sets_share_of_those_that_drew_it_by_hand():
    free = [10, 11, 12, 13, 14, 15]
    probs = np.tile([0.8, 0.2], (6, 1))
    rng = np.random.default_rng(7)
    u = rng.random(6)
    drew = [c for c, x in zip(free, u, strict=True) if x < 0.8]
    take = min(len(drew), round(3 * 2 * 0.8))  # group size 3, K = 2, set 0's share 0.8
    expected = sorted(int(c) for c in rng.choice(np.asarray(drew), size=take, replace=False))
    assert draw_by_probabilities(free, 0, 3, probs, np.random.default_rng(7)) == expected
    ctx = GroupContext(4, (0.5, 0.25), alpha=3.0)
    assert draw_group("alpha-fair", free, 0, 2, 3, np.random.default_rng(7), {}, ctx) == expected


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("strategy.alpha=-0.5", "strategy.alpha"),
        ("strategy.set_weights=1,2,3", "strategy.set_weights"),
        ("strategy.set_weights=1,x", "strategy.set_weights"),
        ("strategy.set_weights=1,0", "strategy.set_weights"),
    ],
)
def test_bad_alpha_fair_settings_are_refused_in_one_line(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(CONFIGS / "tiny.toml", [override])
    assert key in str(err.value) and "\n" not in str(err.value)


def _run(tmp_path, policy: str, mode: str, *extra: str) -> pd.DataFrame:
    cfg = load_config(
        CONFIGS / "tiny.toml",
        [
            f"strategy.group_policy={policy}",
            f"strategy.mode={mode}",
            "data.num_clients=6",
            "strategy.num_rounds=3",
            *extra,
        ],
    )
    run_experiment(cfg, tmp_path, quiet=True)
    assert check_run(tmp_path) == []
    return pd.read_csv(tmp_path / "clients.csv").query("phase == 'train'")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("policy", ["random", "alpha-fair", "variance-reduced"])
def test_runs_with_the_rule_never_give_a_client_two_sets_at_once(policy, mode, tmp_path):
    extra = ["strategy.alpha=3"] if policy == "alpha-fair" else []
    train = _run(tmp_path, policy, mode, *extra)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert set(rounds["weight_set"].astype(str)) == {"0", "1"}
    for client, rows in train.groupby("client"):
        spans = rows.sort_values("sim_start_s")[["sim_start_s", "sim_end_s"]].to_numpy()
        assert (spans[1:, 0] >= spans[:-1, 1] - 1e-9).all(), client
    if mode == "sync":
        per_round = train.groupby("round")["client"]
        assert (per_round.nunique() == per_round.size()).all()  # one set per client a round


def test_a_set_that_draws_no_client_keeps_its_weights_and_the_run_goes_on(tmp_path):
    # Set 0 weighs 1 against 1000: with 6 clients it draws nobody in most rounds.
    train = _run(tmp_path, "alpha-fair", "sync", "strategy.set_weights=1,1000")
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert sorted(rounds["round"].unique().tolist()) == [1, 2, 3]
    empty = set(range(1, 4)) - set(train[train["weight_set"].astype(str) == "0"]["round"])
    assert empty, "set 0 drew a client in every round"
    accuracy = rounds[rounds["weight_set"].astype(str) == "0"].set_index("round")["accuracy"]
    for r in sorted(empty):  # a round without clients leaves the weights, hence the accuracy
        if r - 1 in accuracy.index:
            assert accuracy[r] == accuracy[r - 1]


def test_the_policy_sees_the_norms_of_the_updates_the_server_counted(tmp_path, monkeypatch):
    import pwfl.allocation as allocation

    seen: list[dict] = []
    original = allocation.variance_reduced_shares

    def spy(clients, k, norms):
        seen.append(dict(norms))
        return original(clients, k, norms)

    monkeypatch.setattr(allocation, "variance_reduced_shares", spy)
    train = _run(tmp_path, "variance-reduced", "sync")
    assert len(seen) == 3 and seen[0] == {}  # one split a round; nothing known in round 1
    first = train[(train["round"] == 1) & (train["status"] == "ok")]
    pairs = {(int(c), int(ws)) for c, ws in first[["client", "weight_set"]].to_numpy()}
    assert set(seen[1]) == pairs and all(n > 0 for n in seen[1].values())


def test_a_variance_reduced_run_resumes_exactly(tmp_path, monkeypatch):
    """Its norms travel in the checkpoint: a 2-round run resumed to 4 rounds sees the
    norms, and gives the records, of a 4-round run."""
    import pwfl.allocation as allocation
    from pwfl.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

    seen: list[dict] = []
    original = allocation.variance_reduced_shares

    def spy(clients, k, norms):
        seen.append(dict(norms))
        return original(clients, k, norms)

    monkeypatch.setattr(allocation, "variance_reduced_shares", spy)

    def cfg(rounds: int):
        overrides = ["strategy.group_policy=variance-reduced", "data.num_clients=6"]
        return load_config(CONFIGS / "tiny.toml", [*overrides, f"strategy.num_rounds={rounds}"])

    short, resumed, full = tmp_path / "short", tmp_path / "resumed", tmp_path / "full"
    run_experiment(cfg(2), short, quiet=True)
    ckpt = load_checkpoint(short / CHECKPOINT_FILE)
    ckpt.config_toml, ckpt.num_rounds = cfg(4).to_toml(), 4
    shutil.copytree(short, resumed)
    save_checkpoint(resumed / CHECKPOINT_FILE, ckpt)
    seen.clear()
    run_experiment(cfg(4), resumed, quiet=True, label=ckpt.label, resume=ckpt)
    after_resume, seen[:] = list(seen), []
    run_experiment(cfg(4), full, quiet=True)
    assert after_resume[0] and after_resume == seen[2:]  # rounds 3 and 4
    a, b = (pd.read_csv(d / "clients.csv") for d in (resumed, full))
    host = [c for c in a if c.endswith(("_wall_s", "_measured_s"))]
    pd.testing.assert_frame_equal(a.drop(columns=host), b.drop(columns=host), check_exact=True)
