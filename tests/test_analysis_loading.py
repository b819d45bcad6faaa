"""Loading run and comparison folders into typed tables, checked on hand-written CSV files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pwfl import analysis

from .conftest import ROOT

ROUNDS_CSV = """\
strategy,seed,round,weight_set,accuracy,num_examples,round_wall_s,elapsed_wall_s,round_sim_s,\
sim_time_s,idle_s,bytes_up
pwfl,0,1,0,0.5,800,3.0,3.0,1.5,1.5,1.0,100
pwfl,0,1,1,0.6,800,3.0,3.0,1.5,1.5,1.0,100
pwfl,0,1,merged,0.7,,3.0,3.0,1.5,1.5,1.0,
"""
CLIENTS_CSV = """\
strategy,seed,round,phase,client,weight_set,num_examples,status,straggler,local_epochs,\
bytes_up,rtt_s
pwfl,0,1,train,0,0,400,ok,False,1.0,50.0,1.25
pwfl,0,1,train,1,1,400,ok,True,0.5,50.0,2.5
pwfl,0,1,evaluate,1,1,400,ok,,,,
"""
SERVER_CSV = """strategy,seed,round,weight_set,busy_start_s,busy_end_s
pwfl,0,1,0,1.0,1.5
"""


def write_run(folder, strategy="pwfl", target=0.8):
    folder.mkdir(parents=True)
    (folder / "rounds.csv").write_text(ROUNDS_CSV.replace("pwfl", strategy))
    (folder / "clients.csv").write_text(CLIENTS_CSV.replace("pwfl", strategy))
    (folder / "server.csv").write_text(SERVER_CSV.replace("pwfl", strategy))
    (folder / "config.toml").write_text(f"seed = 0\n[strategy]\ntarget_accuracy = {target}\n")


def test_loaders_type_every_column(tmp_path):
    write_run(tmp_path / "run")
    rounds = analysis.load_rounds(tmp_path / "run")
    assert rounds["weight_set"].tolist() == ["0", "1", "merged"]
    assert pd.api.types.is_string_dtype(rounds["weight_set"])
    assert str(rounds["num_examples"].dtype) == "Int64" and rounds["num_examples"].isna().sum() == 1
    assert rounds["round"].dtype == np.int64 and rounds["round_sim_s"].dtype == np.float64
    clients = analysis.load_clients(tmp_path / "run")
    assert clients["weight_set"].tolist() == ["0", "1", "1"]
    assert str(clients["straggler"].dtype) == "boolean"
    assert clients["straggler"].tolist()[:2] == [False, True] and clients["straggler"].isna()[2]
    assert str(clients["bytes_up"].dtype) == "Int64" and clients["client"].dtype == np.int64
    assert clients["local_epochs"].dtype == np.float64
    server = analysis.load_server(tmp_path / "run")
    assert server["weight_set"].tolist() == ["0"] and server["busy_end_s"].dtype == np.float64


def test_loaders_name_the_folder_when_files_are_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="rounds.csv"):
        analysis.load_rounds(tmp_path)
    with pytest.raises(FileNotFoundError, match="clients.csv"):
        analysis.load_clients(tmp_path)


def test_load_results_keeps_the_comparisons_runs_and_reads_the_target(tmp_path):
    write_run(tmp_path / "pwfl-seed0", target=0.8)
    write_run(tmp_path / "older-seed0", strategy="older")  # left over from another comparison
    (tmp_path / "comparison.csv").write_text(ROUNDS_CSV)
    results = analysis.load_results(tmp_path)
    assert results.target == 0.8
    assert set(results.clients["strategy"]) == {"pwfl"}
    assert set(results.server["strategy"]) == {"pwfl"}
    assert len(results.clients) == 3
    assert analysis.load_results(tmp_path, target=0.55).target == 0.55


def test_load_results_of_a_comparison_without_run_folders(tmp_path):
    (tmp_path / "comparison.csv").write_text(ROUNDS_CSV)
    results = analysis.load_results(tmp_path)
    assert results.clients is None and results.server is None
    assert results.target == 0.9  # strategy.target_accuracy's default
    summary = results.summary().set_index("weight_set")
    assert summary.loc["all", "final_accuracy_mean"] == pytest.approx(0.55)


def test_repo_root_is_found_from_the_notebooks_folder(tmp_path):
    assert analysis.repo_root(ROOT / "notebooks") == ROOT
    assert analysis.repo_root(ROOT / "pwfl" / "strategies") == ROOT
    with pytest.raises(FileNotFoundError):
        analysis.repo_root(tmp_path)
