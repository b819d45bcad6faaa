"""Unit tests for pwfl.config: defaults, TOML files, overrides, validation and round-trips."""

from __future__ import annotations

import dataclasses

import pytest

from pwfl.config import (
    Config,
    ConfigError,
    DataConfig,
    StrategyConfig,
    TrainConfig,
    config_from_dict,
    config_from_toml,
    load_config,
    num_sampled,
    parse_merge,
)


def _error(overrides: list[str], path=None) -> str:
    """Return the one-line message of the ConfigError raised by ``load_config``."""
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message, f"ConfigError message is not one line: {message!r}"
    return message


# ---------------------------------------------------------------- defaults


def test_defaults_load_and_equal_dataclass_defaults():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.seed == 0
    assert cfg.data == DataConfig()
    assert cfg.data.name == "mnist-5k"
    assert cfg.data.num_clients == 10
    assert cfg.data.partitioner == "iid"
    assert cfg.model.name == "cnn"
    assert cfg.train.local_epochs == 1
    assert cfg.train.lr == pytest.approx(0.02)
    assert cfg.strategy.name == "pwfl"
    assert cfg.strategy.k == 2
    assert cfg.strategy.merge == "none"
    assert cfg.strategy.executor == "threads"  # fastest on one machine: make bench


def test_defaults_with_none_path_and_empty_overrides():
    assert load_config(None, []) == Config()


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.strategy.k = 5  # type: ignore[misc]


# ---------------------------------------------------------------- files and overrides


def test_toml_file_and_overrides(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(
        "seed = 7\n"
        "[data]\n"
        "num_clients = 6\n"
        'partitioner = "dirichlet"\n'
        "alpha = 1\n"
        "[strategy]\n"
        'name = "fedavg"\n'
        "k = 2\n"
        "num_rounds = 4\n"
        "[train]\n"
        "lr = 0.1\n"
    )
    cfg = load_config(path, ["strategy.k=3", "strategy.name=pwfl"])
    assert cfg.seed == 7
    assert cfg.data.num_clients == 6
    assert cfg.data.partitioner == "dirichlet"
    # An integer TOML value for a float field is coerced to float.
    assert cfg.data.alpha == 1.0 and isinstance(cfg.data.alpha, float)
    assert cfg.strategy.k == 3 and isinstance(cfg.strategy.k, int)
    assert cfg.strategy.name == "pwfl"  # bare word falls back to a string
    assert cfg.strategy.num_rounds == 4
    assert cfg.train.lr == 0.1
    # Untouched values keep their defaults.
    assert cfg.train.batch_size == TrainConfig().batch_size
    assert cfg.strategy.group_policy == StrategyConfig().group_policy


def test_path_given_as_str(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[model]\nname = 'mlp'\n")
    assert load_config(str(path)).model.name == "mlp"


def test_overrides_parse_toml_literals():
    cfg = load_config(
        None,
        [
            "seed=3",
            "data.download=true",
            "train.lr=0.5",
            'strategy.merge="every:2"',
            "strategy.merge=every:4",  # later override wins; bare string form
            "train.augment = true",  # whitespace around '=' is allowed
        ],
    )
    assert cfg.seed == 3
    assert cfg.data.download is True
    assert cfg.train.lr == 0.5
    assert cfg.strategy.merge == "every:4"
    assert cfg.train.augment is True


def test_override_without_equals_is_rejected():
    message = _error(["strategy.k"])
    assert "strategy.k" in message


def test_override_into_non_section_is_rejected():
    message = _error(["seed.x=1"])
    assert "seed" in message


# ---------------------------------------------------------------- unknown keys


def test_unknown_key_names_the_key_in_one_line():
    message = _error(["strategy.nme=pwfl"])
    assert "strategy.nme" in message
    assert "strategy.name" in message  # the suggestion


def test_unknown_key_in_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[strategy]\nnme = 'pwfl'\n")
    message = _error([], path)
    assert "strategy.nme" in message


def test_unknown_section_is_rejected():
    message = _error(["stratgy.k=3"])
    assert "stratgy" in message
    assert "strategy" in message


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(ConfigError, match="'sed'"):
        config_from_dict({"sed": 1})


def test_section_must_be_a_table():
    with pytest.raises(ConfigError, match="'data'"):
        config_from_dict({"data": 3})


# ---------------------------------------------------------------- out-of-range values


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("strategy.fraction_train=1.5", "strategy.fraction_train"),
        ("strategy.fraction_train=0", "strategy.fraction_train"),
        ("strategy.fraction_evaluate=-0.1", "strategy.fraction_evaluate"),
        ("train.lr=-0.01", "train.lr"),
        ("train.lr=0", "train.lr"),
        ("train.momentum=1.0", "train.momentum"),
        ("train.local_epochs=0", "train.local_epochs"),
        ("train.batch_size=0", "train.batch_size"),
        ("data.test_fraction=1.0", "data.test_fraction"),
        ("data.num_clients=0", "data.num_clients"),
        ("data.alpha=0", "data.alpha"),
        ("data.classes_per_client=0", "data.classes_per_client"),
        ("data.name=imagenet", "data.name"),
        ("data.partitioner=random", "data.partitioner"),
        ("model.name=resnet", "model.name"),
        ("strategy.name=fedsgd", "strategy.name"),
        ("strategy.num_rounds=0", "strategy.num_rounds"),
        ("strategy.k=0", "strategy.k"),
        ("strategy.min_train_nodes=0", "strategy.min_train_nodes"),
        ("strategy.min_train_nodes=11", "strategy.min_train_nodes"),
        ("strategy.group_policy=greedy", "strategy.group_policy"),
        ("strategy.executor=dask", "strategy.executor"),
        ("strategy.target_accuracy=1.5", "strategy.target_accuracy"),
        ("strategy.merge=sometimes", "strategy.merge"),
        ("simulation.client_cpus=0", "simulation.client_cpus"),
        ("simulation.client_gpus=-1", "simulation.client_gpus"),
        ("simulation.ray_cpus=-2", "simulation.ray_cpus"),
        ("seed=-1", "seed"),
    ],
)
def test_out_of_range_value_names_the_key(override, key):
    message = _error([override])
    assert f"'{key}'" in message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("strategy.k=three", "strategy.k"),
        ("strategy.k=2.0", "strategy.k"),
        ("strategy.k=true", "strategy.k"),
        ("train.lr=true", "train.lr"),
        ('train.lr="0.1"', "train.lr"),
        ("data.download=1", "data.download"),
        ("data.download=yes", "data.download"),
        ("model.name=3", "model.name"),
        ("seed=1.5", "seed"),
        ("data.num_clients=[1, 2]", "data.num_clients"),
    ],
)
def test_wrong_type_is_rejected(override, key):
    message = _error([override])
    assert f"'{key}'" in message
    assert "must be a" in message


