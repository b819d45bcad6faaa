"""Weight sets that differ: per-set settings from ``[[weight_set]]`` tables."""

from __future__ import annotations

import pandas as pd
import pytest

from pwfl.config import ConfigError, load_config
from pwfl.runner import run_experiment

from .conftest import CONFIGS

TINY = CONFIGS / "tiny.toml"
LR_SEARCH = CONFIGS / "lr_search.toml"
SMALL = ["data.partitioner=resample", "data.examples_per_client=100"]
"""A tenth of tiny's training data per client: the sets' runs take a second each."""


def two_sets(tmp_path, *tables: str, extra: str = ""):
    """tiny.toml with these ``[[weight_set]]`` tables appended."""
    path = tmp_path / "sets.toml"
    path.write_text(TINY.read_text() + extra + "".join(f"\n[[weight_set]]\n{t}\n" for t in tables))
    return path


def set_rows(folder, weight_set: str) -> pd.DataFrame:
    rounds = pd.read_csv(folder / "rounds.csv")
    rows = rounds[rounds["weight_set"].astype(str) == weight_set]
    columns = ["round", "accuracy", "loss", "client_accuracy", "client_loss", "train_loss"]
    return rows[columns].reset_index(drop=True)


def test_each_set_trains_exactly_as_a_run_whose_every_set_has_its_settings(tmp_path):
    a, b = 0.01, 0.05
    mixed = load_config(two_sets(tmp_path, f"train.lr = {a}", f"train.lr = {b}"), SMALL)
    run_experiment(mixed, tmp_path / "mixed", quiet=True)
    run_experiment(load_config(TINY, [*SMALL, f"train.lr={a}"]), tmp_path / "a", quiet=True)
    run_experiment(load_config(TINY, [*SMALL, f"train.lr={b}"]), tmp_path / "b", quiet=True)
    pd.testing.assert_frame_equal(set_rows(tmp_path / "mixed", "0"), set_rows(tmp_path / "a", "0"))
    pd.testing.assert_frame_equal(set_rows(tmp_path / "mixed", "1"), set_rows(tmp_path / "b", "1"))
    # And the two settings did train differently.
    assert not set_rows(tmp_path / "a", "1").equals(set_rows(tmp_path / "b", "1"))


def test_an_mlp_set_beside_a_cnn_set_trains_both_and_names_them(tmp_path):
    cfg = load_config(
        two_sets(tmp_path, 'name = "cnn"', 'name = "mlp"\nmodel.name = "mlp"'),
        ["model.name=cnn", "data.partitioner=resample", "data.examples_per_client=250"],
    )
    run_experiment(cfg, tmp_path / "run", quiet=True)
    rounds = pd.read_csv(tmp_path / "run" / "rounds.csv")
    assert rounds["set_name"].tolist() == ["cnn", "mlp"] * 2
    final = rounds.groupby("set_name")["accuracy"].last()
    assert (final > 0.2).all()  # both trained (chance is 0.1)
    with pytest.raises(ConfigError, match="different models") as info:
        cfg.with_overrides(["strategy.merge=final"])
    assert "\n" not in str(info.value)


def test_set_overrides_on_the_command_line_edit_the_files_tables():
    cfg = load_config(LR_SEARCH, ["weight_set.3.train.lr=0.1", "weight_set.0.name=slow"])
    assert [cfg.for_set(ws).train.lr for ws in range(4)] == [0.005, 0.02, 0.05, 0.1]
    assert cfg.set_name(0) == "slow" and cfg.set_name(3) == "lr 0.2"
    assert cfg.for_set(2).model == cfg.model and cfg.for_set(2).data == cfg.data


def test_the_resolved_config_reads_back_with_its_tables(tmp_path):
    from pwfl.apps.settings import config_from_run_config, run_config
    from pwfl.config import config_from_toml

    cfg = load_config(LR_SEARCH)
    assert config_from_toml(cfg.to_toml()) == cfg
    assert config_from_run_config(run_config(cfg)) == cfg  # as Flower's run config carries it


