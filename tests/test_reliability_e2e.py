"""Faults, retries, quorum and resume on Flower's simulation engine (tiny settings)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from pwfl.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from pwfl.config import load_config
from pwfl.errors import PwflError
from pwfl.faults import CRASH, HANG, TRANSIENT, fault_for
from pwfl.runner import run_experiment

from .conftest import CONFIGS, ROOT

TINY = CONFIGS / "tiny.toml"


def repeated(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column but those measured on the host, which change from run to run."""
    return frame.drop(columns=[c for c in frame if c.endswith(("_wall_s", "_measured_s"))])


def tiny(*overrides: str):
    return load_config(TINY, list(overrides))


def expected_statuses(cfg, server_round: int, client: int) -> list[str]:
    """The statuses the client's tries must have, predicted from the fault draw."""
    kind = fault_for(cfg.faults, cfg.seed, server_round, client)
    if kind == CRASH:
        return ["retried"] * cfg.faults.max_retries + ["failed"]
    if kind == TRANSIENT:
        return ["retried", "ok"]
    if kind == HANG:
        return ["timeout"]
    return ["ok"]


def test_run_with_crashes_and_transient_failures_finishes_and_learns(tmp_path):
    cfg = tiny(
        "data.num_clients=10",
        "strategy.num_rounds=5",
        "faults.crash_prob=0.3",
        "faults.transient_prob=0.2",
    )
    summary = run_experiment(cfg, tmp_path, quiet=True)
    clients = pd.read_csv(tmp_path / "clients.csv")
    train = clients[clients["phase"] == "train"]
    seen_faults = set()
    for server_round in range(1, 6):
        for client in range(10):  # fraction_train = 1: every client is sent every round
            mine = train[(train["round"] == server_round) & (train["client"] == client)]
            expected = expected_statuses(cfg, server_round, client)
            assert mine.sort_values("attempt")["status"].tolist() == expected, (
                server_round,
                client,
            )
            seen_faults.add(fault_for(cfg.faults, cfg.seed, server_round, client))
    assert {CRASH, TRANSIENT} <= seen_faults  # the run really met both kinds
    failed = train[train["status"].isin(["retried", "failed"])]
    assert failed["error"].str.contains("injected").all()
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert set(rounds["status"]) <= {"ok", "quorum_missed"}
    by_round = rounds.groupby("round")["accuracy"].mean()
    assert by_round.iloc[-1] > by_round.iloc[0] + 0.1
    assert summary["all"]["final_accuracy"] > 0.5
    # A set that missed quorum kept its weights: it has no aggregation interval.
    missed = rounds[rounds["status"] == "quorum_missed"]
    server = pd.read_csv(tmp_path / "server.csv")
    for _, row in missed.iterrows():
        hits = server[
            (server["round"] == row["round"]) & (server["weight_set"] == row["weight_set"])
        ]
        assert hits.empty


def test_every_set_missing_quorum_stops_the_run_with_records_kept(tmp_path):
    cfg = tiny("strategy.num_rounds=5", "faults.crash_prob=1.0", "faults.max_missed_rounds=2")
    with pytest.raises(PwflError, match="stopped after round 2"):
        run_experiment(cfg, tmp_path, quiet=True)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["round"].tolist() == [1, 1, 2, 2]
    assert (rounds["status"] == "quorum_missed").all()
    # Nothing was aggregated: both sets are still the initial model.
    assert rounds["accuracy"].nunique() == 1
    clients = pd.read_csv(tmp_path / "clients.csv")
    assert set(clients.loc[clients["phase"] == "train", "status"]) == {"retried", "failed"}


def test_a_client_that_never_answers_is_a_timeout_and_the_round_goes_on(tmp_path):
    # A hang is simulated time: a ten-minute timeout costs the host no waiting.
    cfg = tiny("faults.hang_prob=0.15", "faults.round_timeout_s=600", "faults.quorum=0.5")
    hung = [
        (r, c) for r in (1, 2) for c in range(4) if fault_for(cfg.faults, cfg.seed, r, c) == HANG
    ]
    assert hung  # the seed gives this setting a hang to wait out
    run_experiment(cfg, tmp_path, quiet=True)
    clients = pd.read_csv(tmp_path / "clients.csv")
    train = clients[clients["phase"] == "train"]
    for r, c in hung:
        row = train[(train["round"] == r) & (train["client"] == c)]
        assert row["status"].tolist() == ["timeout"]
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["round"].max() == 2
    # On the simulated clock the server waited the whole timeout for the silent client.
    for r, _ in hung:
        mine = rounds[rounds["round"] == r]
        assert (mine["round_sim_s"] >= cfg.faults.round_timeout_s).all()
        row = train[(train["round"] == r) & (train["status"] == "timeout")].iloc[0]
        assert row["sim_end_s"] - row["sim_start_s"] == pytest.approx(cfg.faults.round_timeout_s)
        assert not row["aggregated"]
    assert rounds["elapsed_wall_s"].max() < 120  # host seconds: nobody slept out the hang


