"""The experiment configuration: one typed, frozen, validated object read from TOML.

Usage::

    cfg = load_config("experiments/configs/quick.toml", ["strategy.k=3"])
    cfg.strategy.k  # 3

Every field is declared once below with its meaning beside it. ``load_config``
rejects unknown keys and out-of-range values with a :class:`ConfigError` whose
message is one line naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from pwfl.errors import ConfigError

DATASETS = ("mnist-5k", "mnist", "fashion-mnist", "cifar10")
PARTITIONERS = ("iid", "dirichlet", "pathological", "size-skewed", "resample")
MODELS = ("cnn", "small-cnn", "mlp")
STRATEGIES = ("fedavg", "pwfl", "pwfl-sequential")
GROUP_POLICIES = ("complementary", "balanced", "fixed")
EXECUTORS = ("ray", "threads", "serial")
BACKENDS = ("ray", "inline")
PROFILES = ("uniform", "lognormal", "tiers", "trace")
BALANCING = ("off", "halve", "proportional")
COMPRESSION = ("none", "int8", "int8-delta")
MODES = ("sync", "async")
SERVER_OPTIMIZERS = ("none", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
CLIENT_STATES = ("none", "momentum", "personal")


@dataclass(frozen=True)
class DataConfig:
    """Where client data comes from and how it is split between clients."""

    name: str = "mnist-5k"
    """Data set: mnist-5k (embedded, no download), mnist, fashion-mnist, cifar10."""
    root: str = "data"
    """Folder holding torchvision data sets (ignored by mnist-5k)."""
    download: bool = False
    """Let torchvision download a missing data set into ``root``."""
    test_fraction: float = 0.2
    """Share of mnist-5k held out for the server's test set (others ship one)."""
    num_clients: int = 10
    """Number of simulated clients, one data partition each."""
    partitioner: str = "iid"
    """Client split: iid, dirichlet (alpha), pathological (classes_per_client),
    size-skewed (client sizes grow linearly: the largest holds ~N x the smallest),
    resample (examples_per_client drawn per client; partitions overlap)."""
    alpha: float = 0.5
    """Dirichlet concentration; small values give very non-IID clients."""
    classes_per_client: int = 2
    """Labels per client for the pathological split."""
    examples_per_client: int = 40
    """resample only: each client draws this many training examples of its own
    (clients may share examples), so thousands of clients fit a small data set
    (scale tests)."""


@dataclass(frozen=True)
class ModelConfig:
    """Which network every client trains."""

    name: str = "cnn"
    """Registry name: cnn (two conv+BN+pool blocks, dropout FC), small-cnn, mlp."""


@dataclass(frozen=True)
class TrainConfig:
    """Local training on each client, sent to it every round."""

    local_epochs: int = 1
    """Passes over the client's partition per round."""
    batch_size: int = 32
    """Mini-batch size of local SGD."""
    lr: float = 0.02
    """SGD learning rate."""
    momentum: float = 0.9
    """SGD momentum (reset every round unless ``client_state = "momentum"``)."""
    augment: bool = False
    """Random rotation (and flips on CIFAR) while training."""
    client_state: str = "none"
    """What a client keeps between its rounds (in Flower's ``Context.state``, saved
    with the run's checkpoints): none, momentum (its SGD momentum buffers) or
    personal (its own classifier layer, which replaces the received one; FedPer,
    Arivazhagan et al. 2019)."""