def test_the_tables_travel_to_flower_in_the_run_config_file_and_on_the_command_line(tmp_path):
    """What ``pwfl deploy`` hands ``flwr run --run-config``, read back by Flower's own
    parser and then by the apps, is the config with its tables."""
    from flwr.common.config import parse_config_args

    from pwfl.apps.settings import config_from_run_config, run_config_argument
    from pwfl.deploy import run_config_file

    cfg = load_config(LR_SEARCH, ['weight_set.0.name="slow \\\\ \\"quoted\\"\\tset"'])
    assert '"' in cfg.to_toml() and "\\" in cfg.to_toml()  # what Flower's pattern cuts at
    path = run_config_file(cfg, tmp_path / "out", tmp_path / "run-config.toml")
    parsed = parse_config_args([str(path)])
    assert parsed["out-dir"] == str((tmp_path / "out").resolve())
    assert config_from_run_config(parsed) == cfg
    argument = f"{run_config_argument(cfg.to_toml())} out-dir='{tmp_path}'"
    parsed = parse_config_args([argument])
    assert parsed == {"experiment": cfg.to_toml(), "out-dir": str(tmp_path)}
    assert config_from_run_config(parsed).set_name(0) == 'slow \\ "quoted"\tset'


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["strategy.k=3"], "[[weight_set]] tables"),
        (["weight_set.0.train.lrr=0.1"], "weight_set.0.train.lr'"),
        (["weight_set.1.data.num_clients=3"], "cannot differ between weight sets"),
        (["weight_set.4.train.lr=0.1"], "has 4"),
        (["weight_set.2.train.lr=-1"], "weight set 2 (lr 0.05)"),
        (["strategy.name=fedavg"], "need pwfl or pwfl-sequential"),
        (["weight_set.1.name=lr 0.005"], "must differ between sets"),
    ],
)
def test_bad_weight_set_tables_are_one_line(overrides, named):
    with pytest.raises(ConfigError) as info:
        load_config(LR_SEARCH, overrides)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_set_ranking_and_the_worst_set_per_round():
    from pwfl import analysis

    rounds = pd.DataFrame(
        {
            "strategy": "pwfl",
            "seed": 0,
            "round": [1, 1, 1, 2, 2, 2, 2],
            "weight_set": ["0", "1", "2", "0", "1", "2", "merged"],
            "set_name": ["a", "b", "c", "a", "b", "c", "merged"],
            "accuracy": [0.5, 0.7, 0.6, 0.9, 0.8, 0.9, 0.95],
        }
    )
    ranking = analysis.set_ranking(rounds)
    assert ranking[ranking["round"] == 1]["set_name"].tolist() == ["b", "c", "a"]
    assert ranking[ranking["round"] == 2]["rank"].tolist() == [1, 1, 3]  # a tie shares 1
    worst = analysis.worst_set(rounds).set_index("round")
    assert worst["worst_accuracy"].tolist() == [0.5, 0.8]  # the merged row is no set
    assert worst["best_accuracy"].tolist() == [0.7, 0.9]
    assert worst.loc[1, "mean_accuracy"] == pytest.approx(0.6)


def test_a_sets_own_epochs_scale_its_balanced_share(tmp_path):
    """Load balancing plans a share of the shared epochs; a set with its own
    ``local_epochs`` runs that share times its own over the shared (here x 3)."""
    from .scripted import run_scripted

    path = tmp_path / "sets.toml"
    path.write_text('[[weight_set]]\nname = "a"\n\n[[weight_set]]\nname = "b"\n')
    overrides = [
        "data.num_clients=4",
        "strategy.num_rounds=3",
        "strategy.executor=serial",
        "strategy.fraction_evaluate=0",
        "checkpoint.every=0",
        "clock.compute=measured",  # the scripted clients report their compute time
        "stragglers.load_balancing=proportional",
    ]
    shared = load_config(path, overrides)
    own = load_config(path, [*overrides, "weight_set.1.train.local_epochs=3"])

    def epochs(cfg) -> pd.DataFrame:
        # Client c computes 1 + c seconds an epoch: four speeds, four shares.
        rows, _ = run_scripted(cfg, lambda client, server_round: 1.0 + client)
        train = rows.frames()[1].query("phase == 'train'")
        return train.set_index(["round", "client"])[["weight_set", "local_epochs"]].sort_index()

    base, scaled = epochs(shared), epochs(own)
    assert base["weight_set"].equals(scaled["weight_set"])  # the same groups
    factor = scaled["weight_set"].astype(str).map({"0": 1.0, "1": 3.0})
    expected = (base["local_epochs"] * factor).rename("local_epochs")
    pd.testing.assert_series_equal(scaled["local_epochs"], expected)
    assert base["local_epochs"].nunique() > 1  # the shares were balanced, not all 1


def test_a_clients_training_seed_is_drawn_per_round_client_and_weight_set():
    """Two weight sets trained by one client in one round get their own batch order and
    dropout; the same (round, client, set) gets the same ones again."""
    import torch

    from pwfl import training
    from pwfl.apps.settings import train_settings

    cfg = load_config(TINY)

    def settings(server_round, client, ws):
        return train_settings(cfg, server_round, client, {"weight-set": ws})

    assert settings(3, 1, 0).seed != settings(3, 1, 1).seed
    assert settings(3, 1, 1).seed == settings(3, 1, 1).seed
    keys = [(r, c, ws) for r in (1, 2) for c in (0, 1) for ws in (0, 1)]
    assert len({settings(*key).seed for key in keys}) == len(keys)
    # The seed is the batch order: the same state and data train to different weights.
    generator = torch.Generator().manual_seed(0)
    data = training.ClientData(
        torch.randn(64, 1, 28, 28, generator=generator), torch.randint(0, 10, (64,))
    )
    state = training.initial_state(settings(3, 1, 0), seed=0)
    first, _ = training.train(state, data, settings(3, 1, 0))
    second, _ = training.train(state, data, settings(3, 1, 1))
    again, _ = training.train(state, data, settings(3, 1, 1))
    assert any(not torch.equal(first[k], second[k]) for k in first)
    assert all(torch.equal(second[k], again[k]) for k in second)