def test_k_larger_than_sampled_clients_is_rejected():
    # 4 clients, fraction 0.5 -> max(int(2.0), min_train_nodes=2) = 2 sampled per round.
    message = _error(["data.num_clients=4", "strategy.fraction_train=0.5", "strategy.k=3"])
    assert "'strategy.k'" in message
    assert "2 clients sampled" in message


def test_k_equal_to_sampled_clients_is_accepted():
    cfg = load_config(None, ["data.num_clients=4", "strategy.fraction_train=0.5", "strategy.k=2"])
    assert cfg.strategy.k == 2


def test_k_is_not_checked_against_sample_for_fedavg():
    cfg = load_config(
        None,
        [
            "data.num_clients=4",
            "strategy.fraction_train=0.5",
            "strategy.k=3",
            "strategy.name=fedavg",
        ],
    )
    assert cfg.strategy.k == 3


def test_k_checked_for_pwfl_sequential():
    message = _error(
        [
            "data.num_clients=4",
            "strategy.fraction_train=0.5",
            "strategy.k=3",
            "strategy.name=pwfl-sequential",
        ]
    )
    assert "'strategy.k'" in message


@pytest.mark.parametrize(
    ("num_clients", "fraction", "min_nodes", "expected"),
    [
        (10, 1.0, 2, 10),
        (10, 0.5, 2, 5),
        (10, 0.1, 2, 2),
        (10, 0.25, 1, 2),  # int(2.5) = 2
        (4, 0.5, 2, 2),
        (3, 0.2, 5, 3),  # capped at the number of clients
    ],
)
def test_num_sampled(num_clients, fraction, min_nodes, expected):
    assert num_sampled(num_clients, fraction, min_nodes) == expected


def test_replace_validates_again():
    cfg = load_config()
    assert cfg.replace(seed=5).seed == 5
    with pytest.raises(ConfigError, match="'seed'"):
        cfg.replace(seed=-3)


# ---------------------------------------------------------------- merge policies


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("none", ("none", 0)),
        ("final", ("final", 0)),
        ("every:3", ("every", 3)),
        ("every:1", ("every", 1)),
        ("every:12", ("every", 12)),
    ],
)
def test_parse_merge_valid(text, expected):
    assert parse_merge(text) == expected


BAD_MERGES = ["every:0", "sometimes", "every", "every:", "every:-1", "every:x", "none:2", ""]


@pytest.mark.parametrize("text", [*BAD_MERGES, "final:1"])
def test_parse_merge_invalid(text):
    with pytest.raises(ConfigError) as info:
        parse_merge(text)
    assert "strategy.merge" in str(info.value)
    assert "\n" not in str(info.value)


