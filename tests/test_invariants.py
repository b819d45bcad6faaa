"""The run checker: real runs pass it, and each invariant catches a record that breaks it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from pwfl.cli import main
from pwfl.config import load_config
from pwfl.errors import PwflError
from pwfl.invariants import INVARIANTS, check_run
from pwfl.runner import run_experiment

# A tiny run in well under a second: four Synthetic-IID clients, logistic regression.
TINY = [
    "simulation.backend=inline",
    "data.name=synthetic-iid",
    "model.name=logreg",
    "data.num_clients=4",
    "strategy.num_rounds=2",
    "strategy.k=2",
    "checkpoint.every=0",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A PWFL run whose first tries often fail once: its clients.csv has retries."""
    out = tmp_path_factory.mktemp("run")
    run_experiment(load_config(None, [*TINY, "faults.transient_prob=0.5"]), out, quiet=True)
    return out


def tampered(run: Path, tmp_path: Path, file: str, edit: Callable[[pd.DataFrame], None]) -> Path:
    """A copy of ``run`` whose ``file`` was edited in place by ``edit``."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    frame = pd.read_csv(copy / file)
    edit(frame)
    frame.to_csv(copy / file, index=False)
    return copy


def broken(path: Path) -> set[str]:
    return {v.invariant for v in check_run(path)}


def train_rows(frame: pd.DataFrame, status: str = "ok") -> pd.Index:
    return frame.index[(frame["phase"] == "train") & (frame["status"] == status)]


def test_a_real_run_with_retries_satisfies_every_invariant(run):
    clients = pd.read_csv(run / "clients.csv")
    assert (clients["status"] == "retried").any()  # the tampering below needs retries
    assert check_run(run) == []


@pytest.mark.parametrize(
    "overrides",
    [
        ["strategy.name=fedavg"],
        ["strategy.name=pwfl-sequential", "clients.profile=tiers"],
        ["strategy.mode=async", "clients.profile=tiers", "strategy.num_rounds=3"],
        ["stragglers.deadline_s=0.03", "clients.profile=tiers"],
        ["strategy.merge=every:1", "comm.compression=int8"],
    ],
)
def test_real_runs_of_other_strategies_satisfy_every_invariant(overrides, tmp_path):
    run_experiment(load_config(None, [*TINY, *overrides]), tmp_path, quiet=True)
    assert [str(v) for v in check_run(tmp_path)] == []


NUMBERS = ["num_examples", "examples_run", "train_measured_s", "loss"]


@pytest.mark.parametrize("give_up", ["stragglers.deadline_s=0.05", "faults.round_timeout_s=0.05"])
def test_a_try_given_up_on_before_its_download_ends_keeps_none_of_its_reply(give_up, tmp_path):
    # Clients 0 and 1 download in no time, 2 and 3 take seconds: the server waits for
    # 0 and 1's replies, and the host (inline, in order) has often run client 2 by then
    # but not 3. Neither has downloaded on the simulated clock when the server gives up.
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "client,speed,up_mbps,down_mbps,latency_ms\n"
        "0,1,50,1000,1\n1,1,50,1000,1\n2,1,50,0.01,1\n3,1,50,0.01,1\n"
    )
    cfg = load_config(None, [*TINY, give_up, "clients.profile=trace", f"clients.trace={trace}"])
    run_experiment(cfg, tmp_path / "run", quiet=True)
    clients = pd.read_csv(tmp_path / "run" / "clients.csv")
    given_up = clients[clients["status"].isin(["late", "timeout"])]
    assert sorted(set(given_up["client"])) == [2, 3]
    assert given_up["download_s"].isna().all()
    assert given_up[NUMBERS].isna().all().all()
    assert [str(v) for v in check_run(tmp_path / "run")] == []


def test_a_late_try_past_its_download_keeps_the_clients_numbers(tmp_path):
    # Clients 2 and 3 compute 10,000 times slower: late after their download ended,
    # when the host held their replies whatever its timing.
    trace = tmp_path / "trace.csv"
    trace.write_text(
        "client,speed,up_mbps,down_mbps,latency_ms\n"
        "0,1,50,1000,1\n1,1,50,1000,1\n2,0.0001,50,1000,1\n3,0.0001,50,1000,1\n"
    )
    overrides = ["stragglers.deadline_s=0.05", "clients.profile=trace", f"clients.trace={trace}"]
    run_experiment(load_config(None, [*TINY, *overrides]), tmp_path / "run", quiet=True)
    clients = pd.read_csv(tmp_path / "run" / "clients.csv")
    late = clients[clients["status"] == "late"]
    assert sorted(set(late["client"])) == [2, 3]
    assert late["download_s"].notna().all()
    assert late[NUMBERS].notna().all().all()
    assert [str(v) for v in check_run(tmp_path / "run")] == []


def test_numbers_of_a_try_given_up_on_before_its_download_break_unheard(run, tmp_path):
    def edit(clients):
        row = train_rows(clients)[0]
        clients.loc[row, "status"] = "late"
        clients.loc[row, ["download_s", "compute_s", "upload_s"]] = float("nan")

    assert "unheard" in broken(tampered(run, tmp_path, "clients.csv", edit))


def test_a_violation_is_one_line_naming_the_run_the_invariant_and_the_rows(run, tmp_path):
    def edit(rounds):
        rounds.loc[0, "num_clients"] += 1

    copy = tampered(run, tmp_path, "rounds.csv", edit)
    (violation,) = [v for v in check_run(copy) if v.invariant == "counted"]
    text = str(violation)
    assert "\n" not in text
    assert text.startswith(f"{copy}: counted: round 1 set 0")
    assert set(INVARIANTS) >= broken(copy)


def test_counted_replies_are_the_num_clients(run, tmp_path):
    def edit(rounds):
        rounds.loc[1, "num_clients"] -= 1

    assert {"counted", "counted-total"} <= broken(tampered(run, tmp_path, "rounds.csv", edit))


def test_examples_of_the_counted_replies_are_the_num_examples(run, tmp_path):
    def edit(rounds):
        rounds.loc[0, "num_examples"] += 7

    assert broken(tampered(run, tmp_path, "rounds.csv", edit)) == {"counted"}


def test_num_sent_counts_first_tries_only(run, tmp_path):
    def edit(rounds):
        rounds.loc[0, "num_sent"] += 1

    assert "sent" in broken(tampered(run, tmp_path, "rounds.csv", edit))


def test_a_set_is_ok_exactly_when_it_made_quorum(run, tmp_path):
    def edit(rounds):
        rounds.loc[0, "status"] = "quorum_missed"
        rounds.loc[0, "num_clients"] = 0
        rounds.loc[0, "num_examples"] = 0

    assert "quorum" in broken(tampered(run, tmp_path, "rounds.csv", edit))


def test_the_aggregated_column_is_checked_when_present(run, tmp_path):
    def agreeing(clients):
        clients["aggregated"] = (clients["phase"] == "train") & (clients["status"] == "ok")

    assert check_run(tampered(run, tmp_path / "a", "clients.csv", agreeing)) == []

    def failed_try_averaged(clients):
        agreeing(clients)
        clients.loc[train_rows(clients, "retried")[0], "aggregated"] = True

    assert broken(tampered(run, tmp_path / "b", "clients.csv", failed_try_averaged)) == {
        "aggregated"
    }

    def counted_reply_left_out(clients):
        agreeing(clients)
        clients.loc[train_rows(clients)[0], "aggregated"] = False

    assert broken(tampered(run, tmp_path / "c", "clients.csv", counted_reply_left_out)) == {
        "aggregated"
    }


def test_a_client_in_two_places_at_once_is_caught(run, tmp_path):
    def edit(clients):
        # The client's round-2 try moved onto its round-1 one, all its times consistent.
        train = clients[clients["phase"] == "train"]
        client = train["client"].iloc[0]
        first = train[(train["client"] == client) & (train["round"] == 1)].index[-1]
        later = train[(train["client"] == client) & (train["round"] == 2)].index[0]
        shift = clients.loc[later, "sim_start_s"] - clients.loc[first, "sim_start_s"]
        clients.loc[later, ["sim_start_s", "sim_end_s"]] -= shift

    assert "no-overlap" in broken(tampered(run, tmp_path, "clients.csv", edit))


@pytest.mark.parametrize("value", [1, -1])
def test_staleness_of_a_sync_reply_is_zero(run, tmp_path, value):
    def edit(clients):
        clients.loc[train_rows(clients)[0], "staleness"] = value

    assert broken(tampered(run, tmp_path, "clients.csv", edit)) == {"staleness"}


def test_a_reply_that_does_not_count_has_no_staleness(run, tmp_path):
    def edit(clients):
        clients.loc[train_rows(clients, "retried")[0], "staleness"] = 0

    assert broken(tampered(run, tmp_path, "clients.csv", edit)) == {"staleness"}


def test_attempts_are_numbered_consecutively_after_retried_tries(run, tmp_path):
    def edit(clients):
        retried = train_rows(clients, "retried")[0]
        after = clients.index[
            (clients["phase"] == "train")
            & (clients["round"] == clients.loc[retried, "round"])
            & (clients["client"] == clients.loc[retried, "client"])
            & (clients["attempt"] == clients.loc[retried, "attempt"] + 1)
        ]
        clients.loc[after, "attempt"] += 1

    assert broken(tampered(run, tmp_path, "clients.csv", edit)) == {"attempts"}


def test_more_tries_than_max_retries_allow_are_caught(tmp_path):
    cfg = load_config(None, [*TINY, "faults.transient_prob=0.5"])
    run_experiment(cfg, tmp_path / "run", quiet=True)
    text = (tmp_path / "run" / "config.toml").read_text()
    assert "max_retries = 2" in text
    (tmp_path / "run" / "config.toml").write_text(
        text.replace("max_retries = 2", "max_retries = 0")
    )
    assert "attempts" in broken(tmp_path / "run")


def test_bytes_of_a_round_are_its_clients_bytes(run, tmp_path):
    def edit(clients):
        clients.loc[train_rows(clients)[0], "bytes_up"] -= 4

    assert {"bytes", "bytes-total"} <= broken(tampered(run, tmp_path, "clients.csv", edit))


def test_a_failed_try_sends_no_update(run, tmp_path):
    def edit(clients):
        row = train_rows(clients, "retried")[0]
        clients.loc[row, "bytes_up"] = clients.loc[row, "bytes_down"]

    assert "bytes" in broken(tampered(run, tmp_path, "clients.csv", edit))


def test_the_parts_of_a_round_trip_add_up(run, tmp_path):
    def edit(clients):
        clients.loc[train_rows(clients)[0], "upload_s"] += 0.01

    assert {"round-trip", "closed-form"} <= broken(tampered(run, tmp_path, "clients.csv", edit))


def test_an_error_reply_takes_its_download_and_the_latency(run, tmp_path):
    def edit(clients):
        clients.loc[train_rows(clients, "retried")[0], "download_s"] *= 2

    assert "round-trip" in broken(tampered(run, tmp_path, "clients.csv", edit))


def test_equal_devices_take_the_clocks_closed_form(run, tmp_path):
    def edit(clients):
        # A consistent round trip, one second of compute too long for its FLOPs.
        row = train_rows(clients)[-1]
        clients.loc[row, ["compute_s", "rtt_s", "sim_end_s"]] += 1.0

    found = broken(tampered(run, tmp_path, "clients.csv", edit))
    assert "closed-form" in found
    assert "round-trip" not in found


def test_tries_lie_within_their_round(run, tmp_path):
    def edit(rounds):
        rounds.loc[rounds["round"] == 1, "sim_time_s"] -= 0.01
        rounds.loc[rounds["round"] == 1, "round_sim_s"] -= 0.01

    assert "in-round" in broken(tampered(run, tmp_path, "rounds.csv", edit))


def test_simulated_time_never_goes_back(run, tmp_path):
    def edit(rounds):
        rounds.loc[rounds.index[-1], "sim_time_s"] = 0.0

    assert "clock-order" in broken(tampered(run, tmp_path, "rounds.csv", edit))


def test_an_aggregation_outside_its_round_is_caught(run, tmp_path):
    def edit(server):
        server.loc[0, "busy_end_s"] += 10.0

    assert "clock-order" in broken(tampered(run, tmp_path, "server.csv", edit))


def test_idle_time_is_the_round_less_the_union_of_aggregations(run, tmp_path):
    def edit(rounds):
        rounds.loc[rounds["round"] == 2, "idle_s"] *= 0.5

    assert broken(tampered(run, tmp_path, "rounds.csv", edit)) == {"idle"}


def test_the_summary_is_what_the_rounds_give(run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["1"]["final_accuracy"] += 0.01
    summary["all"]["total_bytes_up"] += 1
    (copy / "summary.json").write_text(json.dumps(summary))
    (violation,) = check_run(copy)
    assert violation.invariant == "summary"
    assert "1.final_accuracy" in violation.detail
    assert "all.total_bytes_up" in violation.detail


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    with pytest.raises(PwflError, match="is not a run folder") as err:
        check_run(tmp_path)
    assert "\n" not in str(err.value)


def test_pwfl_check_prints_ok_or_the_violations_and_sets_its_exit_code(run, tmp_path, capsys):
    assert main(["check", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"OK {run}"

    def edit(rounds):
        rounds.loc[0, "bytes_up"] += 1

    copy = tampered(run, tmp_path, "rounds.csv", edit)
    assert main(["check", str(run), str(copy)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"OK {run}"
    assert all(line.startswith(f"{copy}: ") for line in out[1:])
    assert any(": bytes: round 1 set 0" in line for line in out[1:])

    assert main(["check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pwfl: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
