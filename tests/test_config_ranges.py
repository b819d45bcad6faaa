"""Every numeric config key against values that cannot be meant (NaN, infinities, text,
nothing) and against its declared bounds; the code that reads the keys infinity is
allowed for; and the choice lists read from the modules that implement them."""

from __future__ import annotations

import ast
import dataclasses
import math
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

from pwfl import config as config_module
from pwfl import data as data_module
from pwfl.config import (
    RANGE,
    SECTIONS,
    Config,
    ConfigError,
    StragglerConfig,
    StrategyConfig,
    load_config,
    parse_tiers,
    ranges,
    registered_choices,
)

from .conftest import ROOT

INF_KEYS = {
    "stragglers.deadline_s",
    "clients.up_mbps",
    "clients.down_mbps",
    "faults.round_timeout_s",
    "server.up_mbps",
    "server.down_mbps",
}


def _numeric_fields() -> dict[str, tuple[dataclasses.Field, bool]]:
    """Dotted key -> (field, is an integer) of every int or float field, found from
    the dataclasses themselves rather than from what the config package declares."""
    found = {}
    for section, cls in (("", Config), *SECTIONS.items()):
        for f in dataclasses.fields(cls):
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind in ("int", "float"):
                found[f"{section}.{f.name}" if section else f.name] = (f, kind == "int")
    return found


def _field_docstrings() -> dict[str, str]:
    """Dotted key -> the docstring under the field in the config package's source."""
    body = [
        node
        for path in sorted((ROOT / "pwfl" / "config").glob("*.py"))
        for node in ast.parse(path.read_text()).body
    ]
    section_of = {cls.__name__: section for section, cls in SECTIONS.items()}
    section_of["Config"] = ""
    docs = {}
    for node in body:
        if not isinstance(node, ast.ClassDef) or node.name not in section_of:
            continue
        section = section_of[node.name]
        for stmt, after in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                name = stmt.target.id
                docs[f"{section}.{name}" if section else name] = after.value.value
    return docs


NUMERIC = _numeric_fields()
DOCS = _field_docstrings()


