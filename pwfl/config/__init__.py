"""The experiment configuration: one typed, frozen, validated object read from TOML.

Usage::

    cfg = load_config("experiments/configs/quick.toml", ["strategy.k=3"])
    cfg.strategy.k  # 3

Every field is declared once with its meaning beside it (``learning.py``: data, model,
training, strategy, communication; ``system.py``: devices, stragglers, faults, clock,
server, checkpoints, simulation, arithmetic), and every numeric field with the
:class:`Range` it accepts (``ranges()`` lists them). A number is finite unless its
field's docstring says what ``inf`` means for it; NaN is never valid. The names a
choice key accepts (``model.name``, ``strategy.executor``, ...) are listed in
:mod:`pwfl.registry` (``registered_choices()``), which the implementing modules key
their tables by. ``load_config`` (``loading.py``) rejects unknown keys and invalid
values (``validation.py``) with a :class:`ConfigError` whose message is one line naming
the key and the fix. Reading and validating a config loads neither PyTorch nor Flower.
"""

from pwfl.config.experiment import PER_SET_KEYS, SECTIONS, Config, WeightSetConfig
from pwfl.config.learning import CommConfig, DataConfig, ModelConfig, StrategyConfig, TrainConfig
from pwfl.config.loading import (
    config_from_dict,
    config_from_toml,
    load_config,
    recorded_config_from_toml,
    strategy_settings,
)
from pwfl.config.ranges import RANGE, Range, ranged
from pwfl.config.system import (
    CheckpointConfig,
    ClientsConfig,
    ClockConfig,
    FaultsConfig,
    ReproducibilityConfig,
    ServerConfig,
    SimulationConfig,
    StragglerConfig,
)
from pwfl.config.validation import (
    check_single_run,
    num_sampled,
    parse_merge,
    parse_set_weights,
    parse_tiers,
    ranges,
    registered_choices,
    validate,
)
from pwfl.errors import ConfigError
from pwfl.registry import BACKENDS

__all__ = [
    "ranged",
    "strategy_settings",
    "BACKENDS",
    "PER_SET_KEYS",
    "RANGE",
    "SECTIONS",
    "CheckpointConfig",
    "ClientsConfig",
    "ClockConfig",
    "CommConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "FaultsConfig",
    "ModelConfig",
    "Range",
    "ReproducibilityConfig",
    "ServerConfig",
    "SimulationConfig",
    "StragglerConfig",
    "StrategyConfig",
    "TrainConfig",
    "WeightSetConfig",
    "check_single_run",
    "config_from_dict",
    "config_from_toml",
    "recorded_config_from_toml",
    "load_config",
    "num_sampled",
    "parse_merge",
    "parse_set_weights",
    "parse_tiers",
    "ranges",
    "registered_choices",
    "validate",
]
