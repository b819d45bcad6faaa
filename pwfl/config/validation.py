"""Validating a config: every number against its declared range, every choice against the
registry of names, and the rules that relate several keys, in one place.

Nothing here imports PyTorch or Flower: the names come from :mod:`pwfl.registry`. The
one check that needs a model built, that the model takes the data set's examples, is
made where a run first builds one (:func:`pwfl.data.check_inputs`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pwfl import registry
from pwfl.config.experiment import SECTIONS, Config, type_name
from pwfl.config.learning import DataConfig
from pwfl.config.ranges import RANGE, Range
from pwfl.config.system import ClientsConfig, FaultsConfig
from pwfl.errors import ConfigError


def _check(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' = {value!r} is invalid: {rule}")


def _choice(key: str, value: str, choices: Collection[str]) -> None:
    _check(value in choices, key, value, f"choose one of {', '.join(choices)}")


def _numeric_fields() -> list[tuple[str, str, str, bool, Range]]:
    """(key, section, field, is an integer, range) of every numeric field; section ""
    is the top level (``seed``)."""
    out = []
    for section, cls in (("", Config), *SECTIONS.items()):
        for f in dataclasses.fields(cls):
            kind = type_name(f.type)
            if kind in ("int", "float"):
                key = f"{section}.{f.name}" if section else f.name
                out.append((key, section, f.name, kind == "int", f.metadata.get(RANGE, Range())))
    return out


def ranges() -> dict[str, Range]:
    """Every numeric config key (``"train.lr"``, ``"seed"``) and the range it accepts."""
    return {key: rng for key, _, _, _, rng in _numeric_fields()}


def registered_choices() -> dict[str, Collection[str]]:
    """The names each choice key accepts, from :mod:`pwfl.registry`.

    Returns
    -------
    dict
        Dotted key -> its tuple of names, read when called (``data.name`` ->
        ``registry.DATASETS``, ``model.name`` -> ``registry.MODELS``, and so on); the
        module that implements the names keys its own table by the same tuple; the
        strategies' names come from their own registry, ``pwfl.strategies``.
    """
    from pwfl.strategies import MODES, STRATEGIES

    return {
        "data.name": registry.DATASETS,
        "data.partitioner": registry.PARTITIONERS,
        "model.name": registry.MODELS,
        "train.client_state": registry.CLIENT_STATES,
        "simulation.client_binding": registry.BINDINGS,
        "strategy.name": tuple(STRATEGIES),
        "strategy.mode": tuple(MODES),
        "strategy.group_policy": registry.GROUP_POLICIES,
        "strategy.executor": registry.EXECUTORS,
        "strategy.server_opt": registry.SERVER_OPTIMIZERS,
        "comm.compression": registry.COMPRESSION_MODES,
        "clients.profile": registry.PROFILES,
        "clock.compute": registry.CLOCK_MODES,
        "stragglers.load_balancing": registry.BALANCING,
        "reproducibility.arithmetic": registry.ARITHMETIC_MODES,
        "simulation.backend": registry.BACKENDS,
        "simulation.messages": registry.MESSAGES,
    }


def check_number(key: str, value: Any, integer: bool, rng: Range) -> None:
    # bool is a subclass of int, but true is not a count or a rate.
    if integer:
        typed = isinstance(value, int) and not isinstance(value, bool)
    else:
        typed = isinstance(value, (int, float)) and not isinstance(value, bool)
    _check(typed and rng.admits(value), key, value, rng.rule(integer))


def parse_merge(merge: str) -> tuple[str, int]:
    """Split a merge policy into its kind and period: ``"every:3" -> ("every", 3)``."""
    kind, _, period = merge.partition(":")
    if kind in ("none", "final") and not period:
        return kind, 0
    if kind == "every" and period.isdigit() and int(period) > 0:
        return kind, int(period)
    raise ConfigError(
        f"config key 'strategy.merge' = {merge!r} is invalid: "
        "use none, final or every:N with N a positive integer"
    )


def parse_set_weights(text: str, k: int) -> tuple[float, ...]:
    """``strategy.set_weights`` as k positive floats: ``"1,2" -> (1.0, 2.0)``; empty: ()."""
    if not text.strip():
        return ()
    try:
        weights = tuple(float(part) for part in text.split(","))
    except ValueError:
        weights = ()
    if len(weights) != k or not all(math.isfinite(w) and w > 0 for w in weights):
        raise ConfigError(
            f"config key 'strategy.set_weights' = {text!r} is invalid: "
            f"give k = {k} positive numbers separated by commas, or leave it empty"
        )
    return weights


def validate(cfg: Config) -> None:
    """Check every value and the relations between them; raise ConfigError.

    Every numeric key is checked against the :class:`Range` declared beside its
    field (type, finiteness, bounds) and every choice key against its names in
    :mod:`pwfl.registry` (:func:`registered_choices`); the rules that relate several
    keys follow one by one. Whether the model takes the data set's examples is
    checked where the model is first built (:func:`pwfl.data.check_inputs`).
    """
    _validate(cfg, one_set=False)


def _validate(cfg: Config, one_set: bool) -> None:
    """:func:`validate`; ``one_set``: ``cfg`` is one weight set's (``Config.for_set``)."""
    for key, section, name, integer, rng in _numeric_fields():
        check_number(key, getattr(getattr(cfg, section) if section else cfg, name), integer, rng)
    for key, names in registered_choices().items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if key in ("model.name", "data.name") and ("." in value or ":" in value):
            continue  # your own, by dotted path: loaded and checked as the run starts
        _choice(key, value, names)
    _validate_augment(cfg)
    _validate_hub_keys(cfg.data)
    if cfg.weight_set:
        _validate_weight_sets(cfg)
    _check(
        one_set or cfg.data.participation == 1,
        "data.participation",
        cfg.data.participation,
        "gives a task to only some clients; it is a key of a [[weight_set]] table whose "
        "weight set has a task of its own (give 1, or move it into the set's table)",
    )
    d, s = cfg.data, cfg.strategy
    _check(
        s.min_train_nodes <= d.num_clients,
        "strategy.min_train_nodes",
        s.min_train_nodes,
        f"must be <= data.num_clients ({d.num_clients})",
    )
    _validate_strategy(cfg)
    _check(
        s.group_policy not in ("loss-aware", "alpha-fair") or cfg.train.client_state != "personal",
        "strategy.group_policy",
        s.group_policy,
        "allocates by the sets' server validation losses, which personal client state "
        "leaves empty (each client keeps its own classifier); use another group policy",
    )
    parse_merge(s.merge)
    parse_set_weights(s.set_weights, s.k)
    _validate_clients(cfg.clients)
    _validate_faults(cfg.faults)
    _check(
        not cfg.simulation.ray_address or cfg.simulation.backend == "ray",
        "simulation.ray_address",
        cfg.simulation.ray_address,
        "a Ray cluster runs the clients only with simulation.backend = ray",
    )
    if cfg.simulation.node_aggregation:
        _validate_node_aggregation(cfg)


