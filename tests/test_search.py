"""The federated search (pwfl.search): K settings as K weight sets against K separate runs."""

from __future__ import annotations

import tomllib

import numpy as np
import pandas as pd
import pytest

from pwfl.config import ConfigError, load_config, num_sampled
from pwfl.partition import split_complementary
from pwfl.search import PWFL_RUN, run_name, run_search, search_summary, separate_run

from .conftest import CONFIGS

TINY = CONFIGS / "tiny.toml"


def search_config(tmp_path, *tables: str, overrides: tuple[str, ...] = ()):
    """tiny.toml with these ``[[weight_set]]`` tables (one per set) appended."""
    path = tmp_path / "search.toml"
    path.write_text(TINY.read_text() + "".join(f"\n[[weight_set]]\n{t}\n" for t in tables))
    return load_config(path, [f"strategy.k={len(tables)}", *overrides])


def cohort(cfg) -> int:
    s = cfg.strategy
    return num_sampled(cfg.data.num_clients, s.fraction_train, s.min_train_nodes)


def test_a_set_with_a_server_optimiser_gets_a_separate_run_with_it(tmp_path):
    cfg = search_config(
        tmp_path, 'name = "plain"', 'name = "adam"\nstrategy.server_opt = "fedadam"'
    )
    separate = separate_run(cfg, 1)
    assert separate.strategy.server_opt == "fedadam"
    assert separate.strategy.k == 1 and separate.strategy.merge == "none"
    assert separate_run(cfg, 0).strategy.server_opt == "none"


@pytest.mark.parametrize(("clients", "k"), [(10, 4), (10, 3), (5, 2), (20, 4), (44, 3), (49, 5)])
def test_each_separate_run_samples_as_many_clients_as_its_pwfl_group(tmp_path, clients, k):
    tables = [f'name = "s{i}"' for i in range(k)]
    cfg = search_config(tmp_path, *tables, overrides=(f"data.num_clients={clients}",))
    groups = split_complementary(list(range(cohort(cfg))), k, np.random.default_rng(0))
    assert [cohort(separate_run(cfg, ws)) for ws in range(k)] == [len(g) for g in groups]


def test_a_search_needs_the_complementary_policy(tmp_path):
    cfg = search_config(
        tmp_path, 'name = "a"', 'name = "b"', overrides=("strategy.group_policy=loss-aware",)
    )
    with pytest.raises(ConfigError, match="strategy.group_policy") as info:
        run_search(cfg, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def write_run(folder, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "rounds.csv", index=False)
    clients = [{"round": 1, "phase": "train", "status": "ok", "compute_s": 1.0}]
    pd.DataFrame(clients).to_csv(folder / "clients.csv", index=False)


def test_the_search_picks_on_validation_and_reports_the_picks_test_accuracy(tmp_path):
    cfg = search_config(tmp_path, 'name = "a"', 'name = "b"')
    # Set a is best on the test set, b on validation: b must be picked.
    scores = {"a": (0.9, 0.7), "b": (0.8, 0.8)}
    out = tmp_path / "out"
    pwfl_rows, separate = [], {}
    for ws, (name, (test, val)) in enumerate(scores.items()):
        for r in (1, 2):
            row = {"round": r, "accuracy": test - (2 - r) * 0.3, "sim_time_s": float(r)}
            row |= {"val_accuracy": val - (2 - r) * 0.3, "weight_set": str(ws), "set_name": name}
            pwfl_rows.append(row)
            separate.setdefault(ws, []).append({**row, "weight_set": "0"})
    write_run(out / PWFL_RUN, pwfl_rows)
    for ws, rows in separate.items():
        write_run(out / run_name(ws), rows)
    summary = search_summary(cfg, out).set_index("approach")
    for approach in ("one PWFL run", "separate FedAvg runs"):
        row = summary.loc[approach]
        assert row["picked"] == "b"
        assert row["picked_val_accuracy"] == pytest.approx(0.8)
        assert row["picked_accuracy"] == pytest.approx(0.8)  # b's test accuracy
        assert row["final a"] == pytest.approx(0.9) and row["final val a"] == pytest.approx(0.7)


def test_a_search_with_a_server_optimiser_and_unequal_groups_runs_end_to_end(tmp_path):
    cfg = search_config(
        tmp_path,
        'name = "plain"',
        'name = "adam"\nstrategy.server_opt = "fedadam"\nstrategy.server_lr = 0.01',
        # 100 resampled examples per client: the same cohorts in a third of the time.
        overrides=(
            "data.num_clients=5",
            "strategy.fraction_evaluate=0",
            "data.partitioner=resample",
            "data.examples_per_client=100",
        ),
    )
    out = tmp_path / "out"
    summary = run_search(cfg, out).set_index("approach")
    pwfl = pd.read_csv(out / PWFL_RUN / "rounds.csv")
    for ws in range(2):
        own = pd.read_csv(out / run_name(ws) / "rounds.csv")
        group = pwfl[pwfl["weight_set"].astype(str) == str(ws)]
        # The same client work: as many clients every round as the set's PWFL group.
        assert own["num_sent"].tolist() == group["num_sent"].tolist() == [3 - ws] * 2
        assert own["num_clients"].tolist() == group["num_clients"].tolist()
    saved = tomllib.loads((out / run_name(1) / "config.toml").read_text())
    assert saved["strategy"]["server_opt"] == "fedadam"
    for approach, row in summary.iterrows():
        vals = {name: row[f"final val {name}"] for name in ("plain", "adam")}
        assert row["picked"] == max(vals, key=vals.get), approach
        assert row["picked_accuracy"] == row[f"final {row['picked']}"]
    assert (out / "search.csv").is_file()


def test_the_search_script_refuses_bad_input_in_one_line(tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "experiments" / "lr_search.py"),
            "--set",
            "train.client_state=personal",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.client_state" in lines[0], done.stderr[-500:]
    assert not (tmp_path / "out").exists()
