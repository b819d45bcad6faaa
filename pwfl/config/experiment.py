"""The whole experiment: the sections together, and each weight set's own settings.

Usage::

    cfg = load_config("experiments/configs/lr_search.toml")
    cfg.for_set(2).train.lr     # the settings weight set 2 trains with
    cfg.to_toml()               # the resolved config, as every run folder keeps it
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import tomli_w

from pwfl.config.learning import CommConfig, DataConfig, ModelConfig, StrategyConfig, TrainConfig
from pwfl.config.ranges import ranged
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
from pwfl.seeding import rng_for, seed_for

TASK_KEYS = (
    "data.name",
    "data.partitioner",
    "data.alpha",
    "data.classes_per_client",
    "data.examples_per_client",
    "data.partition_by",
    "data.synthetic_alpha",
    "data.synthetic_beta",
    "data.test_fraction",
    "data.validation_fraction",
    "data.client_holdout",
    "data.participation",
    "data.hf_dataset",
    "data.hf_features",
    "data.hf_label",
    "data.hf_test_split",
    "strategy.target_accuracy",
)
"""The keys that make a weight set's task: its data set, how it is split among the
clients, its held-out sets and its target. Weight sets whose ``data`` keys are equal
share one task (one data set, one split); ``data.num_clients`` is the one population
every task is spread over, so it is shared."""

PER_SET_KEYS = (
    "train.lr",
    "train.momentum",
    "train.local_epochs",
    "train.batch_size",
    "train.augment",
    "model.name",
    "strategy.server_opt",
    "strategy.server_lr",
    "strategy.server_momentum",
    *TASK_KEYS,
)
"""The keys a ``[[weight_set]]`` table may give its weight set; all else is shared."""


@dataclass(frozen=True)
class WeightSetConfig:
    """One weight set's own settings: a ``[[weight_set]]`` table of the config.

    ```toml
    [[weight_set]]
    name = "lr 0.05"
    train.lr = 0.05
    ```
    """

    name: str = ""
    """The set's name in the records and figures (default: its number)."""
    overrides: tuple[tuple[str, Any], ...] = ()
    """(dotted key of ``PER_SET_KEYS``, value) pairs, in the order given."""

    def to_table(self) -> dict[str, Any]:
        """The TOML table this set was read from."""
        table: dict[str, Any] = {"name": self.name} if self.name else {}
        for key, value in self.overrides:
            section, leaf = key.split(".")
            table.setdefault(section, {})[leaf] = value
        return table


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    seed: int = ranged(0, ge=0)
    """The one experiment seed; every random choice derives from it."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    clients: ClientsConfig = field(default_factory=ClientsConfig)
    stragglers: StragglerConfig = field(default_factory=StragglerConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    reproducibility: ReproducibilityConfig = field(default_factory=ReproducibilityConfig)
    weight_set: tuple[WeightSetConfig, ...] = ()
    """Per-set settings, one table per weight set (``strategy.k`` of them), or none:
    every set then trains with the shared settings."""

    def for_set(self, weight_set: int) -> Config:
        """The config weight set ``weight_set`` trains with: the shared one with the
        set's own ``[[weight_set]]`` keys applied (itself when there are none)."""
        if not self.weight_set:
            return self
        return _set_config(self, weight_set)

    def tasks(self) -> tuple[DataConfig, ...]:
        """The run's tasks: the distinct data configs of its weight sets, in the order
        of the first set that trains each (one, the shared ``data``, without
        ``[[weight_set]]`` tables or when none of them sets a ``data`` key)."""
        return _tasks(self)

    def task_of(self, weight_set: int) -> int:
        """The task weight set ``weight_set`` trains: its index in :meth:`tasks`."""
        if not self.weight_set:
            return 0
        return self.tasks().index(self.for_set(weight_set).data)

    def task_seed(self, weight_set: int) -> int:
        """The seed of the data of weight set ``weight_set``'s task: the experiment seed
        for task 0 (so a run of one task draws what a run without tasks draws), and
        one derived from (seed, task) for each other task, so tasks are split among
        the clients independently of each other."""
        task = self.task_of(weight_set)
        return self.seed if task == 0 else seed_for(self.seed, "task-data", task)

    def set_data(self, weight_set: int) -> tuple[DataConfig, int]:
        """(data config, data seed) of weight set ``weight_set``'s task: what every
        function of :mod:`pwfl.data` takes."""
        return self.for_set(weight_set).data, self.task_seed(weight_set)

    def holds(self, client: int, weight_set: int) -> bool:
        """Whether ``client`` holds weight set ``weight_set``'s task: with probability
        ``data.participation`` of that task, drawn from (seed, task, client). A task is
        split over every client; a client that does not hold it is never asked to train
        or evaluate it, so its share of the task's examples is never used."""
        p = self.for_set(weight_set).data.participation if self.weight_set else 1.0
        if p >= 1:
            return True
        draw = rng_for(self.seed, "task-participation", self.task_of(weight_set), client)
        return float(draw.random()) < p

    def targets(self) -> float | dict[str, float]:
        """The target accuracy: ``strategy.target_accuracy``, or weight set (as text,
        the records' ``weight_set``) -> its own when ``[[weight_set]]`` tables set
        them differently (:func:`pwfl.analysis.fairness.set_targets`)."""
        if not self.weight_set:
            return self.strategy.target_accuracy
        own = {
            str(ws): self.for_set(ws).strategy.target_accuracy for ws in range(len(self.weight_set))
        }
        if len(set(own.values())) == 1:
            return next(iter(own.values()))
        return own

    def set_name(self, weight_set: int) -> str:
        """The name of weight set ``weight_set`` in the records."""
        if self.weight_set and self.weight_set[weight_set].name:
            return self.weight_set[weight_set].name
        return str(weight_set)

    def replace(self, **changes: Any) -> Config:
        """Return a copy with top-level fields replaced (validated again)."""
        # Imported here: validation and loading are built on the classes of this module.
        from pwfl.config.validation import validate

        new = dataclasses.replace(self, **changes)
        validate(new)
        return new

    def with_overrides(self, overrides: list[str]) -> Config:
        """Return a copy with ``section.key=value`` overrides applied (validated)."""
        from pwfl.config.loading import apply_override, config_from_dict

        raw = self.to_dict()
        for item in overrides:
            apply_override(raw, item)
        return config_from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as nested plain dictionaries (``weight_set`` as the
        list of its TOML tables, left out when there are none)."""
        raw: dict[str, Any] = {
            f.name: dataclasses.asdict(getattr(self, f.name)) for f in _section_fields()
        }
        tables = raw["strategy"].pop("tables")
        raw["strategy"].update({name: dict(table) for name, table in tables})
        raw = {"seed": self.seed, **raw}
        if self.weight_set:
            raw["weight_set"] = [ws.to_table() for ws in self.weight_set]
        return raw

    def to_flat(self) -> dict[str, Any]:
        """The configuration as dotted keys (``"strategy.k": 2``,
        ``"strategy.fedasync.alpha"`` for a strategy's own table and
        ``"weight_set.<i>.train.lr"`` for the ``[[weight_set]]`` tables): every key with
        its value in one flat listing, each one a ``--set`` override would name. Flower's
        run config carries the TOML text instead (:meth:`to_toml`, in the key
        ``pwfl.apps.settings.EXPERIMENT_KEY``)."""
        flat: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            if section == "weight_set":
                for index, table in enumerate(values):
                    for key, value in flatten(table):
                        flat[f"weight_set.{index}.{key}"] = value
            elif isinstance(values, dict):
                flat.update(flatten(values, f"{section}."))
            else:
                flat[section] = values
        return flat

    def to_toml(self) -> str:
        """Return the resolved configuration as TOML text."""
        return tomli_w.dumps(self.to_dict())


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "strategy": StrategyConfig,
    "comm": CommConfig,
    "clients": ClientsConfig,
    "stragglers": StragglerConfig,
    "faults": FaultsConfig,
    "clock": ClockConfig,
    "server": ServerConfig,
    "checkpoint": CheckpointConfig,
    "simulation": SimulationConfig,
    "reproducibility": ReproducibilityConfig,
}


def _section_fields() -> list[dataclasses.Field]:
    """The fields of :class:`Config` that are sections (all but ``seed`` and ``weight_set``)."""
    return [f for f in dataclasses.fields(Config) if f.name in SECTIONS]


def flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested tables as (dotted key, value) pairs: ``{"train": {"lr": 1}}`` ->
    ``[("train.lr", 1)]``."""
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            items += flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


@functools.lru_cache(maxsize=64)
def _tasks(cfg: Config) -> tuple[DataConfig, ...]:
    if not cfg.weight_set:
        return (cfg.data,)
    found: list[DataConfig] = []
    for ws in range(len(cfg.weight_set)):
        data = cfg.for_set(ws).data
        if data not in found:
            found.append(data)
    return tuple(found)


@functools.lru_cache(maxsize=256)
def _set_config(cfg: Config, weight_set: int) -> Config:
    sections: dict[str, dict[str, Any]] = {}
    for key, value in cfg.weight_set[weight_set].overrides:
        section, leaf = key.split(".")
        sections.setdefault(section, {})[leaf] = value
    changes = {
        section: dataclasses.replace(getattr(cfg, section), **values)
        for section, values in sections.items()
    }
    return dataclasses.replace(cfg, weight_set=(), **changes)


def type_name(annotation: Any) -> str:
    """The name of a field's type: ``"int"``, ``"float"``, ``"str"``, ``"bool"``."""
    # Annotations are strings here (``from __future__ import annotations``).
    return annotation if isinstance(annotation, str) else annotation.__name__