def _validate_node_aggregation(cfg: Config) -> None:
    """A node's mean replaces its clients' updates: only where the server averages them
    all with a plain weighted mean, and counts every reply a node summed."""
    from pwfl.strategies import policy_class

    key = "simulation.node_aggregation"
    sim = cfg.simulation
    _check(
        sim.client_binding == "pool" and sim.messages == "cohort",
        key,
        True,
        "a node sums its cohort's updates: it needs simulation.client_binding = pool and "
        "simulation.messages = cohort",
    )
    # The clients a node sums are a share of its job, and a job is cut into one share
    # per pool node: left to the machine (its CPUs), the sums, and so the weights'
    # bits, would follow it.
    _check(
        sim.pool_size > 0,
        key,
        True,
        "the clients each node sums are cut by the pool's size, which otherwise follows "
        "this machine's CPU count; set simulation.pool_size (e.g. 2)",
    )
    policy = policy_class(cfg)
    _check(
        policy.each_update is False,
        key,
        True,
        f"strategy {cfg.strategy.name!r} needs each client's update (its server steps weigh "
        "each one); use it without node aggregation",
    )
    for ws in range(len(cfg.weight_set) or 1):
        s = cfg.for_set(ws).strategy
        _check(
            s.aggregator == "fedavg",
            key,
            True,
            f"strategy.aggregator = {s.aggregator!r} needs each client's update; node "
            "aggregation sums them into a weighted mean (strategy.aggregator = fedavg)",
        )
    _check(
        cfg.strategy.group_policy != "variance-reduced",
        key,
        True,
        "group_policy = variance-reduced reads each client's update norm; use another "
        "group policy or no node aggregation",
    )
    deadline = cfg.stragglers.deadline_s
    _check(
        (deadline == 0 or math.isinf(deadline)) and math.isinf(cfg.faults.round_timeout_s),
        key,
        True,
        "a node's sum holds every reply its clients sent, so the server must count every "
        "one: set stragglers.deadline_s = 0 and faults.round_timeout_s = inf",
    )


