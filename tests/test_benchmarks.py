"""The benchmark scripts run (tiny settings) and write the tables they promise."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from .conftest import ROOT


def smoke(cases: str) -> str:
    """``bench.py --smoke --only cases``'s stdout, once it has exited cleanly."""
    result = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--smoke", "--only", cases],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_bench_smoke_writes_aggregation_and_scale_tables():
    stdout = smoke("clock,aggregation,scale,links")
    assert "## aggregation" in stdout and "## scale" in stdout and "## links" in stdout
    links = pd.read_csv(ROOT / "results" / "bench" / "smoke-links.csv")
    assert links["events"].tolist() == [4 * n for n in links["clients"]]  # 4 a client
    # The simulated round depends on the case alone: a server link that fits every
    # transfer at its cap gives the round of an unlimited one.
    free = links[links["server_mbps"] == float("inf")].set_index("clients")["sim_round_s"]
    fits = links[links["server_mbps"] == 10_000].set_index("clients")["sim_round_s"]
    assert fits.tolist() == free.tolist() and (links["host_s"] > 0).all()
    agg = pd.read_csv(ROOT / "results" / "bench" / "smoke-aggregation.csv")
    for name in ("serial_s", "threads_s", "ray_s"):
        assert (agg[name] > 0).all(), name
    ratio = (agg["serial_s"] / agg["threads_s"]).tolist()
    assert agg["threads_speedup"].tolist() == pytest.approx(ratio)
    scale = pd.read_csv(ROOT / "results" / "bench" / "smoke-scale.csv")
    pool = scale[scale["binding"] == "pool"]
    assert pool["clients"].tolist() == [200, 2_000]
    assert (scale["sampled_per_round"] == 10).all()
    node = scale[scale["binding"] == "node"]
    assert node["clients"].tolist() == [200]  # only where one node per client runs
    assert (scale["peak_rss_gib"] > 0.1).all()  # this process alone holds more
    assert (scale["startup_s"] > 0).all() and (scale["mean_round_s"] > 0).all()
    assert (pool.groupby("strategy")["startup_ratio"].first() == 1.0).all()


def test_bench_rejects_an_unknown_case():
    result = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--only", "speed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown case 'speed'" in result.stderr


def test_bench_smoke_writes_the_startup_table():
    stdout = smoke("startup")
    assert "## startup" in stdout
    table = pd.read_csv(ROOT / "results" / "bench" / "smoke-startup.csv")
    assert table["backend"].tolist() == ["inline"]
    assert (table["round_s"] > 0).all() and (table["startup_s"] > 0).all()
    assert (table["teardown_s"] >= 0).all()
    assert table["outside_s"].tolist() == pytest.approx(
        (table["total_s"] - table["round_s"]).tolist()
    )
    # Start-up, the round and teardown lie within the process's life.
    assert (table["startup_s"] + table["round_s"] <= table["total_s"]).all()


def test_bench_smoke_writes_the_cohorts_table():
    stdout = smoke("cohorts")
    assert "## cohorts" in stdout
    table = pd.read_csv(ROOT / "results" / "bench" / "smoke-cohorts.csv")
    assert (table["clients_per_round"] == 4).all() and (table["rounds"] == 2).all()
    ratios = table["setup"].str.startswith("ratio ")
    setups = table[~ratios].set_index("setup")
    assert len(setups) == 5 and len(table[ratios]) == 7
    plain, flower = (
        "plain PyTorch (process pool)",
        "Flower run_simulation (FedAvg, node per client)",
    )
    # Every setup that trained (a pwfl variant not implemented yet is NaN) did the same
    # work: the same clients, seeds and settings give the same test accuracy.
    ran = setups.dropna(subset=["total_s"])
    assert {plain, flower, "pwfl messages=client"} <= set(ran.index)
    assert ran["final_accuracy"].tolist() == pytest.approx(
        [ran["final_accuracy"].iloc[0]] * len(ran), abs=0.01
    )
    for name in ("startup_s", "first_round_s", "steady_round_s", "total_s", "peak_rss_gib"):
        assert (ran[name] > 0).all(), name
    summed = (ran["startup_s"] + ran["first_round_s"]).tolist()
    assert ran["to_round_2_s"].tolist() == pytest.approx(summed)
    ratio = table.set_index("setup").loc["ratio pwfl messages=client / Flower", "steady_round_s"]
    assert ratio == pytest.approx(
        setups.loc["pwfl messages=client", "steady_round_s"] / setups.loc[flower, "steady_round_s"]
    )