@dataclass(frozen=True)
class StrategyConfig:
    """The server's algorithm and its round structure."""

    name: str = "pwfl"
    """fedavg (Flower's FedAvg), pwfl (K weight sets trained concurrently) or
    pwfl-sequential (the same K sets trained one group after another)."""
    num_rounds: int = 10
    """Server rounds; in a PWFL round every weight set trains once."""
    fraction_train: float = 1.0
    """Share of clients sampled for training each round, in (0, 1]."""
    min_train_nodes: int = 2
    """Lower bound on the number of sampled training clients."""
    fraction_evaluate: float = 0.5
    """Share of clients that evaluate the global model(s) on local data, in [0, 1]."""
    mode: str = "sync"
    """pwfl only: sync (a round barrier over the K groups) or async (each weight set
    moves on as soon as its own group is aggregated, with clients that are free)."""
    k: int = 2
    """Number of global weight sets (PWFL only); each round's clients are split
    into k disjoint groups."""
    group_policy: str = "complementary"
    """How sampled clients are split into groups: complementary (random split),
    balanced (near-equal examples per group), fixed (a client always trains the
    same weight set)."""
    merge: str = "none"
    """Merge policy between weight sets: none, every:N (average and redistribute
    every N rounds) or final (one merged model, evaluated at the end)."""
    executor: str = "threads"
    """Where the K group aggregations run: threads (the default: on one machine the
    fastest, benchmarks/aggregation.py), ray (one Ray task each: the updates are
    copied into Ray's object store, which costs more than the mean itself here, but
    lets a multi-node cluster aggregate on other machines' cores) or serial."""
    aggregator: str = "fedavg"
    """How a group's updates become one weight set: fedavg, median, trimmed-mean,
    krum, multi-krum, or a dotted path ``package.module:function`` to your own
    (pwfl strategies; the fedavg strategy is Flower's FedAvg)."""
    trim_beta: float = 0.2
    """trimmed-mean: share of values cut from each end, in [0, 0.5)."""
    num_malicious: int = 0
    """krum / multi-krum: number of Byzantine clients tolerated."""
    krum_keep: int = 0
    """multi-krum: updates averaged; 0 keeps n - num_malicious."""
    server_opt: str = "none"
    """Server optimiser applied to each weight set after aggregation (Flower's own):
    none, fedavgm, fedadam, fedyogi, fedadagrad (pwfl strategies)."""
    server_lr: float = 0.0
    """Server learning rate; 0 keeps Flower's default for the optimiser (1.0 for
    fedavgm, 0.1 for the adaptive ones)."""
    server_momentum: float = 0.0
    """fedavgm: server momentum, in [0, 1)."""
    target_accuracy: float = 0.9
    """Accuracy whose first crossing is reported as rounds/time to target."""


@dataclass(frozen=True)
class CommConfig:
    """What travels between clients and server."""

    compression: str = "none"
    """Client updates as sent: none, int8 (8-bit weights with a per-tensor scale and
    zero point) or int8-delta (8-bit difference from the weights received)."""


@dataclass(frozen=True)
class ClientsConfig:
    """Simulated devices and links: how long each client takes on the simulated clock."""

    profile: str = "uniform"
    """How speed factors are drawn: uniform (all 1), lognormal (spread), tiers, or
    trace (read from ``trace``)."""
    spread: float = 0.5
    """Sigma of log(speed) for the lognormal profile."""
    tiers: str = "0.6:1.0,0.3:0.5,0.1:0.2"
    """Tiers profile as share:speed pairs; speed 0.2 computes 5x slower."""
    trace: str = ""
    """CSV with columns client,speed,up_mbps,down_mbps,latency_ms (profile = trace)."""
    up_mbps: float = 20.0
    """Upload bandwidth of every client (profiles other than trace)."""
    down_mbps: float = 50.0
    """Download bandwidth of every client (profiles other than trace)."""
    latency_ms: float = 20.0
    """One round trip's network latency (profiles other than trace)."""
    offline_prob: float = 0.0
    """Per-round probability that a client is unavailable for sampling."""


@dataclass(frozen=True)
class StragglerConfig:
    """Straggler detection, load balancing and the reply deadline."""

    ema: float = 0.5
    """Weight of the newest round trip in each client's moving estimate."""
    threshold: float = 1.5
    """A client is a straggler when its estimate exceeds threshold x the median."""
    load_balancing: str = "off"
    """off, halve (a straggler's epochs are halved, an on-time client gets one more
    up to max_epochs) or proportional (epochs scaled so every client needs about the
    median time)."""
    max_epochs: int = 4
    """Upper bound on the local epochs load balancing may give a client."""
    deadline_s: float = 0.0
    """Replies later than this on the simulated clock are dropped (0: no deadline)."""


@dataclass(frozen=True)
class FaultsConfig:
    """Injected client failures, and how the server rides them out.

    Faults hit training messages and are drawn from ``(seed, "fault", round,
    client)``, so every strategy of one seed meets the same failures.
    """

    crash_prob: float = 0.0
    """Per round and client: its ClientApp raises on every attempt of that round."""
    transient_prob: float = 0.0
    """Per round and client: its ClientApp raises once and succeeds when asked again."""
    hang_prob: float = 0.0
    """Per round and client: it answers only after ``round_timeout_s`` has passed
    (really: the client sleeps), so the server records a timeout."""
    max_retries: int = 2
    """Failed (error) replies are sent again to the same client up to this many
    times within the round; a timeout is not retried (the round's time is up)."""
    quorum: float = 0.5
    """A weight set's group is aggregated only when at least this share of its
    clients' replies counts (ceil, at least one); otherwise the set keeps its weights
    for the round, recorded as ``quorum_missed``. In (0, 1]."""
    max_missed_rounds: int = 3
    """The run stops (with its records kept) when every weight set misses quorum
    this many rounds in a row."""
    round_timeout_s: float = 3600.0
    """Real seconds the server waits for a round's replies (all attempts)."""


