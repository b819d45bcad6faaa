"""Reading a config: TOML files and text, ``section.key=value`` overrides, and the
``[[weight_set]]`` tables; every value is coerced to its field's type here and the
result validated (:mod:`pwfl.config.validation`).

Usage::

    cfg = load_config("experiments/configs/quick.toml", ["strategy.k=3"])
    config_from_toml(cfg.to_toml()) == cfg
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pwfl import arithmetic
from pwfl.config.experiment import (
    PER_SET_KEYS,
    SECTIONS,
    Config,
    WeightSetConfig,
    flatten,
    type_name,
)
from pwfl.config.learning import StrategyConfig
from pwfl.config.ranges import RANGE, Range
from pwfl.config.validation import check_number, validate
from pwfl.errors import ConfigError


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a TOML file (or the defaults), apply ``section.key=value`` overrides.

    Parameters
    ----------
    path
        A TOML file; ``None`` starts from the defaults.
    overrides
        Strings such as ``"strategy.k=3"``; values are parsed as TOML literals
        and fall back to plain strings (``strategy.name=pwfl``).

    Raises
    ------
    ConfigError
        On a missing or malformed file, an unknown key or an invalid value.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_toml(Path(path))
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)


def config_from_toml(text: str) -> Config:
    """Build a validated config from TOML text (as carried in Flower's run config)."""
    try:
        return config_from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config text is not valid TOML: {err}") from None


def recorded_config_from_toml(text: str) -> Config:
    """The config of a run folder, also one written before keys moved (:data:`MOVED`).

    Earlier versions recorded FedBuff's keys under ``[strategy]`` for every run: a
    moved key goes into the table of the run's strategy when that strategy reads it,
    and is dropped otherwise (no strategy read it then either).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config text is not valid TOML: {err}") from None
    strategy = raw.get("strategy")
    if isinstance(strategy, dict):
        for old in [k for k in strategy if f"strategy.{k}" in MOVED]:
            value = strategy.pop(old)
            table = _moved_table(old, strategy.get("name"))
            if table == strategy.get("name"):
                strategy.setdefault(table, {}).setdefault(old, value)
    return config_from_dict(raw)


def _moved_table(leaf: str, strategy_name: Any) -> str:
    """The strategy table a moved key belongs in: the named strategy's own when it
    reads that key (FedAsync's ``concurrency``), else the one :data:`MOVED` names."""
    from pwfl.strategies import STRATEGIES  # builds on this package: imported here

    owner = STRATEGIES.get(str(strategy_name))
    settings = getattr(owner, "Settings", None)
    if settings is not None and leaf in {f.name for f in dataclasses.fields(settings)}:
        return str(strategy_name)
    return MOVED[f"strategy.{leaf}"].split(".")[1]


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested dictionaries."""
    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "weight_set":
            top[key] = _weight_sets(value)
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' must be a table ([{key}])")
            top[key] = _build_section(key, SECTIONS[key], value)
        elif key == "seed":
            top[key] = _coerce("seed", int, value)
        else:
            known = ["seed", *SECTIONS, "weight_set"]
            raise ConfigError(f"unknown config key '{key}'{_suggest(key, known)}")
    cfg = Config(**top)
    if cfg.reproducibility.arithmetic in arithmetic.MODES:
        # As soon as the mode is known: the kernel pins act only before PyTorch loads.
        arithmetic.pin(cfg.reproducibility.arithmetic)
    validate(cfg)
    return cfg


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass an existing TOML file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file '{path}' is not valid TOML: {err}") from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set one ``section.key=value`` override (``weight_set.<i>.section.key=value`` edits
    that table) in the nested dictionaries of a config being read."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{item}' must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    *sections, leaf = key.split(".")
    node = raw
    if sections[:1] == ["weight_set"]:
        node, sections = _weight_set_table(raw, sections, item), sections[2:]
    for name in sections:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{name}' is not a section")
    node[leaf] = value


def _weight_set_table(raw: dict[str, Any], sections: list[str], item: str) -> dict[str, Any]:
    """The ``[[weight_set]]`` table ``weight_set.<i>`` of an override names."""
    tables = raw.get("weight_set", [])
    count = len(tables) if isinstance(tables, list) else 0
    index = sections[1] if len(sections) > 1 else ""
    if not index.isdigit() or int(index) >= count:
        raise ConfigError(
            f"override '{item}' edits [[weight_set]] table {index or '?'}, but the config has "
            f"{count} (numbered from 0); add the tables to the config file"
        )
    return tables[int(index)]


def _weight_sets(value: Any) -> tuple[WeightSetConfig, ...]:
    """``[[weight_set]]`` tables (a list, or Flower's run config: ``{"0": {...}}``)."""
    if isinstance(value, dict) and all(str(k).isdigit() for k in value):
        value = [value[k] for k in sorted(value, key=int)]
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError("config key 'weight_set' must be an array of tables ([[weight_set]])")
    fields = {
        f"{section}.{f.name}": f
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    }
    sets = []
    for index, table in enumerate(value):
        name = table.get("name", "")
        if not isinstance(name, str):
            raise ConfigError(f"config key 'weight_set.{index}.name' must be a string")
        overrides = []
        for key, item in flatten({k: v for k, v in table.items() if k != "name"}):
            full = f"weight_set.{index}.{key}"
            if key not in fields:
                raise ConfigError(
                    f"unknown config key '{full}'"
                    f"{_suggest(key, list(PER_SET_KEYS), prefix=f'weight_set.{index}.')}"
                )
            if key not in PER_SET_KEYS:
                raise ConfigError(
                    f"config key '{full}' cannot differ between weight sets; a "
                    f"[[weight_set]] table may set {', '.join(PER_SET_KEYS)}"
                )
            overrides.append((key, _coerce(full, fields[key].type, item)))
        sets.append(WeightSetConfig(name, tuple(overrides)))
    return tuple(sets)


MOVED = {
    "strategy.buffer_size": "strategy.fedbuff.buffer_size",
    "strategy.concurrency": "strategy.fedbuff.concurrency",
    "strategy.staleness_exponent": "strategy.fedbuff.staleness_exponent",
}
"""Keys that moved into a strategy's own table: old dotted key -> new one."""


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "tables"}
    kwargs: dict[str, Any] = {}
    if cls is StrategyConfig:
        # A sub-table is a strategy's own table ([strategy.fedasync]); the strategy
        # declares and checks its keys (strategy_settings).
        tables = {k: v for k, v in values.items() if isinstance(v, dict)}
        values = {k: v for k, v in values.items() if k not in tables}
        kwargs["tables"] = _strategy_tables(tables)
    for key, value in values.items():
        if f"{section}.{key}" in MOVED:
            table = _moved_table(key, values.get("name"))
            raise ConfigError(f"{section}.{key} moved: write it as {key} under [strategy.{table}]")
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{section}.{key}'"
                f"{_suggest(key, list(fields), prefix=section + '.')}"
            )
        kwargs[key] = _coerce(f"{section}.{key}", fields[key].type, value)
    return cls(**kwargs)


def _strategy_tables(tables: dict[str, dict[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """The ``[strategy.<name>]`` tables as ``StrategyConfig.tables`` holds them: each
    named by a strategy with settings of its own (else one line, the closest name
    suggested), its keys checked and coerced to their types, sorted; an empty table
    is left out, so that it reads as no table at all."""
    # Imported here: the strategies build on this package.
    from pwfl.strategies import STRATEGIES

    owners = {name: cls.Settings for name, cls in STRATEGIES.items() if cls.Settings}
    out = []
    for name, table in sorted(tables.items()):
        if name not in owners:
            listed = ", ".join(f"[strategy.{n}]" for n in owners)
            close = difflib.get_close_matches(name, list(owners), n=1)
            hint = f"; did you mean [strategy.{close[0]}]?" if close else ""
            raise ConfigError(
                f"config table [strategy.{name}] names no strategy with settings of its "
                f"own{hint} (tables: {listed})"
            )
        settings = strategy_settings(owners[name], name, table)
        given = tuple((key, getattr(settings, key)) for key in sorted(table))
        if given:
            out.append((name, given))
    return tuple(out)


def strategy_settings(cls: type, name: str, table: dict[str, Any]) -> Any:
    """A strategy's ``Settings`` dataclass from its ``[strategy.<name>]`` table, every key
    checked: known (a one-line error suggests the closest), typed, in its declared range."""
    section = f"strategy.{name}"
    settings = _build_section(section, cls, table)
    for f in dataclasses.fields(cls):
        kind = type_name(f.type)
        if kind in ("int", "float"):
            rng = f.metadata.get(RANGE, Range())
            check_number(f"{section}.{f.name}", getattr(settings, f.name), kind == "int", rng)
    return settings


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    name = type_name(annotation)
    if name in ("int", "float"):
        # Numbers are checked (type, finiteness, range) in one place, validate();
        # here a float key only takes the integer a TOML file may give it.
        if name == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    if name == "bool":
        if isinstance(value, bool):
            return value
    elif name == "str":
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key '{key}' must be a {name}, got {value!r}")


def _suggest(key: str, known: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; known keys: {', '.join(prefix + k for k in known)}"
