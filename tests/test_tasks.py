"""A task per weight set: ``data`` keys in ``[[weight_set]]`` tables (multi-model FL)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pwfl import data as data_module
from pwfl.allocation import assign_sets, restrict
from pwfl.config import ConfigError, config_from_dict, load_config
from pwfl.invariants import check_run
from pwfl.population import Population
from pwfl.runner import run_experiment
from pwfl.seeding import rng_for, seed_for

from .conftest import CONFIGS

TINY = CONFIGS / "tiny.toml"
HOST = ("_wall_s", "_measured_s")

THREE = (
    'name = "digits"\ndata.name = "digits"\nmodel.name = "mlp"\nstrategy.target_accuracy = 0.3',
    'name = "mnist1d"\ndata.name = "mnist1d"\nmodel.name = "cnn1d"\n'
    'data.partitioner = "resample"\ndata.examples_per_client = 60\n'
    "strategy.target_accuracy = 0.2",
    'name = "synthetic"\ndata.name = "synthetic"\nmodel.name = "logreg"\ntrain.lr = 0.1\n'
    "strategy.target_accuracy = 0.25",
)
"""Three tasks of unequal difficulty, each with its own model, data and target."""


def with_tables(tmp_path, *tables: str, extra: str = "", name: str = "tasks.toml"):
    """tiny.toml with ``extra`` and these ``[[weight_set]]`` tables appended."""
    path = tmp_path / name
    path.write_text(TINY.read_text() + extra + "".join(f"\n[[weight_set]]\n{t}\n" for t in tables))
    return path


def three_tasks(tmp_path, *overrides: str):
    return load_config(
        with_tables(tmp_path, *THREE),
        ["strategy.k=3", "data.num_clients=6", "strategy.fraction_evaluate=1", *overrides],
    )


def non_host(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame if c.endswith(HOST)])


def test_sets_with_equal_data_share_one_task_and_task_0_draws_with_the_seed(tmp_path):
    cfg = load_config(
        with_tables(tmp_path, 'data.name = "digits"', "train.lr = 0.1", 'data.name = "digits"'),
        ["strategy.k=3", "data.num_clients=6", "seed=7"],
    )
    assert cfg.task_of(0) == cfg.task_of(2) == 0 and cfg.task_of(1) == 1
    assert [d.name for d in cfg.tasks()] == ["digits", "mnist-5k"]
    assert cfg.task_seed(0) == cfg.task_seed(2) == 7
    assert cfg.task_seed(1) == seed_for(7, "task-data", 1) != 7
    assert cfg.set_data(1) == (cfg.data, cfg.task_seed(1))
    assert cfg.targets() == cfg.strategy.target_accuracy  # no set has its own


def test_each_task_has_its_own_target_in_the_summaries(tmp_path):
    cfg = three_tasks(tmp_path)
    assert cfg.targets() == {"0": 0.3, "1": 0.2, "2": 0.25}


@pytest.mark.parametrize(
    ("table", "overrides", "named"),
    [
        (
            'data.name = "mnist1d"\nmodel.name = "cnn"',
            [],
            "weight set 0 (0): config key 'model.name'",
        ),
        ('data.name = "digits"', ["strategy.group_policy=balanced"], "strategy.group_policy"),
        ('data.name = "digits"\nmodel.name = "mlp"', ["strategy.merge=final"], "different"),
        ("data.participation = 0.5", [], "strategy.group_policy"),
        ("data.num_clients = 3", [], "cannot differ between weight sets"),
    ],
)
def test_bad_task_tables_are_one_line(tmp_path, table, overrides, named):
    path = with_tables(tmp_path, table, "train.lr = 0.1")
    with pytest.raises(ConfigError) as info:
        cfg = load_config(path, overrides)
        data_module.check_inputs(cfg)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_participation_outside_a_task_table_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="data.participation") as info:
        load_config(TINY, ["data.participation=0.5"])
    assert "[[weight_set]]" in str(info.value) and "\n" not in str(info.value)


def test_a_model_that_does_not_fit_its_task_lists_the_models_that_do(tmp_path):
    path = with_tables(tmp_path, "train.lr = 0.1", 'data.name = "mnist1d"\nmodel.name = "cnn"')
    with pytest.raises(ConfigError) as info:
        data_module.check_inputs(load_config(path))
    message = str(info.value)
    assert message.startswith("weight set 1 (1): config key 'model.name' = 'cnn'")
    assert "'mnist1d'" in message and "cnn1d" in message.split("models that fit it:")[1]


def test_one_task_in_tables_gives_every_non_host_column_of_the_run_without_them(tmp_path):
    shared = ["data.name=mnist1d", "model.name=cnn1d"]
    plain = load_config(TINY, shared)
    tables = load_config(
        with_tables(tmp_path, 'data.name = "mnist1d"', 'data.name = "mnist1d"'),
        ["model.name=cnn1d"],
    )
    assert len(tables.tasks()) == 1 and tables.data == plain.data.__class__(
        **{**plain.data.__dict__, "name": "mnist-5k"}
    )
    run_experiment(plain, tmp_path / "plain", quiet=True)
    run_experiment(tables, tmp_path / "tables", quiet=True)
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        a, b = (pd.read_csv(tmp_path / d / name) for d in ("plain", "tables"))
        pd.testing.assert_frame_equal(non_host(a), non_host(b), check_exact=True)


def test_a_three_task_run_tests_each_task_on_its_own_data(tmp_path):
    cfg = three_tasks(tmp_path)
    run_experiment(cfg, tmp_path / "run", quiet=True)
    rounds = pd.read_csv(tmp_path / "run" / "rounds.csv")
    assert rounds.groupby("set_name").size().to_dict() == {
        "digits": 2,
        "mnist1d": 2,
        "synthetic": 2,
    }
    # Each task's server test set: its own data set's, of its own size.
    sizes = {ws: len(data_module.server_test_data(*cfg.set_data(ws))) for ws in range(3)}
    assert len(set(sizes.values())) == 3
    clients = pd.read_csv(tmp_path / "run" / "clients.csv")
    trained = clients[(clients["phase"] == "train") & (clients["status"] == "ok")]
    for row in trained.itertuples():
        own = data_module.client_size(*cfg.set_data(int(row.weight_set)), int(row.client))
        assert row.num_examples == own
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["target_accuracy"] == {"0": 0.3, "1": 0.2, "2": 0.25}
    for ws in ("0", "1", "2"):
        assert summary[ws]["final_accuracy"] > 0.1  # every task trained past chance
    assert check_run(tmp_path / "run") == []


def test_a_client_holds_a_task_with_its_participation_probability():
    # Two sets, the second a task held by 30% of the clients.
    raw = load_config(TINY, ["data.num_clients=2000", "strategy.group_policy=random"]).to_dict()
    raw["weight_set"] = [{}, {"data": {"name": "digits", "participation": 0.3}}]
    cfg = config_from_dict(raw)
    people = Population(cfg, lambda client, ws: 1)
    held = [people.holds(c, 1) for c in range(2000)]
    assert all(people.holds(c, 0) for c in range(50))
    assert 0.27 < np.mean(held) < 0.33
    expected = [
        float(rng_for(cfg.seed, "task-participation", cfg.task_of(1), c).random()) < 0.3
        for c in range(20)
    ]
    assert held[:20] == expected


def test_restricted_rows_draw_only_held_tasks_with_the_same_uniforms():
    probs = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [0.3, 0.3, 0.4]])
    held = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=bool)
    rows = restrict(probs, held)
    expected = np.array([[2 / 3, 0, 1 / 3], [0, 0.375, 0.625], [0.5, 0, 0.5], [0, 0, 0]])
    np.testing.assert_allclose(rows, expected)
    u = np.random.default_rng(3).random(4)
    picks = assign_sets(rows, np.random.default_rng(3))
    by_hand = [0 if u[0] < 2 / 3 else 2, 1 if u[1] < 0.375 else 2, 0 if u[2] < 0.5 else 2, -1]
    assert picks.tolist() == by_hand


def test_clients_train_only_the_tasks_they_hold(tmp_path):
    path = with_tables(
        tmp_path,
        "train.lr = 0.05",
        'data.name = "digits"\nmodel.name = "mlp"\ndata.participation = 0.5',
    )
    cfg = load_config(path, ["data.num_clients=10", "strategy.group_policy=random"])
    run_experiment(cfg, tmp_path / "run", quiet=True)
    clients = pd.read_csv(tmp_path / "run" / "clients.csv")
    people = Population(cfg, lambda client, ws: 1)
    pairs = clients[["client", "weight_set"]].drop_duplicates()  # trained and evaluated
    assert len(pairs[pairs["weight_set"] == 1]) > 0
    assert all(people.holds(int(c), int(ws)) for c, ws in pairs.itertuples(index=False))
    assert check_run(tmp_path / "run") == []


def test_three_tasks_on_one_node_per_client_give_the_numbers_of_a_pool(tmp_path):
    pool = three_tasks(tmp_path, "simulation.pool_size=2")
    node = three_tasks(tmp_path, "simulation.client_binding=node")
    run_experiment(pool, tmp_path / "pool", quiet=True)
    run_experiment(node, tmp_path / "node", quiet=True)
    for name in ("rounds.csv", "clients.csv", "server.csv"):
        a, b = (pd.read_csv(tmp_path / d / name) for d in ("pool", "node"))
        pd.testing.assert_frame_equal(non_host(a), non_host(b), check_exact=True, obj=name)


def test_a_task_no_client_holds_is_one_line(tmp_path):
    path = with_tables(tmp_path, "train.lr = 0.05", 'data.name = "digits"\nmodel.name = "mlp"\n'
                       "data.participation = 0.001")  # fmt: skip
    with pytest.raises(ConfigError, match="weight_set.1.data.participation") as info:
        load_config(path, ["strategy.group_policy=random"])
    assert "none of the first 4 clients" in str(info.value) and "\n" not in str(info.value)


def test_a_shared_data_set_that_no_set_trains_on_is_never_loaded(tmp_path):
    # cifar10 is not in data.root here: loading it would stop the run.
    cfg = three_tasks(
        tmp_path, "data.name=cifar10", "data.root=/nonexistent", "strategy.num_rounds=1"
    )
    run_experiment(cfg, tmp_path / "run", quiet=True)
    assert len(pd.read_csv(tmp_path / "run" / "rounds.csv")) == 3