@dataclass(frozen=True)
class CheckpointConfig:
    """Server (and client) checkpoints for ``pwfl resume``."""

    every: int = 1
    """Write ``checkpoint.npz`` after every this many rounds and after the last one
    (0: never). Writing takes milliseconds next to a round."""


@dataclass(frozen=True)
class SimulationConfig:
    """Where the simulated clients run, and with what resources."""

    backend: str = "ray"
    """ray (Flower's simulation engine: each client in a Ray actor) or inline (each
    client in a thread of this process, no Ray: starts in a fraction of a second,
    for tests and debugging; the numbers are the same)."""
    client_cpus: float = 1.0
    """CPUs reserved per client actor (Flower's default of 2 runs one client at a
    time on a 2-core machine)."""
    client_gpus: float = 0.0
    """GPUs reserved per client actor; training uses CUDA when this is > 0."""
    ray_cpus: int = 0
    """CPUs Ray may use; 0 means all of this machine's cores (ignored with ray_address)."""
    ray_address: str = ""
    """An existing Ray cluster to run on (``auto``, or ``host:port`` of its head, as
    printed by ``ray start --head``); empty starts a Ray session on this machine."""


@dataclass(frozen=True)
class Config:
    """A whole experiment."""

    seed: int = 0
    """The one experiment seed; every random choice derives from it."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    clients: ClientsConfig = field(default_factory=ClientsConfig)
    stragglers: StragglerConfig = field(default_factory=StragglerConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)

    def replace(self, **changes: Any) -> Config:
        """Return a copy with top-level fields replaced (validated again)."""
        new = dataclasses.replace(self, **changes)
        validate(new)
        return new

    def with_overrides(self, overrides: list[str]) -> Config:
        """Return a copy with ``section.key=value`` overrides applied (validated)."""
        raw = self.to_dict()
        for item in overrides:
            _apply_override(raw, item)
        return config_from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as nested plain dictionaries."""
        return dataclasses.asdict(self)

    def to_flat(self) -> dict[str, Any]:
        """The configuration as dotted keys (``"strategy.k": 2``), as Flower's run config
        carries it (``pwfl.apps.settings.config_from_run_config`` reads it back)."""
        flat: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            if isinstance(values, dict):
                flat.update({f"{section}.{key}": value for key, value in values.items()})
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
    "checkpoint": CheckpointConfig,
    "simulation": SimulationConfig,
}


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
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
        _apply_override(raw, item)
    return config_from_dict(raw)