def _validate_weight_sets(cfg: Config) -> None:
    """One table per weight set, each set's settings valid, merges only of one model."""
    from pwfl.strategies import STRATEGIES, policy_class

    s = cfg.strategy
    if not policy_class(cfg).weight_set_tables:
        takes = [name for name, cls in STRATEGIES.items() if cls.weight_set_tables]
        raise ConfigError(
            f"config key 'strategy.name' = {s.name!r} is invalid: has one weight set; "
            f"[[weight_set]] tables need {' or '.join(takes)}"
        )
    _check(
        len(cfg.weight_set) == s.k,
        "strategy.k",
        s.k,
        f"does not match the {len(cfg.weight_set)} [[weight_set]] tables; give one table per "
        "weight set",
    )
    names = [cfg.set_name(ws) for ws in range(s.k)]
    _check(len(set(names)) == len(names), "weight_set.name", names, "must differ between sets")
    for ws in range(s.k):
        try:
            _validate(cfg.for_set(ws), one_set=True)
        except ConfigError as err:
            raise ConfigError(f"weight set {ws} ({names[ws]}): {err}") from None
    _validate_tasks(cfg)
    models = {cfg.for_set(ws).model.name for ws in range(s.k)}
    _check(
        s.merge == "none" or len(models) == 1,
        "strategy.merge",
        s.merge,
        f"averages the weight sets, which train different models ({', '.join(sorted(models))}); "
        "use merge = none",
    )


HOLDERS_LOOKED_AT = 10_000
"""Clients whose draws are looked at for one that holds a partial task: a run whose task
no client holds would wait for one for ever."""


def _validate_tasks(cfg: Config) -> None:
    """Weight sets with tasks of their own (``data`` keys in their tables)."""
    s = cfg.strategy
    tasks = len(cfg.tasks())
    _check(
        tasks == 1 or s.group_policy != "balanced",
        "strategy.group_policy",
        s.group_policy,
        f"balances the groups' example counts of one data set; the {tasks} tasks' examples "
        "differ (choose complementary, random, round-robin, alpha-fair or variance-reduced)",
    )
    _check(
        tasks == 1 or s.merge == "none",
        "strategy.merge",
        s.merge,
        f"averages the weight sets, which train {tasks} different tasks; use merge = none",
    )
    partial = [ws for ws in range(s.k) if cfg.for_set(ws).data.participation < 1]
    drawn = ("random", "alpha-fair", "variance-reduced")
    looked = min(cfg.data.num_clients, HOLDERS_LOOKED_AT)
    for ws in partial:
        _check(
            any(cfg.holds(c, ws) for c in range(looked)),
            f"weight_set.{ws}.data.participation",
            cfg.for_set(ws).data.participation,
            f"gives the task to none of the first {looked} clients; raise it or data.num_clients",
        )
    from pwfl.strategies import policy_class

    _check(
        not partial or s.group_policy in drawn or not policy_class(cfg).groups_by_policy,
        "strategy.group_policy",
        s.group_policy,
        "gives clients sets without asking which tasks they hold (weight set "
        f"{partial[0] if partial else 0} has data.participation < 1); choose {', '.join(drawn)}",
    )


def _validate_augment(cfg: Config) -> None:
    """Only images are augmented (rotated, flipped)."""
    _check(
        cfg.data.name in registry.IMAGE_DATASETS
        or not cfg.train.augment
        or cfg.data.name == "hf"  # images or not: known once loaded (check_user_code)
        or "." in cfg.data.name  # your own, checked as the run starts (check_user_code)
        or ":" in cfg.data.name,
        "train.augment",
        cfg.train.augment,
        f"augmentation rotates images; data.name = {cfg.data.name!r} has none",
    )


def _validate_hub_keys(d: DataConfig) -> None:
    """The ``data.hf_*`` keys are read for ``data.name = "hf"`` alone: set for another
    data set they would be ignored without a word."""
    if d.name == "hf":
        return
    defaults = DataConfig()
    for key in ("hf_dataset", "hf_features", "hf_label", "hf_test_split"):
        value = getattr(d, key)
        _check(
            value == getattr(defaults, key),
            f"data.{key}",
            value,
            f"is read for data.name = 'hf' only, not {d.name!r}; remove it or set data.name = hf",
        )


