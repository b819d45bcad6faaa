"""The same apps on Flower's Deployment Engine: a SuperLink and SuperNodes as processes."""

from __future__ import annotations

import pandas as pd
import pytest

from pwfl.config import load_config
from pwfl.deploy import deploy

from .conftest import CONFIGS

TINY = CONFIGS / "tiny.toml"


def test_deploy_two_supernodes_writes_the_records_and_leaves_no_process(tmp_path):
    # The Ray executor: the ServerApp process starts its own Ray session. One round and
    # no client evaluation: every message starts a ClientApp process of its own.
    cfg = load_config(
        TINY, ["strategy.executor=ray", "strategy.num_rounds=1", "strategy.fraction_evaluate=0"]
    )
    seen = []
    summary = deploy(cfg, tmp_path, clients=2, timeout_s=600, on_poll=seen.append)
    assert seen, "the run was watched while it went on"
    deployment = seen[-1]
    assert len(deployment.started_pids()) >= 3  # SuperLink + 2 SuperNodes at least
    assert deployment.alive() == []
    for name in ("rounds.csv", "clients.csv", "server.csv", "summary.json", "checkpoint.npz"):
        assert (tmp_path / name).is_file(), name
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["round"].tolist() == [1, 1]
    assert (rounds["status"] == "ok").all()
    clients = pd.read_csv(tmp_path / "clients.csv")
    train = clients[clients["phase"] == "train"]
    # Two nodes, partition ids 0 and 1, each trains one of the two weight sets.
    assert sorted(train["client"]) == [0, 1]
    assert sorted(train["weight_set"].astype(str)) == ["0", "1"]
    assert summary["all"]["final_accuracy"] > 0.5


@pytest.mark.slow
def test_a_killed_supernode_is_recorded_as_failed_and_the_run_finishes(tmp_path):
    # Flower notices a dead node after about a minute of missed heartbeats.
    cfg = load_config(TINY, ["strategy.num_rounds=3", "faults.quorum=0.3"])
    killed = []

    def kill_after_round_one(deployment):
        if not killed and (tmp_path / "rounds.csv").is_file():
            deployment.kill_node(2)
            killed.append(True)

    deploy(cfg, tmp_path, clients=3, timeout_s=900, on_poll=kill_after_round_one)
    assert killed
    clients = pd.read_csv(tmp_path / "clients.csv")
    train = clients[clients["phase"] == "train"]
    assert (train.loc[train["round"] == 1, "status"] == "ok").all()
    later = train[(train["client"] == 2) & (train["round"] > 1)]
    assert not later.empty and set(later["status"]) <= {"failed", "retried", "timeout"}
    others = train[(train["client"] != 2) & (train["round"] > 1)]
    assert (others["status"] == "ok").all()
    rounds = pd.read_csv(tmp_path / "rounds.csv")
    assert rounds["round"].max() == 3


@pytest.mark.slow
def test_weight_sets_of_their_own_deploy_in_the_run_config(tmp_path):
    # The [[weight_set]] tables travel in the run config's experiment text.
    path = tmp_path / "sets.toml"
    path.write_text(
        TINY.read_text()
        + '\n[[weight_set]]\nname = "slow"\ntrain.lr = 0.005\n'
        + '\n[[weight_set]]\nname = "mlp"\nmodel.name = "mlp"\n'
    )
    cfg = load_config(path, ["strategy.num_rounds=1", "strategy.fraction_evaluate=0"])
    deploy(cfg, tmp_path / "run", clients=2, timeout_s=600)
    rounds = pd.read_csv(tmp_path / "run" / "rounds.csv")
    assert rounds["set_name"].tolist() == ["slow", "mlp"]
    assert (rounds["status"] == "ok").all()
    kept = load_config(tmp_path / "run" / "config.toml")
    assert [kept.for_set(ws).train.lr for ws in range(2)] == [0.005, cfg.train.lr]
    assert kept.for_set(1).model.name == "mlp"
