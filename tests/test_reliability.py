"""Reliability pieces on their own: fault draws, the quorum rule, retries in the ledger,
checkpoint files, client state, and the training state a client keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pwfl import training
from pwfl.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    client_state_rounds,
    drop_client_state_after,
    load_checkpoint,
    load_client_state,
    prune_client_state,
    save_checkpoint,
    save_client_state,
)
from pwfl.config import Config, FaultsConfig, StragglerConfig, StrategyConfig, load_config
from pwfl.faults import CRASH, HANG, NONE, TRANSIENT, fails_attempt, fault_for
from pwfl.quorum import QUORUM_MISSED, QuorumLost, QuorumWatch, has_quorum, replies_needed
from pwfl.records import FileMark
from pwfl.stragglers import StragglerTracker
from pwfl.strategies import build_policy
from pwfl.strategies.server_optimizer import ServerOptimizer
from pwfl.training import ClientData, TrainSettings

from .scripted import run_scripted

# --- fault draws ------------------------------------------------------------------


def test_fault_draws_are_a_function_of_seed_round_and_client():
    cfg = FaultsConfig(crash_prob=0.3, transient_prob=0.2, hang_prob=0.1)
    first = [fault_for(cfg, 7, r, c) for r in range(1, 6) for c in range(10)]
    again = [fault_for(cfg, 7, r, c) for r in range(1, 6) for c in range(10)]
    other_seed = [fault_for(cfg, 8, r, c) for r in range(1, 6) for c in range(10)]
    assert first == again
    assert first != other_seed


def test_fault_frequencies_follow_the_probabilities():
    cfg = FaultsConfig(crash_prob=0.3, transient_prob=0.2, hang_prob=0.1)
    draws = [fault_for(cfg, 0, r, c) for r in range(200) for c in range(50)]
    share = {kind: draws.count(kind) / len(draws) for kind in (CRASH, TRANSIENT, HANG, NONE)}
    assert share[CRASH] == pytest.approx(0.3, abs=0.02)
    assert share[TRANSIENT] == pytest.approx(0.2, abs=0.02)
    assert share[HANG] == pytest.approx(0.1, abs=0.02)
    assert share[NONE] == pytest.approx(0.4, abs=0.02)


def test_no_fault_configured_means_no_fault_and_certain_crash_means_crash():
    assert {fault_for(FaultsConfig(), 0, r, 0) for r in range(100)} == {NONE}
    assert {fault_for(FaultsConfig(crash_prob=1.0), 0, r, 0) for r in range(100)} == {CRASH}


def test_transient_faults_fail_only_the_first_try_and_crashes_every_try():
    assert fails_attempt(TRANSIENT, 0) and not fails_attempt(TRANSIENT, 1)
    assert all(fails_attempt(CRASH, a) for a in range(4))
    assert not fails_attempt(HANG, 0) and not fails_attempt(NONE, 0)


# --- quorum ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quorum", "sent", "needed"),
    [(0.5, 5, 3), (0.5, 4, 2), (0.3, 10, 3), (1.0, 4, 4), (0.01, 5, 1), (0.7, 3, 3)],
)
def test_replies_needed_is_the_ceiling_of_the_share(quorum, sent, needed):
    assert replies_needed(quorum, sent) == needed
    assert has_quorum(quorum, sent, needed)
    assert not has_quorum(quorum, sent, needed - 1)


def test_a_group_sent_nothing_has_no_quorum():
    assert not has_quorum(0.5, 0, 0)


def test_quorum_watch_stops_only_after_enough_rounds_in_a_row():
    watch = QuorumWatch(max_missed_rounds=2, num_weight_sets=2)
    watch.observe({"0": QUORUM_MISSED, "1": QUORUM_MISSED})
    watch.stop_if_lost(1)
    watch.observe({"0": QUORUM_MISSED, "1": "ok"})  # one set still learns: the streak resets
    watch.stop_if_lost(2)
    assert watch.streak == 0
    watch.observe({"0": QUORUM_MISSED, "1": QUORUM_MISSED})
    watch.observe({"0": QUORUM_MISSED, "1": QUORUM_MISSED})
    with pytest.raises(QuorumLost, match="after round 5.*2 rounds in a row"):
        watch.stop_if_lost(5)


def test_quorum_watch_counts_each_sets_own_rounds_without_a_barrier():
    """Async mode: each round covers one set; the run is lost when every set's own
    last N rounds missed quorum."""
    watch = QuorumWatch(max_missed_rounds=2, num_weight_sets=2)
    for status in (QUORUM_MISSED, QUORUM_MISSED, QUORUM_MISSED):
        watch.observe({"0": status})
        watch.stop_if_lost(1)  # set 1 has not missed anything yet
    watch.observe({"1": QUORUM_MISSED})
    watch.stop_if_lost(2)
    watch.observe({"1": QUORUM_MISSED})
    assert watch.streaks == {"0": 3, "1": 2}
    with pytest.raises(QuorumLost):
        watch.stop_if_lost(2)


# --- checkpoints -------------------------------------------------------------------


def _checkpoint(round_: int = 2) -> Checkpoint:
    return Checkpoint(
        round=round_,
        num_rounds=4,
        label="pwfl",
        config_toml=Config().to_toml(),
        strategy={"sim_time_s": 1.5, "tracker": {"estimates": {"3": [0.1, 0.2]}}},
        arrays={"weights/0/w": np.arange(6, dtype=np.float32).reshape(2, 3)},
        files={"rounds.csv": FileMark(rows=2, size=120, sha256="ab" * 32)},
    )


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, _checkpoint())
    back = load_checkpoint(path)
    assert (back.round, back.num_rounds, back.label) == (2, 4, "pwfl")
    assert back.config == Config()
    assert back.strategy["tracker"]["estimates"]["3"] == [0.1, 0.2]
    np.testing.assert_array_equal(back.arrays["weights/0/w"], np.arange(6).reshape(2, 3))
    assert back.arrays["weights/0/w"].dtype == np.float32
    assert back.files == {"rounds.csv": FileMark(rows=2, size=120, sha256="ab" * 32)}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporary left


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b"not a checkpoint at all"),
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b""),
    ],
    ids=["garbage", "truncated", "empty"],
)
def test_corrupt_checkpoint_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, _checkpoint())
    damage(path)
    with pytest.raises(CheckpointError, match="corrupt or truncated.*--overwrite"):
        load_checkpoint(path)


def test_checkpoint_of_another_format_names_both_versions(tmp_path, monkeypatch):
    import pwfl.checkpoint as checkpoint

    path = tmp_path / "checkpoint.npz"
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 99)
    save_checkpoint(path, _checkpoint())
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=f"format 99.*reads format {FORMAT_VERSION}"):
        load_checkpoint(path)


def test_missing_checkpoint_says_what_to_pass(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.npz")


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, _checkpoint(round_=2))

    def broken_savez(handle, **arrays):
        handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _checkpoint(round_=3))
    monkeypatch.undo()
    assert load_checkpoint(path).round == 2
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]


# --- state kept between rounds -----------------------------------------------------


def test_client_state_files_prune_and_drop(tmp_path):
    for r in (1, 2, 4, 5):
        save_client_state(tmp_path, 3, r, {"m": np.full(2, r, dtype=np.float32)})
    assert client_state_rounds(tmp_path, 3) == [1, 2, 4, 5]
    # A resume from round 3 needs round 2 (the newest not after it) and later files.
    prune_client_state(tmp_path, 3, checkpoint_round=3)
    assert client_state_rounds(tmp_path, 3) == [2, 4, 5]
    drop_client_state_after(tmp_path, 4)
    assert client_state_rounds(tmp_path, 3) == [2, 4]
    newest, arrays = load_client_state(tmp_path, 3)
    assert newest == 4 and arrays["m"].tolist() == [4.0, 4.0]
    assert load_client_state(tmp_path, 7) is None
    prune_client_state(tmp_path, 3, checkpoint_round=-1)  # no checkpoints: newest only
    assert client_state_rounds(tmp_path, 3) == [4]


def test_straggler_tracker_state_round_trip():
    tracker = StragglerTracker(StragglerConfig(load_balancing="halve"), 2)
    tracker.epochs = {"cnn": {1: 0.5}, "mlp": {2: 3.0}}
    from pwfl.clock import ClientTiming

    tracker.observe(1, "cnn", ClientTiming(1.0, 4.0, 1.0, 0.0), 2)
    tracker.observe(2, "mlp", ClientTiming(1.0, 4.0, 1.0, 0.0), 2)
    tracker.plan("mlp", [2])  # (1, "cnn") is still to be planned, (2, "mlp") is not
    again = StragglerTracker(StragglerConfig(load_balancing="halve"), 2)
    again.load_state(json.loads(json.dumps(tracker.state())))
    assert again.epochs == tracker.epochs
    assert again.fresh["cnn"] == tracker.fresh["cnn"] == {1}
    assert not again.fresh.get("mlp") and not tracker.fresh["mlp"]
    assert again.plan("cnn", [1]) == tracker.plan("cnn", [1])
    assert again.estimates["cnn"][1].predict(2) == tracker.estimates["cnn"][1].predict(2)


@pytest.mark.parametrize("name", ["fedadam", "fedavgm"])
def test_server_optimizer_state_restores_the_next_step(name):
    cfg = StrategyConfig(server_opt=name, server_momentum=0.9)
    rng = np.random.default_rng(0)
    w0 = {"w": rng.normal(size=(3, 2)).astype(np.float32)}
    targets = [{"w": rng.normal(size=(3, 2)).astype(np.float32)} for _ in range(3)]
    a = ServerOptimizer(cfg)
    w1 = a.step(1, w0, targets[0])
    w2 = a.step(2, w1, targets[1])
    b = ServerOptimizer(cfg)
    b.load_state(ServerOptimizer(cfg).state())  # an empty state is a fresh optimiser
    b.load_state(_after_one_step(cfg, w0, targets[0]))
    np.testing.assert_allclose(b.step(2, w1, targets[1])["w"], w2["w"], rtol=1e-6)
    assert a.state()  # the moments exist after a step


def _after_one_step(cfg, w0, target):
    opt = ServerOptimizer(cfg)
    opt.step(1, w0, target)
    return opt.state()


def _data(n: int = 64) -> ClientData:
    g = torch.Generator().manual_seed(0)
    return ClientData(
        torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)
    )


def test_keeping_nothing_trains_exactly_like_train():
    settings = TrainSettings(model="small-cnn", seed=3)
    state = training.initial_state(settings, seed=0)
    plain, _ = training.train(state, _data(), settings)
    kept, _, local = training.train_keeping(state, _data(), settings, "momentum", {})
    for name in plain:
        torch.testing.assert_close(kept[name], plain[name])
    assert local and all(k.startswith("momentum.") for k in local)


def test_kept_momentum_changes_the_next_round():
    settings = TrainSettings(model="small-cnn", seed=3)
    state = training.initial_state(settings, seed=0)
    _, _, local = training.train_keeping(state, _data(), settings, "momentum", {})
    fresh, _, _ = training.train_keeping(state, _data(), settings, "momentum", {})
    carried, _, _ = training.train_keeping(state, _data(), settings, "momentum", local)
    assert any(not torch.equal(fresh[k], carried[k]) for k in fresh)


def test_personal_layer_is_the_classifier_and_replaces_the_received_one():
    settings = TrainSettings(model="cnn", seed=1)
    state = training.initial_state(settings, seed=0)
    model = training._model_from_state(state, settings)
    keys = training.personal_keys(model)
    last_linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    assert keys == [f"{last_linear}.weight", f"{last_linear}.bias"]
    _, _, local = training.train_keeping(state, _data(), settings, "personal", {})
    assert sorted(local) == sorted(f"personal.{k}" for k in keys)
    # With a kept head the received head is ignored: two different received heads
    # give the same result.
    other = {**state, **{k: torch.zeros_like(state[k]) for k in keys}}
    a, _, _ = training.train_keeping(state, _data(), settings, "personal", local)
    b, _, _ = training.train_keeping(other, _data(), settings, "personal", local)
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_quorum_watch_counts_failed_updates_for_a_policy_of_server_steps():
    """FedBuff and FedAsync have no groups to miss quorum: the watch counts their failed
    single-client updates, max_missed_rounds x the updates one step takes, in a row."""
    watch = QuorumWatch(max_missed_rounds=2, updates_per_step=2)
    for delivered in (False, False, False, True, False, False, False):
        watch.observe_update(delivered, steps=3)
    assert watch.failed_updates == 3
    with pytest.raises(QuorumLost, match="after server step 3: the last 4 client updates"):
        watch.observe_update(False, steps=3)


@pytest.mark.parametrize("name", ["fedbuff", "fedasync"])
def test_a_step_policy_whose_updates_all_fail_is_stopped_by_the_engine(name):
    """The engine's watch stops the run (the policy only says how many updates a step
    takes), with the records so far kept."""
    cfg = load_config(
        None,
        [
            f"strategy.name={name}",
            "data.num_clients=10",
            "strategy.num_rounds=3",
            "strategy.executor=serial",
            "checkpoint.every=0",
            "clock.compute=measured",
            "faults.round_timeout_s=1",  # every client trains 100 s: every job times out
            "faults.max_missed_rounds=3",
        ],
    )
    policy = build_policy(cfg)
    assert policy.updates_per_step == policy.buffer_size == (1 if name == "fedasync" else 5)
    _, result = run_scripted(cfg, lambda client, server_round: 100.0)
    limit = 3 * policy.updates_per_step
    assert f"after server step 0: the last {limit} client updates all failed" in result.stopped
