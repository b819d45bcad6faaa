"""End-to-end runs: tiny settings, the real ServerApp and ClientApp, real records.

Most runs use the inline backend (clients in threads of this process): the
same apps and messages as on Flower's Ray simulation engine, without the
seconds Ray needs to start. ``test_the_ray_backend_gives_the_same_numbers``
runs one on Ray.
"""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pandas as pd
import pytest

from pwfl.apps.server_app import load_weights
from pwfl.config import load_config
from pwfl.runner import run_experiment
from pwfl.schema import CLIENTS, ROUNDS

from .conftest import CONFIGS, has_avx2

TINY = CONFIGS / "tiny.toml"


def tiny(*overrides: str):
    return load_config(TINY, ["simulation.backend=inline", *overrides])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs shared by several tests, each run once."""
    base = tmp_path_factory.mktemp("runs")
    cache: dict[str, object] = {}

    def get(name: str, *overrides: str):
        if name not in cache:
            out = base / name
            run_experiment(tiny(*overrides), out, quiet=True)
            cache[name] = out
        return cache[name]

    return get


def test_fedavg_two_rounds_writes_all_four_files(runs):
    out = runs("fedavg", "strategy.name=fedavg")
    for name in ("rounds.csv", "clients.csv", "config.toml", "summary.json"):
        assert (out / name).is_file(), name
    rounds = pd.read_csv(out / "rounds.csv")
    assert list(rounds.columns) == ROUNDS.names
    assert rounds["round"].tolist() == [1, 2]
    assert rounds["accuracy"].between(0, 1).all()
    assert rounds["sim_time_s"].is_monotonic_increasing
    clients = pd.read_csv(out / "clients.csv")
    assert list(clients.columns) == CLIENTS.names
    train = clients[clients["phase"] == "train"]
    # fraction_train = 1: each of the 4 clients trains once per round.
    assert sorted(train.groupby("round")["client"].apply(sorted).tolist()) == [[0, 1, 2, 3]] * 2
    assert (train["status"] == "ok").all()
    assert (train["train_measured_s"] > 0).all()
    written = tomllib.loads((out / "config.toml").read_text())
    assert written["strategy"]["name"] == "fedavg"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["all"]["rounds"] == 2
    assert summary["all"]["final_accuracy"] == pytest.approx(rounds["accuracy"].iloc[-1])


def test_pwfl_with_one_weight_set_reproduces_fedavg(runs):
    common = ("strategy.k=1", "strategy.num_rounds=3", "strategy.fraction_train=1.0")
    fedavg = runs("fedavg-3", "strategy.name=fedavg", *common)
    pwfl = runs("pwfl-k1", "strategy.name=pwfl", *common)
    a = pd.read_csv(fedavg / "rounds.csv")
    b = pd.read_csv(pwfl / "rounds.csv")
    # pwfl's weighted mean takes Flower's operations in Flower's order: the same bits.
    for column in ("accuracy", "loss", "client_accuracy", "train_loss"):
        assert b[column].tolist() == a[column].tolist(), column
    wa, wb = (
        load_weights(fedavg / "final_weights.npz")["0"],
        load_weights(pwfl / "final_weights.npz")["0"],
    )
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_array_equal(wb[name], wa[name], err_msg=name)
    # The model did learn: this is not two copies of an untouched initialisation.
    assert a["accuracy"].iloc[-1] > 0.5


def test_same_seed_same_numbers_across_executors(runs):
    """Same seed, same accuracies, whether groups aggregate on Ray, threads or serially."""
    frames = {
        ex: pd.read_csv(runs(f"pwfl-{ex}", f"strategy.executor={ex}") / "rounds.csv")
        for ex in ("ray", "threads", "serial")
    }
    for ex in ("threads", "serial"):
        for col in ("accuracy", "loss", "client_accuracy", "train_loss"):
            assert frames[ex][col].tolist() == frames["ray"][col].tolist(), (ex, col)
    other_seed = pd.read_csv(runs("pwfl-seed1", "seed=1") / "rounds.csv")
    assert other_seed["accuracy"].tolist() != frames["ray"]["accuracy"].tolist()


def test_pwfl_groups_are_disjoint_and_cover_the_sample(runs):
    out = runs("pwfl-threads", "strategy.executor=threads")
    clients = pd.read_csv(out / "clients.csv")
    train = clients[clients["phase"] == "train"]
    for _, rnd in train.groupby("round"):
        groups = [set(g["client"]) for _, g in rnd.groupby("weight_set")]
        assert len(groups) == 2
        assert not groups[0] & groups[1]
        assert groups[0] | groups[1] == {0, 1, 2, 3}
    # Every group trains its set's current weights: nothing is stale.
    assert (train.loc[train["status"] == "ok", "staleness"] == 0).all()
    rounds = pd.read_csv(out / "rounds.csv")
    assert sorted(rounds["weight_set"].astype(str).unique()) == ["0", "1"]
    # Two groups trained side by side: the round is no longer than the slower one
    # plus its aggregation, and shorter than the two one after the other.
    for _, rnd in rounds.groupby("round"):
        longest = (rnd["train_s"] + rnd["aggregate_s"]).max()
        assert rnd["round_sim_s"].iloc[0] == pytest.approx(longest)
        assert rnd["round_sim_s"].iloc[0] < (rnd["train_s"] + rnd["aggregate_s"]).sum()


def test_sequential_round_is_the_sum_of_its_groups(runs):
    out = runs("sequential", "strategy.name=pwfl-sequential")
    rounds = pd.read_csv(out / "rounds.csv")
    for _, rnd in rounds.groupby("round"):
        total = (rnd["train_s"] + rnd["aggregate_s"]).sum()
        assert rnd["round_sim_s"].iloc[0] == pytest.approx(total)
    parallel = pd.read_csv(runs("pwfl-ray", "strategy.executor=ray") / "rounds.csv")
    # Same seed, same split, same weights sent: the two loops learn the same models.
    np.testing.assert_allclose(rounds["accuracy"], parallel["accuracy"], atol=1e-6)


def test_merge_every_round_records_a_merged_row(runs):
    out = runs("merge", "strategy.merge=every:1")
    rounds = pd.read_csv(out / "rounds.csv")
    merged = rounds[rounds["weight_set"].astype(str) == "merged"]
    assert merged["round"].tolist() == [1, 2]
    weights = load_weights(out / "final_weights.npz")
    # After a merge every set holds the same weights.
    for name in weights["0"]:
        np.testing.assert_array_equal(weights["0"][name], weights["1"][name])


def _rtt_spread(out) -> pd.Series:
    clients = pd.read_csv(out / "clients.csv")
    train = clients[(clients["phase"] == "train") & (clients["status"] == "ok")]
    return train.groupby("round")["rtt_s"].agg(lambda r: r.max() / r.median())


def test_heterogeneous_clients_timeline_and_load_balancing(runs):
    hetero = ("clients.profile=tiers", "strategy.num_rounds=3")
    off = runs("tiers-off", *hetero)
    on = runs("tiers-lb", *hetero, "stragglers.load_balancing=proportional")
    clients = pd.read_csv(off / "clients.csv")
    train = clients[clients["phase"] == "train"]
    # Every reply sits on the simulated clock: start + round trip = end, and
    # the parts of the round trip add up.
    np.testing.assert_allclose(train["sim_end_s"] - train["sim_start_s"], train["rtt_s"])
    parts = train["download_s"] + train["compute_s"] + train["upload_s"] + 0.02
    np.testing.assert_allclose(parts, train["rtt_s"])
    assert (train["bytes_up"] > 0).all() and (train["bytes_down"] > 0).all()
    # The slowest tier (speed 0.2) computes 5x as long as its measured CPU time.
    assert train["straggler"].any()
    server = pd.read_csv(off / "server.csv")
    assert len(server) == 3 * 2 and (server["busy_end_s"] >= server["busy_start_s"]).all()
    # Load balancing gives stragglers less work: later rounds finish closer together.
    lb_clients = pd.read_csv(on / "clients.csv")
    lb_train = lb_clients[lb_clients["phase"] == "train"]
    assert lb_train[lb_train["round"] > 1]["local_epochs"].min() < 1
    assert _rtt_spread(on).loc[2:].mean() < _rtt_spread(off).loc[2:].mean()


def test_int8_updates_send_fewer_bytes_and_still_learn(runs):
    plain = pd.read_csv(runs("pwfl-threads", "strategy.executor=threads") / "rounds.csv")
    packed = pd.read_csv(
        runs("int8", "strategy.executor=threads", "comm.compression=int8") / "rounds.csv"
    )
    ratio = packed["bytes_up"].sum() / plain["bytes_up"].sum()
    assert ratio < 0.35  # small-cnn: many tiny tensors, each with its scale and zero point
    assert (packed["bytes_down"] == plain["bytes_down"]).all()  # the server sends floats
    assert packed["accuracy"].iloc[-2:].min() > 0.8


def test_user_aggregator_from_dotted_path_is_used(runs):
    from . import plugins

    plugins.CALLS.clear()
    out = runs("plugin", "strategy.aggregator=tests.plugins:counting_mean")
    rounds = pd.read_csv(out / "rounds.csv")
    assert plugins.CALLS == [2, 2, 2, 2]  # 2 rounds x 2 groups of 2 clients
    assert rounds["accuracy"].iloc[-1] > 0.5


def test_deadline_drops_late_replies(runs):
    out = runs("deadline", "clients.profile=tiers", "stragglers.deadline_s=0.6")
    clients = pd.read_csv(out / "clients.csv")
    train = clients[clients["phase"] == "train"]
    late = train[train["status"] == "late"]
    # The server gives up on a late client at the deadline: it is free from then on.
    assert len(late) and np.allclose(late["rtt_s"], 0.6)
    assert late["compute_s"].isna().any() or (late["bytes_up"] == 0).all()
    assert (train[train["status"] == "ok"]["rtt_s"] <= 0.6).all()
    rounds = pd.read_csv(out / "rounds.csv")
    # Late replies are not aggregated, and the server waited until the deadline.
    counted = train[train["status"] == "ok"].groupby(["round", "weight_set"]).size()
    for _, row in rounds.iterrows():
        assert row["num_clients"] == counted.get((row["round"], int(row["weight_set"])), 0)
        assert row["train_s"] <= 0.6 + 1e-9


def test_async_groups_never_share_a_busy_client(runs):
    out = runs("async", "strategy.mode=async", "strategy.num_rounds=3", "clients.profile=tiers")
    clients = pd.read_csv(out / "clients.csv")
    train = clients[clients["phase"] == "train"].sort_values("sim_start_s")
    for _, mine in train.groupby("client"):
        intervals = list(zip(mine["sim_start_s"], mine["sim_end_s"], strict=True))
        for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
            assert start >= end - 1e-9  # the next job starts after the last one ended
    # A set's group trains the set's current weights even without a barrier.
    assert (train.loc[train["status"] == "ok", "staleness"] == 0).all()
    rounds = pd.read_csv(out / "rounds.csv")
    for _, ws in rounds.groupby("weight_set"):
        ws = ws.sort_values("round")
        assert ws["round"].tolist() == [1, 2, 3]
        assert ws["accuracy"].iloc[-1] > ws["accuracy"].iloc[0]
        # Each weight set keeps its own clock: its rounds follow one another.
        assert ws["sim_time_s"].is_monotonic_increasing
    # Idle time comes from the server's aggregation intervals (no round barrier).
    idle = json.loads((out / "summary.json").read_text())["all"]["idle_fraction"]
    assert 0 < idle < 1
    # No barrier: the first set to finish round 1 starts round 2 before the other
    # set has finished round 1.
    first_round_done = rounds[rounds["round"] == 1]["sim_time_s"].max()
    assert rounds[rounds["round"] == 2]["group_start_s"].min() < first_round_done


def test_server_momentum_per_weight_set_runs_and_learns(runs):
    out = runs("fedavgm", "strategy.server_opt=fedavgm", "strategy.server_momentum=0.5")
    rounds = pd.read_csv(out / "rounds.csv")
    plain = pd.read_csv(runs("pwfl-threads", "strategy.executor=threads") / "rounds.csv")
    assert rounds["accuracy"].tolist() != plain["accuracy"].tolist()  # the step changed things
    assert rounds.groupby("weight_set")["accuracy"].last().min() > 0.5


# Where AVX2 exists, tests/test_arithmetic.py runs this comparison with more to it (its
# Ray driver started with another host's kernels): half a minute saved, nothing lost.
@pytest.mark.skipif(has_avx2(), reason="test_arithmetic.py compares Ray and inline here")
def test_the_ray_backend_gives_the_same_numbers(runs, tmp_path, ray_session):
    """Flower's simulation engine on Ray and the inline backend run the same apps on the
    same messages: the same seed gives the same records."""
    inline = pd.read_csv(runs("pwfl-threads", "strategy.executor=threads") / "rounds.csv")
    run_experiment(
        tiny("simulation.backend=ray", "strategy.executor=threads"), tmp_path, quiet=True
    )
    ray = pd.read_csv(tmp_path / "rounds.csv")
    for column in ("round", "weight_set", "accuracy", "loss", "client_accuracy", "train_loss"):
        assert ray[column].tolist() == inline[column].tolist(), column


def test_clients_train_on_their_training_share_and_evaluate_on_their_held_out_share(runs):
    """tiny.toml: 4 iid clients of mnist-5k's 4,000 training images, 1,000 each, of
    which data.client_holdout = 0.2 is kept out of training for the client's evaluation."""
    out = runs("pwfl-threads", "strategy.executor=threads")
    clients = pd.read_csv(out / "clients.csv")
    train = clients[clients["phase"] == "train"]
    evaluated = clients[clients["phase"] == "evaluate"]
    assert len(train) and len(evaluated)
    # The weight of an update and the modelled clock's work: one epoch of the 800.
    assert train["num_examples"].tolist() == [800] * len(train)
    assert train["examples_run"].tolist() == [800] * len(train)
    assert evaluated["num_examples"].tolist() == [200] * len(evaluated)


def test_a_client_with_nothing_held_out_reports_no_evaluation(tmp_path):
    """A one-example client trains on its example; its evaluation counts nothing and
    the round's client accuracy is empty, not a made-up number."""
    cfg = tiny(
        "strategy.name=fedavg",
        "strategy.num_rounds=1",
        "data.partitioner=resample",
        "data.examples_per_client=1",
    )
    run_experiment(cfg, tmp_path, quiet=True)
    clients = pd.read_csv(tmp_path / "clients.csv")
    evaluated = clients[clients["phase"] == "evaluate"]
    assert len(evaluated) and (evaluated["status"] == "ok").all()
    assert (evaluated["num_examples"] == 0).all() and evaluated["accuracy"].isna().all()
    assert (clients[clients["phase"] == "train"]["num_examples"] == 1).all()
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["client_accuracy"].isna().all() and rounds["client_loss"].isna().all()
    assert rounds["accuracy"].notna().all()
