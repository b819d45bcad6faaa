"""The strategies' own tables, ``[strategy.<name>]``: where keys live, which tables a run
reads, and how tables flatten and round-trip."""

from __future__ import annotations

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from pwfl.compare import parse_vary, plan_runs
from pwfl.config import (
    Config,
    check_single_run,
    config_from_dict,
    config_from_toml,
    load_config,
    recorded_config_from_toml,
)
from pwfl.errors import ConfigError
from pwfl.runner import run_experiment
from pwfl.strategies import FedAsync, FedBuff, build_policy
from pwfl.strategies.fedbuff import FedBuffSettings


@pytest.mark.parametrize("key", ["buffer_size", "concurrency", "staleness_exponent"])
def test_a_fedbuff_key_at_the_top_level_names_its_new_table(key):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["strategy.name=fedbuff", f"strategy.{key}=1"])
    assert str(err.value) == f"strategy.{key} moved: write it as {key} under [strategy.fedbuff]"


def test_fedbuff_reads_its_own_table_and_keeps_its_defaults():
    cfg = load_config(None, ["strategy.name=fedbuff", "strategy.fedbuff.buffer_size=3"])
    policy = build_policy(cfg)
    assert isinstance(policy, FedBuff)
    assert policy.buffer_size == 3
    assert policy.exponent == FedBuffSettings().staleness_exponent
    assert (FedBuffSettings().buffer_size, FedBuffSettings().concurrency) == (5, 0)
    assert FedBuffSettings().staleness_exponent == 0.5


def test_set_and_vary_reach_a_strategy_table():
    cfg = load_config(None, ["strategy.name=fedbuff", "strategy.fedbuff.concurrency=4"])
    assert FedBuff.clients_in_flight(cfg) == 4
    runs = plan_runs(cfg, ["fedbuff"], [0], parse_vary("strategy.fedbuff.concurrency=3,2"))
    assert [label for label, _, _ in runs] == ["fedbuff concurrency=3", "fedbuff concurrency=2"]
    assert [FedBuff.clients_in_flight(run) for _, _, run in runs] == [3, 2]


def test_fedbuff_keys_are_range_checked_in_their_table():
    with pytest.raises(ConfigError, match="strategy.fedbuff.buffer_size"):
        load_config(None, ["strategy.name=fedbuff", "strategy.fedbuff.buffer_size=0"])


def test_an_unknown_table_is_refused_with_the_closest_name():
    with pytest.raises(ConfigError, match=r"did you mean \[strategy\.fedbuff\]"):
        load_config(None, ["strategy.fedbuf.concurrency=2"])


def test_a_fedasync_run_refuses_fedbuffs_table():
    cfg = load_config(None, ["strategy.name=fedasync", "strategy.fedbuff.concurrency=2"])
    with pytest.raises(ConfigError, match=r"\[strategy\.fedbuff\] is not read"):
        check_single_run(cfg)