def _error(overrides: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def _text(value: float, integer: bool) -> str:
    """A value as it would be typed after ``--set key=``."""
    return str(int(value)) if integer else repr(float(value))


# ---------------------------------------------------------------- declarations


def test_every_numeric_key_declares_its_range_and_has_a_docstring():
    assert len(NUMERIC) > 30  # the walk found the sections' fields
    assert set(ranges()) == set(NUMERIC)
    for key, (f, _) in NUMERIC.items():
        assert RANGE in f.metadata, f"{key} declares no range"
        rng = f.metadata[RANGE]
        assert rng.low is not None or rng.high is not None, f"{key} has no bound"
        assert DOCS.get(key), f"{key} has no docstring"


def test_declared_ranges_admit_their_defaults():
    defaults = Config().to_flat()
    for key, rng in ranges().items():
        assert rng.admits(defaults[key]), key


# ---------------------------------------------------------------- values that cannot be meant

BAD_TEXTS = ["nan", "-nan", "inf", "+inf", "-inf", "ten", ""]


@pytest.mark.parametrize(
    ("key", "text"),
    [
        pytest.param(key, text, id=f"{key}={text}")
        for key in NUMERIC
        for text in BAD_TEXTS
        if not (key in INF_KEYS and text in ("inf", "+inf"))
    ],
)
def test_value_that_cannot_be_meant_is_refused_naming_the_key(key, text):
    message = _error([f"{key}={text}"])
    assert message.startswith(f"config key '{key}' = ")
    assert "is invalid: must be a" in message


def test_nan_message_states_the_rule():
    assert _error(["train.lr=nan"]) == (
        "config key 'train.lr' = nan is invalid: must be a finite number > 0"
    )


def test_inf_is_accepted_exactly_for_the_keys_whose_docstring_documents_it():
    accepted = set()
    for key in NUMERIC:
        try:
            cfg = load_config(None, [f"{key}=inf"])
        except ConfigError:
            continue
        section, _, name = key.partition(".")
        assert getattr(getattr(cfg, section), name) == math.inf
        accepted.add(key)
    documented = {key for key in NUMERIC if re.search(r"\binf\b", DOCS[key])}
    assert accepted == documented == INF_KEYS


def test_deadline_zero_still_means_no_deadline():
    assert load_config(None, ["stragglers.deadline_s=0"]).stragglers.deadline_s == 0.0
    assert "no deadline" in DOCS["stragglers.deadline_s"]
    assert "0 and inf" in DOCS["stragglers.deadline_s"]


def test_booleans_are_not_numbers():
    for key in NUMERIC:
        assert f"config key '{key}' = True" in _error([f"{key}=true"])


# ---------------------------------------------------------------- bounds


def _outside(key: str) -> list[float]:
    """Values just past each declared bound of ``key``."""
    rng = ranges()[key]
    integer = NUMERIC[key][1]
    out = []
    if rng.low is not None:
        if rng.low_open:
            out.append(rng.low)
        else:
            out.append(rng.low - 1 if integer else math.nextafter(rng.low, -math.inf))
    if rng.high is not None:
        if rng.high_open:
            out.append(rng.high)
        else:
            out.append(rng.high + 1 if integer else math.nextafter(rng.high, math.inf))
    return out


@pytest.mark.parametrize("key", list(NUMERIC))
def test_declared_bounds_are_enforced_and_the_default_accepted(key):
    integer = NUMERIC[key][1]
    default = Config().to_flat()[key]
    section, _, name = key.partition(".")
    cfg = load_config(None, [f"{key}={_text(default, integer)}"])
    assert (getattr(getattr(cfg, section), name) if name else cfg.seed) == default
    outside = _outside(key)
    assert outside
    for value in outside:
        message = _error([f"{key}={_text(value, integer)}"])
        assert message.startswith(f"config key '{key}' = "), message
        assert ranges()[key].rule(integer) in message


def test_rule_words():
    rules = {key: ranges()[key].rule(NUMERIC[key][1]) for key in NUMERIC}
    assert rules["train.lr"] == "must be a finite number > 0"
    assert rules["train.momentum"] == "must be a finite number in [0, 1)"
    assert rules["strategy.k"] == "must be an integer >= 1"
    assert rules["strategy.trim_beta"] == "must be a finite number in [0, 0.5)"
    assert rules["clients.up_mbps"] == "must be a number > 0 or inf (no bandwidth limit)"
    assert rules["stragglers.deadline_s"] == "must be a number >= 0 or inf (no deadline)"


def test_tiers_refuse_non_finite_numbers():
    for text in ("0.5:inf,0.5:1", "0.5:nan,0.5:1", "inf:1", "nan:1"):
        with pytest.raises(ConfigError, match="clients.tiers"):
            parse_tiers(text)
    assert parse_tiers("0.5:1,0.5:0.5") == [(0.5, 1.0), (0.5, 0.5)]


# ---------------------------------------------------------------- cross-field rules


def test_hang_faults_need_a_finite_round_timeout():
    message = _error(["faults.hang_prob=0.1", "faults.round_timeout_s=inf"])
    assert message.startswith("config key 'faults.hang_prob' = 0.1 is invalid")
    assert "faults.round_timeout_s" in message
    cfg = load_config(None, ["faults.crash_prob=0.1", "faults.round_timeout_s=inf"])
    assert cfg.faults.round_timeout_s == math.inf


def test_config_with_infinities_round_trips_through_toml_and_the_run_config():
    from flwr.common.config import parse_config_args

    from pwfl.apps.settings import config_from_run_config, run_config, run_config_argument

    cfg = load_config(None, [f"{key}=inf" for key in INF_KEYS])
    assert config_module.config_from_toml(cfg.to_toml()) == cfg
    assert config_from_run_config(run_config(cfg)) == cfg
    parsed = parse_config_args([run_config_argument(cfg.to_toml())])  # as flwr run reads it
    assert config_from_run_config(parsed) == cfg


# ---------------------------------------------------------------- where infinity is read


def test_infinite_bandwidth_moves_bytes_in_no_time():
    from pwfl.clock import Simulation, transfer_seconds

    assert transfer_seconds(10**9, math.inf) == 0.0
    sim = Simulation(math.inf, math.inf, cores=1)
    sim.transfer("up", "a", 10**9, math.inf, "done")
    assert sim.pop() == (0.0, "done")


def test_trace_rows_follow_the_config_ranges(tmp_path):
    from pwfl.devices import read_trace

    path = tmp_path / "trace.csv"
    header = "client,speed,up_mbps,down_mbps,latency_ms\n"
    path.write_text(header + "0,1,inf,inf,0\n")
    assert read_trace(path, [0])[0].up_mbps == math.inf
    for row, named in [
        ("0,nan,1,1,1", "speed"),
        ("0,inf,1,1,1", "speed"),
        ("0,1,nan,1,1", "up_mbps"),
        ("0,1,1,-inf,1", "down_mbps"),
        ("0,1,1,1,inf", "latency_ms"),
        ("0,1,1,1,nan", "latency_ms"),
    ]:
        path.write_text(header + row + "\n")
        with pytest.raises(ConfigError) as info:
            read_trace(path, [0])
        assert f"line 2: {named} = " in str(info.value), row


class _Bytes:
    def __init__(self, n: int):
        self.n = n

    def count_bytes(self) -> int:
        return self.n


def _sent(mid: str, client: int) -> SimpleNamespace:
    config = {"client-id": client, "weight-set": 0, "local-epochs": 1.0}
    content = {"config": config, "arrays": _Bytes(10**6)}
    return SimpleNamespace(
        metadata=SimpleNamespace(message_id=mid, dst_node_id=100 + client), content=content
    )


def _answer(to: str, error: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        metadata=SimpleNamespace(reply_to_message_id=to),
        content={
            "metrics": {"num-examples": 10, "train-time-s": 1.0},
            "arrays": _Bytes(10**6),
        },
        has_error=lambda: error,
        error=SimpleNamespace(reason="Message: injected crash fault", code=2),
    )


@pytest.mark.parametrize("deadline", ["0", "inf"])
def test_an_endless_deadline_is_no_deadline(deadline):
    from .scripted import run_scripted

    cfg = load_config(
        None,
        [
            f"stragglers.deadline_s={deadline}",
            "data.num_clients=3",
            "strategy.name=fedavg",
            "strategy.num_rounds=1",
            "strategy.fraction_evaluate=0",
            "checkpoint.every=0",
            "clock.compute=measured",
        ],
    )
    # Client 2 takes 1,000 s: it is waited for, never late.
    rows, _ = run_scripted(cfg, lambda client, _: 1000.0 if client == 2 else 1.0)
    _, clients, _ = rows.frames()
    assert set(clients["status"]) == {"ok"}
    assert clients["rtt_s"].max() > 1000


# ---------------------------------------------------------------- choice lists


def test_config_imports_neither_torch_nor_flower_nor_ray():
    code = (
        "import sys, pwfl.config; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'flwr', 'ray', 'torch'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_choice_lists_are_the_registrys_and_the_config_lists_none_of_its_own():
    from pwfl import registry

    choices = registered_choices()
    assert choices["data.name"] is registry.DATASETS
    assert choices["model.name"] is registry.MODELS
    assert choices["simulation.backend"] is registry.BACKENDS
    names = {name for name in vars(registry) if name.isupper()}
    own = {k: v for k, v in choices.items() if k not in ("strategy.name", "strategy.mode")}
    assert {id(v) for v in own.values()} <= {id(getattr(registry, n)) for n in names}
    from pwfl import strategies  # the strategies are their own registry

    assert choices["strategy.name"] == tuple(strategies.STRATEGIES)
    assert choices["strategy.mode"] == tuple(strategies.MODES)
    for name in ("DATASETS", "PARTITIONERS", "MODELS", "EXECUTORS", "CLIENT_STATES"):
        assert not hasattr(config_module, name), f"pwfl.config lists {name} again"


def test_every_registered_name_is_accepted_and_no_other(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("client,speed,up_mbps,down_mbps,latency_ms\n")
    for key, names in registered_choices().items():
        section, _, name = key.partition(".")
        for value in names:
            extra = [f"clients.trace='{trace}'"] if value == "trace" else []
            if key == "data.name" and not data_module.INFO[value].images:
                extra.append("model.name=mlp")  # the default CNN needs images
            cfg = load_config(None, [f"{key}={value}", *extra])
            assert getattr(getattr(cfg, section), name) == value
        message = _error([f"{key}=no-such-name"])
        assert message == (
            f"config key '{key}' = 'no-such-name' is invalid: choose one of {', '.join(names)}"
        )


def test_a_name_added_to_the_registry_is_accepted_by_the_config(monkeypatch):
    from pwfl import registry

    assert "'model.name'" in _error(["model.name=tiny"])
    monkeypatch.setattr(registry, "MODELS", (*registry.MODELS, "tiny"))
    assert load_config(None, ["model.name=tiny"]).model.name == "tiny"


def test_registries_drive_their_implementations():
    from pwfl.aggregation import EXECUTORS, make_executor
    from pwfl.clock import ClientTiming
    from pwfl.stragglers import BALANCING, StragglerTracker
    from pwfl.strategies.server_optimizer import OPTIMIZERS, ServerOptimizer

    for name in ("serial", "threads"):  # "ray" would start a Ray session
        executor = make_executor(name, workers=2)
        assert isinstance(executor, EXECUTORS[name])
        executor.shutdown()
    for name, flower_cls in OPTIMIZERS.items():
        if flower_cls is not None:
            flower = ServerOptimizer(StrategyConfig(server_opt=name))._flower
            assert type(flower) is flower_cls
    epochs = {}
    for rule in BALANCING:
        tracker = StragglerTracker(StragglerConfig(load_balancing=rule), base_epochs=2)
        tracker.observe(0, "cnn", ClientTiming(0.0, 2.0, 0.0, 0.0), epochs=2)
        tracker.observe(1, "cnn", ClientTiming(0.0, 2.0, 0.0, 0.0), epochs=2)
        tracker.observe(2, "cnn", ClientTiming(0.0, 20.0, 0.0, 0.0), epochs=2)
        epochs[rule] = tracker.plan("cnn", range(3))
    assert epochs["off"] == [2, 2, 2]
    assert epochs["halve"] == [3, 3, 1]  # the slow client is a straggler
    assert epochs["proportional"] == [2, 2, pytest.approx(0.2)]