def _validate_clients(c: ClientsConfig) -> None:
    parse_tiers(c.tiers)
    if c.profile == "trace":
        _check(bool(c.trace), "clients.trace", c.trace, "give a CSV file for profile = trace")
        _check(Path(c.trace).is_file(), "clients.trace", c.trace, "file does not exist")


def _validate_faults(f: FaultsConfig) -> None:
    total = f.crash_prob + f.transient_prob + f.hang_prob
    _check(
        total <= 1,
        "faults.crash_prob",
        f.crash_prob,
        f"crash_prob + transient_prob + hang_prob = {total:g} must be <= 1",
    )
    # A hang is simulated by sleeping past the round's timeout, which an endless
    # timeout does not have.
    _check(
        f.hang_prob == 0 or not math.isinf(f.round_timeout_s),
        "faults.hang_prob",
        f.hang_prob,
        "a hanging client answers only after faults.round_timeout_s, which is inf; "
        "give faults.round_timeout_s a finite value or set hang_prob = 0",
    )


def parse_tiers(text: str) -> list[tuple[float, float]]:
    """``"0.9:1,0.1:0.2"`` -> ``[(0.9, 1.0), (0.1, 0.2)]`` (share, speed); shares sum to 1."""
    rule = "use share:speed pairs such as 0.9:1,0.1:0.2 with shares summing to 1"
    try:
        pairs = [tuple(float(x) for x in item.split(":")) for item in text.split(",")]
    except ValueError:
        raise ConfigError(f"config key 'clients.tiers' = {text!r} is invalid: {rule}") from None
    ok = all(len(p) == 2 and p[0] > 0 and p[1] > 0 and all(map(math.isfinite, p)) for p in pairs)
    if not ok or abs(sum(p[0] for p in pairs) - 1) > 1e-6:
        raise ConfigError(f"config key 'clients.tiers' = {text!r} is invalid: {rule}")
    return [(p[0], p[1]) for p in pairs]


def num_sampled(num_clients: int, fraction: float, min_nodes: int) -> int:
    """Clients sampled per round, as Flower's FedAvg counts them."""
    return min(num_clients, max(int(num_clients * fraction), min_nodes))


def _validate_strategy(cfg: Config) -> None:
    """Each ``[strategy.<name>]`` table names a strategy with settings of its own and
    holds only its keys; then the strategy named by ``strategy.name`` checks its rules.

    A table of another strategy than the one named passes here: the one config may be
    the base of a comparison that switches ``strategy.name`` (:func:`unread_tables`
    is what a single run refuses).

    The strategies' modules import neither Flower nor PyTorch (``pwfl.strategies``);
    they are imported here, not at the top, because they build on this package.
    """
    from pwfl.config.loading import strategy_settings
    from pwfl.strategies import STRATEGIES, policy_class

    for name, _ in cfg.strategy.tables:
        owner = STRATEGIES.get(name)
        if owner is None or owner.Settings is None:
            with_tables = [n for n, cls in STRATEGIES.items() if cls.Settings is not None]
            raise ConfigError(
                f"config table [strategy.{name}] names no strategy with settings of its own; "
                f"tables: {', '.join(f'[strategy.{n}]' for n in with_tables)}"
            )
        strategy_settings(owner.Settings, name, cfg.strategy.table(name))
    policy_class(cfg).check_config(cfg)


def unread_tables(cfg: Config) -> list[str]:
    """The ``[strategy.<name>]`` tables that the strategy ``cfg`` runs does not read
    (each strategy reads its own table only, FedAsync included)."""
    return [name for name, _ in cfg.strategy.tables if name != cfg.strategy.name]


def check_single_run(cfg: Config) -> None:
    """Refuse, in one line, a strategy table that this one run would ignore: only a
    comparison that switches ``strategy.name`` to that strategy reads it."""
    unread = unread_tables(cfg)
    if unread:
        name = unread[0]
        raise ConfigError(
            f"config table [strategy.{name}] is not read by strategy.name = "
            f"{cfg.strategy.name!r} (a strategy reads only its own table); remove it, set "
            f"strategy.name = {name!r}, or compare with --strategies {name}"
        )