def test_merge_validated_in_config():
    assert load_config(None, ["strategy.merge=every:3"]).strategy.merge == "every:3"
    assert "'strategy.merge'" in _error(["strategy.merge=every:0"])


# ---------------------------------------------------------------- TOML round trip


def test_to_toml_round_trips_defaults():
    cfg = Config()
    assert config_from_toml(cfg.to_toml()) == cfg


def test_to_toml_round_trips_non_defaults():
    cfg = load_config(
        None,
        [
            "seed=42",
            "data.name=cifar10",
            "data.root=/tmp/somewhere",
            "data.download=true",
            "data.num_clients=12",
            "data.partitioner=pathological",
            "data.classes_per_client=3",
            "data.alpha=0.25",
            "model.name=small-cnn",
            "train.lr=0.125",
            "train.momentum=0",
            "train.augment=true",
            "strategy.name=pwfl-sequential",
            "strategy.k=3",
            "strategy.fraction_train=0.75",
            "strategy.group_policy=balanced",
            "strategy.merge=every:2",
            "strategy.executor=threads",
            "simulation.client_cpus=0.5",
            "simulation.ray_cpus=4",
        ],
    )
    text = cfg.to_toml()
    back = config_from_toml(text)
    assert back == cfg
    assert isinstance(back.train.momentum, float)
    assert back.to_dict() == cfg.to_dict()


def test_config_from_toml_rejects_bad_text():
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_from_toml("seed = = 1")


def test_config_from_toml_validates():
    with pytest.raises(ConfigError, match="'strategy.k'"):
        config_from_toml("[strategy]\nk = 0\n")


# ---------------------------------------------------------------- files


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "does-not-exist.toml"
    message = _error([], path)
    assert str(path) in message


def test_directory_is_not_a_config_file(tmp_path):
    message = _error([], tmp_path)
    assert str(tmp_path) in message


def test_malformed_file_names_the_path(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[strategy\nk = 3\n")
    message = _error([], path)
    assert str(path) in message
    assert "not valid TOML" in message


def test_flower_run_config_is_one_key_holding_the_experiment():
    """Flower accepts --run-config overrides of the keys pyproject.toml lists: the one
    ``experiment`` key (TOML text) and the app's own keys."""
    import tomllib

    from pwfl.apps.settings import APP_KEYS, EXPERIMENT_KEY, config_from_run_config, run_config

    from .conftest import ROOT

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(listed) == {EXPERIMENT_KEY, *APP_KEYS}
    cfg = config_from_run_config(listed)
    assert cfg == load_config(None, ["strategy.num_rounds=3"])  # a short run, else defaults
    assert config_from_run_config({EXPERIMENT_KEY: ""}) == Config()
    assert config_from_run_config(run_config(cfg, "out")) == cfg


@pytest.mark.parametrize(
    ("run_config", "named"),
    [
        ({"strategy.k": 3}, "run-config key 'strategy.k' is not pwfl's"),
        ({"experiment": 3}, "run-config key 'experiment' must be the experiment's TOML text"),
        ({"experiment": "strategy.k = "}, "not valid TOML"),
        ({"experiment": "strategy.k = 0"}, "config key 'strategy.k' = 0 is invalid"),
        ({"experiment": 'data.name = "synthetic"'}, "does not fit data.name = 'synthetic'"),
    ],
)
def test_a_bad_run_config_is_one_line_naming_it(run_config, named):
    from pwfl.apps.settings import config_from_run_config

    with pytest.raises(ConfigError) as info:
        config_from_run_config(run_config)
    assert named in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("policy", ["loss-aware", "alpha-fair"])
def test_loss_aware_groups_with_personal_state_are_refused_in_one_line(policy):
    """Personal state leaves the server's validation losses empty: loss-aware (or
    alpha-fair) would silently allocate at random."""
    with pytest.raises(ConfigError, match="strategy.group_policy") as err:
        load_config(
            None,
            ["train.client_state=personal", f"strategy.group_policy={policy}", "model.name=mlp"],
        )
    assert "\n" not in str(err.value)


def test_a_search_with_personal_state_is_refused_before_it_runs(tmp_path):
    from pwfl.search import check_search

    path = tmp_path / "search.toml"
    path.write_text("[[weight_set]]\ntrain.lr = 0.01\n\n[[weight_set]]\ntrain.lr = 0.1\n")
    cfg = load_config(path, ["train.client_state=personal", "model.name=mlp"])
    with pytest.raises(ConfigError, match="train.client_state"):
        check_search(cfg)


def test_the_arithmetic_cannot_vary_within_one_comparison():
    from pwfl.compare import plan_runs

    cfg = load_config(None, ["model.name=mlp"])
    with pytest.raises(ConfigError, match="one pwfl compare per mode"):
        plan_runs(cfg, ["fedavg"], [0], ("reproducibility.arithmetic", ["portable", "native"]))