def config_from_toml(text: str) -> Config:
    """Build a validated config from TOML text (as carried in Flower's run config)."""
    try:
        return config_from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config text is not valid TOML: {err}") from None


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested dictionaries."""
    top: dict[str, Any] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' must be a table ([{key}])")
            top[key] = _build_section(key, SECTIONS[key], value)
        elif key == "seed":
            top[key] = _coerce("seed", int, value)
        else:
            known = ["seed", *SECTIONS]
            raise ConfigError(f"unknown config key '{key}'{_suggest(key, known)}")
    cfg = Config(**top)
    validate(cfg)
    return cfg


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass an existing TOML file")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file '{path}' is not valid TOML: {err}") from None


def _apply_override(raw: dict[str, Any], item: str) -> None:
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
    for name in sections:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{name}' is not a section")
    node[leaf] = value


def _build_section(section: str, cls: type, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{section}.{key}'"
                f"{_suggest(key, list(fields), prefix=section + '.')}"
            )
        kwargs[key] = _coerce(f"{section}.{key}", fields[key].type, value)
    return cls(**kwargs)


def _coerce(key: str, type_name: Any, value: Any) -> Any:
    name = type_name if isinstance(type_name, str) else type_name.__name__
    if name == "bool":
        if isinstance(value, bool):
            return value
    elif name == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif name == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif name == "str":
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key '{key}' must be a {name}, got {value!r}")


def _suggest(key: str, known: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; known keys: {', '.join(prefix + k for k in known)}"


def _check(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' = {value!r} is invalid: {rule}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, key, value, f"choose one of {', '.join(choices)}")


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


def validate(cfg: Config) -> None:
    """Check every value and the relations between them; raise ConfigError."""
    d, m, t, s, sim = cfg.data, cfg.model, cfg.train, cfg.strategy, cfg.simulation
    _check(cfg.seed >= 0, "seed", cfg.seed, "must be >= 0")
    _choice("data.name", d.name, DATASETS)
    _choice("data.partitioner", d.partitioner, PARTITIONERS)
    _check(0 < d.test_fraction < 1, "data.test_fraction", d.test_fraction, "must be in (0, 1)")
    _check(d.num_clients >= 1, "data.num_clients", d.num_clients, "must be >= 1")
    _check(d.alpha > 0, "data.alpha", d.alpha, "must be > 0")
    _check(
        d.examples_per_client >= 1,
        "data.examples_per_client",
        d.examples_per_client,
        "must be >= 1",
    )
    _check(
        d.classes_per_client >= 1,
        "data.classes_per_client",
        d.classes_per_client,
        "must be >= 1",
    )
    _choice("model.name", m.name, MODELS)
    _check(t.local_epochs >= 1, "train.local_epochs", t.local_epochs, "must be >= 1")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "must be >= 1")
    _check(t.lr > 0, "train.lr", t.lr, "must be > 0")
    _check(0 <= t.momentum < 1, "train.momentum", t.momentum, "must be in [0, 1)")
    _choice("train.client_state", t.client_state, CLIENT_STATES)
    _choice("strategy.name", s.name, STRATEGIES)
    _check(s.num_rounds >= 1, "strategy.num_rounds", s.num_rounds, "must be >= 1")
    _check(
        0 < s.fraction_train <= 1,
        "strategy.fraction_train",
        s.fraction_train,
        "must be in (0, 1]",
    )
    _check(
        0 <= s.fraction_evaluate <= 1,
        "strategy.fraction_evaluate",
        s.fraction_evaluate,
        "must be in [0, 1]",
    )
    _check(s.min_train_nodes >= 1, "strategy.min_train_nodes", s.min_train_nodes, "must be >= 1")
    _check(
        s.min_train_nodes <= d.num_clients,
        "strategy.min_train_nodes",
        s.min_train_nodes,
        f"must be <= data.num_clients ({d.num_clients})",
    )
    _check(s.k >= 1, "strategy.k", s.k, "must be >= 1")
    if s.name != "fedavg":
        sampled = num_sampled(d.num_clients, s.fraction_train, s.min_train_nodes)
        _check(
            s.k <= sampled,
            "strategy.k",
            s.k,
            f"must be <= the {sampled} clients sampled per round "
            "(raise strategy.fraction_train or data.num_clients, or lower k)",
        )
    _choice("strategy.group_policy", s.group_policy, GROUP_POLICIES)
    _choice("strategy.mode", s.mode, MODES)
    _check(
        s.mode == "sync" or s.name == "pwfl",
        "strategy.mode",
        s.mode,
        "async applies to strategy.name = pwfl only",
    )
    parse_merge(s.merge)
    _choice("strategy.executor", s.executor, EXECUTORS)
    _check(0 <= s.trim_beta < 0.5, "strategy.trim_beta", s.trim_beta, "must be in [0, 0.5)")
    _check(s.num_malicious >= 0, "strategy.num_malicious", s.num_malicious, "must be >= 0")
    _check(s.krum_keep >= 0, "strategy.krum_keep", s.krum_keep, "must be >= 0")
    if s.name == "fedavg":
        _check(
            s.aggregator == "fedavg",
            "strategy.aggregator",
            s.aggregator,
            "the fedavg strategy is Flower's FedAvg; use strategy.name = pwfl with k = 1 "
            "for another aggregator",
        )
    _choice("comm.compression", cfg.comm.compression, COMPRESSION)
    _choice("strategy.server_opt", s.server_opt, SERVER_OPTIMIZERS)
    _check(s.server_lr >= 0, "strategy.server_lr", s.server_lr, "must be >= 0")
    _check(
        0 <= s.server_momentum < 1,
        "strategy.server_momentum",
        s.server_momentum,
        "must be in [0, 1)",
    )
    if s.name == "fedavg":
        _check(
            s.server_opt == "none",
            "strategy.server_opt",
            s.server_opt,
            "use strategy.name = pwfl with k = 1 for a server optimiser on one model",
        )
    _check(
        0 < s.target_accuracy <= 1,
        "strategy.target_accuracy",
        s.target_accuracy,
        "must be in (0, 1]",
    )
    _validate_clients(cfg.clients, cfg.stragglers)
    _validate_faults(cfg.faults)
    _check(cfg.checkpoint.every >= 0, "checkpoint.every", cfg.checkpoint.every, "must be >= 0")
    _choice("simulation.backend", sim.backend, BACKENDS)
    _check(sim.client_cpus > 0, "simulation.client_cpus", sim.client_cpus, "must be > 0")
    _check(sim.client_gpus >= 0, "simulation.client_gpus", sim.client_gpus, "must be >= 0")
    _check(sim.ray_cpus >= 0, "simulation.ray_cpus", sim.ray_cpus, "must be >= 0")


def _validate_clients(c: ClientsConfig, st: StragglerConfig) -> None:
    _choice("clients.profile", c.profile, PROFILES)
    _check(c.spread >= 0, "clients.spread", c.spread, "must be >= 0")
    parse_tiers(c.tiers)
    if c.profile == "trace":
        _check(bool(c.trace), "clients.trace", c.trace, "give a CSV file for profile = trace")
        _check(Path(c.trace).is_file(), "clients.trace", c.trace, "file does not exist")
    for key in ("up_mbps", "down_mbps"):
        value = getattr(c, key)
        _check(value > 0, f"clients.{key}", value, "must be > 0")
    _check(c.latency_ms >= 0, "clients.latency_ms", c.latency_ms, "must be >= 0")
    _check(0 <= c.offline_prob < 1, "clients.offline_prob", c.offline_prob, "must be in [0, 1)")
    _check(0 < st.ema <= 1, "stragglers.ema", st.ema, "must be in (0, 1]")
    _check(st.threshold >= 1, "stragglers.threshold", st.threshold, "must be >= 1")
    _choice("stragglers.load_balancing", st.load_balancing, BALANCING)
    _check(st.max_epochs >= 1, "stragglers.max_epochs", st.max_epochs, "must be >= 1")
    _check(st.deadline_s >= 0, "stragglers.deadline_s", st.deadline_s, "must be >= 0")


def _validate_faults(f: FaultsConfig) -> None:
    for key in ("crash_prob", "transient_prob", "hang_prob"):
        value = getattr(f, key)
        _check(0 <= value <= 1, f"faults.{key}", value, "must be in [0, 1]")
    total = f.crash_prob + f.transient_prob + f.hang_prob
    _check(
        total <= 1,
        "faults.crash_prob",
        f.crash_prob,
        f"crash_prob + transient_prob + hang_prob = {total:g} must be <= 1",
    )
    _check(f.max_retries >= 0, "faults.max_retries", f.max_retries, "must be >= 0")
    _check(0 < f.quorum <= 1, "faults.quorum", f.quorum, "must be in (0, 1]")
    _check(
        f.max_missed_rounds >= 1, "faults.max_missed_rounds", f.max_missed_rounds, "must be >= 1"
    )
    _check(f.round_timeout_s > 0, "faults.round_timeout_s", f.round_timeout_s, "must be > 0")


def parse_tiers(text: str) -> list[tuple[float, float]]:
    """``"0.9:1,0.1:0.2"`` -> ``[(0.9, 1.0), (0.1, 0.2)]`` (share, speed); shares sum to 1."""
    rule = "use share:speed pairs such as 0.9:1,0.1:0.2 with shares summing to 1"
    try:
        pairs = [tuple(float(x) for x in item.split(":")) for item in text.split(",")]
    except ValueError:
        raise ConfigError(f"config key 'clients.tiers' = {text!r} is invalid: {rule}") from None
    ok = all(len(p) == 2 and p[0] > 0 and p[1] > 0 for p in pairs)
    if not ok or abs(sum(p[0] for p in pairs) - 1) > 1e-6:
        raise ConfigError(f"config key 'clients.tiers' = {text!r} is invalid: {rule}")
    return [(p[0], p[1]) for p in pairs]


def num_sampled(num_clients: int, fraction: float, min_nodes: int) -> int:
    """Clients sampled per round, as Flower's FedAvg counts them."""
    return min(num_clients, max(int(num_clients * fraction), min_nodes))