def test_a_single_run_refuses_a_table_it_does_not_read_before_writing(tmp_path):
    cfg = load_config(None, ["strategy.name=fedavg", "strategy.fedprox.mu=0.1"])
    with pytest.raises(ConfigError, match=r"\[strategy\.fedprox\] is not read"):
        run_experiment(cfg, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_a_comparison_gives_each_run_only_its_own_table():
    base = load_config(
        None, ["strategy.name=pwfl", "strategy.fedprox.mu=0.1", "strategy.fedasync.alpha=0.9"]
    )
    runs = plan_runs(base, ["fedavg", "fedprox", "fedasync"], [0])
    for label, _, run in runs:
        check_single_run(run)  # nothing left that the run would not read
        assert [name for name, _ in run.strategy.tables] == (
            [label] if label in ("fedprox", "fedasync") else []
        )
    assert build_policy(runs[1][2]).settings.mu == 0.1
    assert isinstance(build_policy(runs[2][2]), FedAsync)


def test_an_empty_table_is_no_table():
    plain = load_config(None, ["strategy.name=fedprox"])
    empty = config_from_toml('[strategy]\nname = "fedprox"\n[strategy.fedprox]\n')
    assert empty == plain
    assert hash(empty) == hash(plain)
    assert empty.to_dict() == plain.to_dict()
    assert empty.to_toml() == plain.to_toml()


def test_table_values_take_their_fields_types():
    whole = config_from_toml('[strategy]\nname = "fedasync"\n[strategy.fedasync]\nalpha = 1\n')
    assert (
        whole.to_toml()
        == load_config(None, ["strategy.name=fedasync", "strategy.fedasync.alpha=1.0"]).to_toml()
    )


TABLES = st.fixed_dictionaries(
    {},
    optional={
        "fedprox": st.fixed_dictionaries({}, optional={"mu": st.sampled_from([0.0, 0.1, 1])}),
        "fedbuff": st.fixed_dictionaries(
            {},
            optional={
                "buffer_size": st.integers(1, 4),
                "concurrency": st.integers(0, 4),
                "staleness_exponent": st.sampled_from([0.0, 0.5, 2]),
            },
        ),
        "fedasync": st.fixed_dictionaries(
            {}, optional={"alpha": st.sampled_from([0.3, 1]), "concurrency": st.integers(0, 4)}
        ),
    },
)


def _literal(value):
    """A value as the TOML literal an override gives it."""
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


@settings(max_examples=40, deadline=None)
@given(tables=TABLES, name=st.sampled_from(["fedprox", "fedbuff", "fedasync"]))
def test_tables_round_trip_through_dict_toml_and_flat_keys(tables, name):
    cfg = config_from_dict({"strategy": {"name": name, **tables}})
    assert config_from_dict(cfg.to_dict()) == cfg
    assert config_from_toml(cfg.to_toml()) == cfg
    flat = cfg.to_flat()
    assert not any(isinstance(value, dict) for value in flat.values())
    for table, keys in tables.items():
        for key in keys:
            assert f"strategy.{table}.{key}" in flat
    assert load_config(None, [f"{k}={_literal(v)}" for k, v in flat.items()]) == cfg


def test_flat_keys_of_the_defaults_hold_no_table():
    assert not any(key.count(".") > 1 for key in Config().to_flat())


def test_a_moved_key_of_a_fedasync_run_names_fedasyncs_own_table():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["strategy.name=fedasync", "strategy.concurrency=3"])
    assert str(err.value) == (
        "strategy.concurrency moved: write it as concurrency under [strategy.fedasync]"
    )


@pytest.mark.parametrize("name", ["fedavg", "fedbuff", "fedasync"])
def test_a_run_folders_config_from_before_the_move_still_loads(name):
    # Earlier versions wrote FedBuff's keys under [strategy] for every run.
    old = Config().to_dict()
    old["strategy"].update(name=name, buffer_size=3, concurrency=2, staleness_exponent=0.7)
    old_text = tomli_w.dumps(old)
    with pytest.raises(ConfigError, match="moved"):
        config_from_toml(old_text)
    cfg = recorded_config_from_toml(old_text)
    expected = {
        "fedavg": {},
        "fedbuff": {"buffer_size": 3, "concurrency": 2, "staleness_exponent": 0.7},
        "fedasync": {"concurrency": 2, "staleness_exponent": 0.7},
    }[name]
    assert dict(cfg.strategy.table(name)) == expected
    assert cfg.strategy.name == name


def test_compare_refuses_to_vary_a_table_no_compared_strategy_reads():
    cfg = load_config(None, [])
    with pytest.raises(ConfigError, match=r"\[strategy.fedprox\] table, which none of"):
        plan_runs(cfg, ["fedavg"], [0], parse_vary("strategy.fedprox.mu=0.1,0.2"))
    with pytest.raises(ConfigError, match="lists a value twice"):
        plan_runs(cfg, ["fedavg"], [0], parse_vary("train.lr=0.1,0.1"))
    runs = plan_runs(cfg, ["fedavg", "fedprox"], [0], parse_vary("strategy.fedprox.mu=0.1,0.2"))
    assert len(runs) == 4