def _kill_after_checkpoint(args: list[str], checkpoint, round_: int, limit_s: float = 240):
    """Start ``pwfl`` and SIGKILL its whole process group once ``round_`` is saved."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pwfl", *args],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + limit_s
    try:
        while time.time() < deadline:
            if checkpoint.is_file() and load_checkpoint(checkpoint).round >= round_:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return
            if proc.poll() is not None:
                pytest.fail(f"the run ended before round {round_}: {proc.stderr.read()}")
            time.sleep(0.1)
        pytest.fail("the run did not reach the round in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_killed_run_resumes_to_the_rounds_of_an_uninterrupted_run(tmp_path):
    # Clients keep momentum, the server runs FedAvgM and balances the load of a slow
    # device, so the checkpoint must carry client state, optimiser state, straggler
    # estimates and the simulated clock to reach the same numbers.
    overrides = [
        "strategy.num_rounds=4",
        "train.client_state=momentum",
        "strategy.server_opt=fedavgm",
        "strategy.server_momentum=0.5",
        "clients.profile=tiers",
        "clients.tiers=0.75:1.0,0.25:0.2",
        "stragglers.load_balancing=proportional",
    ]
    killed = tmp_path / "killed"
    args = ["run", "--config", str(TINY), "--out", str(killed), "--quiet"]
    for item in overrides:
        args += ["--set", item]
    _kill_after_checkpoint(args, killed / CHECKPOINT_FILE, round_=2)
    saved = load_checkpoint(killed / CHECKPOINT_FILE).round
    assert 2 <= saved < 4
    assert not (killed / "summary.json").exists()  # it died before the end

    refused = subprocess.run(
        [sys.executable, "-m", "pwfl", *args], cwd=ROOT, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "pwfl resume" in refused.stderr

    resumed = subprocess.run(
        [sys.executable, "-m", "pwfl", "resume", str(killed), "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr

    full = tmp_path / "full"
    run_experiment(tiny(*overrides), full, quiet=True)
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        a = repeated(pd.read_csv(killed / name))
        b = repeated(pd.read_csv(full / name))
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)
    assert pd.read_csv(killed / "rounds.csv")["round"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    train = pd.read_csv(full / "clients.csv").query("phase == 'train'")
    assert (train["local_epochs"] < 1).any()  # the load was balanced
    # Pool binding: the server kept each client's momentum, in the checkpoint, for
    # the (client, weight set) pairs that trained and no other.
    kept = {
        tuple(pair) for pair in load_checkpoint(killed / CHECKPOINT_FILE).strategy["client_states"]
    }
    trained = set(train[["client", "weight_set"]].itertuples(index=False, name=None))
    assert kept == {(int(c), int(ws)) for c, ws in trained}
    assert not (killed / "client_state").exists()


@pytest.mark.parametrize(
    "strategy",
    # pwfl-sequential restores through the same code as pwfl (the kill test above);
    # fedavg has its own path (a round offset on Flower's loop).
    ["fedavg", pytest.param("pwfl-sequential", marks=pytest.mark.slow)],
)
def test_resume_from_a_checkpoint_continues_exactly(strategy, tmp_path):
    """A finished 2-round run's checkpoint, told the run has 4 rounds, resumes like a
    run interrupted after round 2 (nothing before round 3 depends on the total)."""
    short = tmp_path / "short"
    run_experiment(tiny(f"strategy.name={strategy}", "strategy.num_rounds=2"), short, quiet=True)
    ckpt = load_checkpoint(short / CHECKPOINT_FILE)
    cfg = tiny(f"strategy.name={strategy}", "strategy.num_rounds=4")
    ckpt.config_toml, ckpt.num_rounds = cfg.to_toml(), 4
    resumed = tmp_path / "resumed"
    shutil.copytree(short, resumed)
    save_checkpoint(resumed / CHECKPOINT_FILE, ckpt)
    run_experiment(cfg, resumed, quiet=True, label=ckpt.label, resume=ckpt)

    full = tmp_path / "full"
    run_experiment(cfg, full, quiet=True)
    a = pd.read_csv(resumed / "rounds.csv")
    b = pd.read_csv(full / "rounds.csv")
    assert a["round"].max() == 4
    pd.testing.assert_frame_equal(repeated(a), repeated(b), check_exact=True)
    # The simulated clock carries on from where the short run stopped.
    assert np.all(np.diff(a["sim_time_s"].to_numpy()) >= 0)


def test_async_mode_retries_transient_failures_and_applies_quorum(tmp_path):
    cfg = tiny(
        "strategy.mode=async",
        "strategy.num_rounds=3",
        "faults.transient_prob=0.4",
        "faults.crash_prob=0.2",
    )
    run_experiment(cfg, tmp_path, quiet=True)
    clients = pd.read_csv(tmp_path / "clients.csv")
    train = clients[clients["phase"] == "train"]
    # Each failed try was answered by a new try of the same client, weight set and round.
    for _, row in train[train["status"] == "retried"].iterrows():
        later = train[
            (train["round"] == row["round"])
            & (train["client"] == row["client"])
            & (train["weight_set"] == row["weight_set"])
            & (train["attempt"] == row["attempt"] + 1)
        ]
        assert len(later) == 1
    assert (train["status"] == "retried").any()
    assert set(train["status"]) <= {"ok", "retried", "failed"}
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert len(rounds) == 2 * 3  # every weight set ran its 3 rounds
    assert set(rounds["status"]) <= {"ok", "quorum_missed"}
    for _, row in rounds.iterrows():  # aggregated only with a quorum of its group
        if row["status"] == "ok":
            assert row["num_clients"] >= -(-row["num_sent"] // 2)
        else:
            assert row["num_clients"] < -(-row["num_sent"] // 2)


def test_client_state_is_kept_per_weight_set_and_a_personal_layer_is_never_averaged(tmp_path):
    """A client that trains set 0 in one round and set 1 in the next keeps one momentum
    per set (set 1 never starts from set 0's); in personal mode the clients keep their
    classifier to themselves and the server's stays what it was."""
    from pwfl import training
    from pwfl.apps.server_app import load_weights
    from pwfl.apps.settings import train_settings

    for binding in ("pool", "node"):
        out = tmp_path / binding
        momentum = tiny(
            "strategy.num_rounds=3",
            "train.client_state=momentum",
            f"simulation.client_binding={binding}",
        )
        run_experiment(momentum, out, quiet=True)
        clients = pd.read_csv(out / "clients.csv").query("phase == 'train'")
        both = clients.groupby("client")["weight_set"].nunique()
        switched = both[both == 2].index
        assert len(switched)  # the complementary split moved some client between sets
        ckpt = load_checkpoint(out / CHECKPOINT_FILE)
        for client in switched:
            if binding == "node":  # each node keeps its own, in files
                folders = sorted(p.name for p in (out / "client_state" / str(client)).iterdir())
                assert folders == ["set-0", "set-1"]
            else:  # the server keeps it, one entry per (client, set)
                for ws in (0, 1):
                    assert [client, ws] in ckpt.strategy["client_states"]
                    names = [k for k in ckpt.arrays if k.startswith(f"client/{client}/{ws}/")]
                    assert names
        if binding == "pool":
            client = switched[0]
            name = next(k for k in ckpt.arrays if k.startswith(f"client/{client}/0/"))
            other = name.replace(f"client/{client}/0/", f"client/{client}/1/")
            # set 1's momentum is not set 0's
            assert not np.array_equal(ckpt.arrays[name], ckpt.arrays[other])

    personal = tiny("train.client_state=personal", "strategy.num_rounds=2")
    run_experiment(personal, tmp_path / "personal", quiet=True)
    settings = train_settings(personal)
    initial = training.initial_state(settings, personal.seed)
    model = training._model_from_state(initial, settings)
    head = training.personal_keys(model)
    final = load_weights(tmp_path / "personal" / "final_weights.npz")
    for ws in ("0", "1"):
        for name in head:
            np.testing.assert_array_equal(final[ws][name], initial[name].numpy())
        body = [k for k in final[ws] if k not in head and k.endswith("weight")]
        assert any(not np.array_equal(final[ws][k], initial[k].numpy()) for k in body)


@pytest.mark.parametrize("binding", ["pool", "node"])
def test_a_personal_run_reports_each_clients_own_model_on_its_held_out_data(tmp_path, binding):
    """In personal mode no model on the server is any client's (the heads stay on the
    clients): the server test is left empty, and the clients evaluate the global body
    with their own head on the examples they held out of training."""
    cfg = tiny(
        "train.client_state=personal",
        "strategy.num_rounds=3",
        "strategy.fraction_evaluate=1.0",
        f"simulation.client_binding={binding}",
    )
    run_experiment(cfg, tmp_path, quiet=True)
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["accuracy"].isna().all() and rounds["loss"].isna().all()
    final = rounds[rounds["round"] == 3]
    assert len(final) == 2 and (final["client_accuracy"] > 0.6).all()  # chance is 0.1
    assert (final["client_loss"] < rounds[rounds["round"] == 1]["client_loss"].max()).all()
