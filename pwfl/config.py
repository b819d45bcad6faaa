"""The experiment configuration: one typed, frozen, validated object read from TOML.

Usage::

    cfg = load_config("experiments/configs/quick.toml", ["strategy.k=3"])
    cfg.strategy.k  # 3

Every field is declared once below with its meaning beside it, and every numeric
field with the :class:`Range` it accepts (``ranges()`` lists them). A number is
finite unless its field's docstring says what ``inf`` means for it; NaN is never
valid. The names a choice key accepts (``model.name``, ``strategy.executor``, ...)
are registered in the module that implements them (``registered_choices()``).
``load_config`` rejects unknown keys and invalid values with a :class:`ConfigError`
whose message is one line naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from pwfl import arithmetic
from pwfl.errors import ConfigError

BACKENDS = ("ray", "inline")

# Field metadata key under which a numeric field declares its Range.
RANGE = "pwfl.range"


@dataclass(frozen=True)
class Range:
    """The values one numeric config key accepts.

    NaN is never accepted. Infinity is accepted only where ``inf`` says what it
    means for the key, and only as ``+inf``.
    """

    low: float | None = None
    """Lower bound (None: none)."""
    high: float | None = None
    """Upper bound (None: none)."""
    low_open: bool = False
    """The lower bound itself is refused (``> low`` rather than ``>= low``)."""
    high_open: bool = False
    """The upper bound itself is refused (``< high`` rather than ``<= high``)."""
    inf: str = ""
    """What ``inf`` means for this key; empty: infinity is refused."""

    def admits(self, value: float) -> bool:
        """Whether a number (already of the field's type) lies in this range."""
        if isinstance(value, float):
            if math.isnan(value):
                return False
            if math.isinf(value):
                return value > 0 and bool(self.inf) and self.high is None
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def rule(self, integer: bool) -> str:
        """The range in words, as error messages give it: ``must be a finite number > 0``."""
        kind = "an integer" if integer else "a number" if self.inf else "a finite number"
        low, high = _number_text(self.low), _number_text(self.high)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            bounds = f" in {left}{low}, {high}{right}"
        elif self.low is not None:
            bounds = f" {'>' if self.low_open else '>='} {low}"
        elif self.high is not None:
            bounds = f" {'<' if self.high_open else '<='} {high}"
        else:
            bounds = ""
        extra = f" or inf ({self.inf})" if self.inf else ""
        return f"must be {kind}{bounds}{extra}"


def _number_text(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _ranged(
    default: float,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    inf: str = "",
) -> Any:
    """A numeric dataclass field with its default and its accepted range.

    ``gt``/``ge`` give the lower bound (exclusive/inclusive), ``lt``/``le`` the
    upper one; ``inf`` says what an infinite value means where one is allowed.
    """
    rng = Range(
        low=gt if gt is not None else ge,
        high=lt if lt is not None else le,
        low_open=gt is not None,
        high_open=lt is not None,
        inf=inf,
    )
    return field(default=default, metadata={RANGE: rng})


@dataclass(frozen=True)
class DataConfig:
    """Where client data comes from and how it is split between clients."""

    name: str = "mnist-5k"
    """Data set: mnist-5k (embedded, no download), mnist, fashion-mnist, cifar10, or
    synthetic and synthetic-iid (Li et al.'s Synthetic(alpha, beta) and Synthetic-IID,
    drawn per client: any population)."""
    root: str = "data"
    """Folder holding torchvision data sets (ignored by mnist-5k)."""
    download: bool = False
    """Let torchvision download a missing data set into ``root``."""
    test_fraction: float = _ranged(0.2, gt=0, lt=1)
    """Share of mnist-5k held out for the server's test set (others ship one)."""
    validation_fraction: float = _ranged(0.2, gt=0, lt=1)
    """Share of the server's held-out examples (mnist-5k's test_fraction, a torchvision
    set's test split, the synthetic test clients' fresh examples) kept apart, by a
    seeded split stratified by label, as its validation set: whatever selects (the
    search's pick, the loss-aware policy) reads validation, the reported accuracy is
    the test set's. 0.2 keeps 80 % for the test and gives mnist-5k 200 validation
    images, enough to tell settings apart by a few points (standard error about 0.02
    at accuracy 0.9)."""
    num_clients: int = _ranged(10, ge=1)
    """Number of simulated clients, one data partition each."""
    partitioner: str = "iid"
    """Client split: iid, dirichlet (alpha), pathological (classes_per_client),
    size-skewed (client sizes grow linearly: the largest holds ~N x the smallest),
    resample (examples_per_client drawn per client; partitions overlap)."""
    alpha: float = _ranged(0.5, gt=0)
    """Dirichlet concentration; small values give very non-IID clients."""
    classes_per_client: int = _ranged(2, ge=1)
    """Labels per client for the pathological split."""
    examples_per_client: int = _ranged(40, ge=1)
    """resample only: each client draws this many training examples of its own from
    (seed, client) (clients may share examples), so any population fits a small
    data set without a list of it."""
    synthetic_alpha: float = _ranged(0.5, ge=0)
    """synthetic only: alpha of Li et al.'s Synthetic(alpha, beta), the spread of the
    clients' model means (the paper runs (0, 0), (0.5, 0.5) and (1, 1))."""
    synthetic_beta: float = _ranged(0.5, ge=0)
    """synthetic only: beta, the spread of the clients' input means."""
    client_holdout: float = _ranged(0.2, ge=0, lt=1)
    """Share of each client's own examples kept out of its training, on which the
    client evaluates (``client_accuracy``): a seeded split of its partition, drawn
    from (seed, client), the same for every strategy. 0.2 is the 80/20 split of
    Flower's examples: enough examples to measure a partition's accuracy to a few
    points while it keeps most of its data to train on. A partition of two examples
    or more holds out at least one and keeps at least one; a one-example client
    trains on it and reports no evaluation. 0 turns the split off."""


@dataclass(frozen=True)
class ModelConfig:
    """Which network every client trains."""

    name: str = "cnn"
    """Registry name: cnn (two conv+BN+pool blocks, dropout FC), small-cnn, mlp."""


@dataclass(frozen=True)
class TrainConfig:
    """Local training on each client, sent to it every round."""

    local_epochs: int = _ranged(1, ge=1)
    """Passes over the client's partition per round."""
    batch_size: int = _ranged(32, ge=1)
    """Mini-batch size of local SGD."""
    lr: float = _ranged(0.02, gt=0)
    """SGD learning rate."""
    momentum: float = _ranged(0.9, ge=0, lt=1)
    """SGD momentum (reset every round unless ``client_state = "momentum"``)."""
    augment: bool = False
    """Random rotation (and flips on CIFAR) while training."""
    client_state: str = "none"
    """What a client keeps between its rounds (in Flower's ``Context.state``, saved
    with the run's checkpoints): none, momentum (its SGD momentum buffers) or
    personal (its own classifier layer, which replaces the received one; FedPer,
    Arivazhagan et al. 2019)."""
    step: str = ""
    """Your training step, a dotted path ``package.module:function`` found from the
    working directory first: ``step(model, inputs, targets, context) -> loss``, called
    for every mini-batch (``pwfl.training.StepFn``); empty: the plain cross-entropy
    step. It reaches the clients in each training message (``train-step``)."""


@dataclass(frozen=True)
class StrategyConfig:
    """The server's algorithm and its round structure."""

    name: str = "pwfl"
    """fedavg (Flower's FedAvg), pwfl (K weight sets trained concurrently) or
    pwfl-sequential (the same K sets trained one group after another)."""
    num_rounds: int = _ranged(10, ge=1)
    """Server rounds; in a PWFL round every weight set trains once."""
    fraction_train: float = _ranged(1.0, gt=0, le=1)
    """Share of clients sampled for training each round, in (0, 1]."""
    min_train_nodes: int = _ranged(2, ge=1)
    """Lower bound on the number of sampled training clients."""
    fraction_evaluate: float = _ranged(0.5, ge=0, le=1)
    """Share of each round's cohort (the clients sent training messages) that then
    evaluates the round's weight set(s) on its own data, in [0, 1]; at least one
    client when above 0. Synchronous rounds only."""
    mode: str = "sync"
    """pwfl only: sync (a round barrier over the K groups) or async (each weight set
    moves on as soon as its own group is aggregated, with clients that are free)."""
    k: int = _ranged(2, ge=1)
    """Number of global weight sets (PWFL only); each round's clients are split
    into k disjoint groups."""
    group_policy: str = "complementary"
    """How sampled clients are split into groups: complementary (random split),
    balanced (near-equal examples per group), fixed (a client always trains the
    same weight set), round-robin (MFA-RR: in round r client c trains set
    (c + r) mod k) or loss-aware (a client goes to set k with probability
    L_k / sum L, the sets' latest server validation losses). In async mode each set
    draws its group from the free clients by the same rule."""
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
    trim_beta: float = _ranged(0.2, ge=0, lt=0.5)
    """trimmed-mean: share of values cut from each end, in [0, 0.5)."""
    num_malicious: int = _ranged(0, ge=0)
    """krum / multi-krum: number of Byzantine clients tolerated."""
    krum_keep: int = _ranged(0, ge=0)
    """multi-krum: updates averaged; 0 keeps n - num_malicious."""
    server_opt: str = "none"
    """Server optimiser applied to each weight set after aggregation (Flower's own):
    none, fedavgm, fedadam, fedyogi, fedadagrad (pwfl strategies)."""
    server_lr: float = _ranged(0.0, ge=0)
    """Server learning rate; 0 keeps the default: Flower's for the optimiser (1.0 for
    fedavgm, 0.1 for the adaptive ones), 1.0 for fedbuff's step."""
    server_momentum: float = _ranged(0.0, ge=0, lt=1)
    """fedavgm: server momentum, in [0, 1)."""
    buffer_size: int = _ranged(5, ge=1)
    """fedbuff: client updates buffered before each server step (K in Nguyen et al.,
    AISTATS 2022); half of the quick setting's 10 clients, so a step averages as
    many updates as a PWFL group of five."""
    concurrency: int = _ranged(0, ge=0)
    """fedbuff: clients training at any moment, at most data.num_clients; 0 means as
    many as the other strategies sample per round (fraction_train, min_train_nodes), so
    the same number of devices is busy. Above buffer_size, equal devices' updates
    arrive together, all computed from one model, and are applied over several steps
    (their staleness is in clients.csv)."""
    staleness_exponent: float = _ranged(0.5, ge=0)
    """fedbuff: an update sent tau server steps ago is weighted (1 + tau)^-a with this a;
    0.5 is the paper's polynomial staleness function, 0 ignores staleness."""
    target_accuracy: float = _ranged(0.9, gt=0, le=1)
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
    spread: float = _ranged(0.5, ge=0)
    """Sigma of log(speed) for the lognormal profile."""
    tiers: str = "0.6:1.0,0.3:0.5,0.1:0.2"
    """Tiers profile as share:speed pairs; speed 0.2 computes 5x slower."""
    trace: str = ""
    """CSV with columns client,speed,up_mbps,down_mbps,latency_ms (profile = trace)."""
    up_mbps: float = _ranged(20.0, gt=0, inf="no bandwidth limit")
    """Upload bandwidth of every client in Mbit/s (profiles other than trace);
    inf: no bandwidth limit (uploads take no time on the simulated clock)."""
    down_mbps: float = _ranged(50.0, gt=0, inf="no bandwidth limit")
    """Download bandwidth of every client in Mbit/s (profiles other than trace);
    inf: no bandwidth limit (downloads take no time on the simulated clock)."""
    latency_ms: float = _ranged(20.0, ge=0)
    """One round trip's network latency in milliseconds (profiles other than trace)."""
    offline_prob: float = _ranged(0.0, ge=0, lt=1)
    """Probability that a client is unavailable for sampling: per round for the
    synchronous strategies, per online period (``online_period_s``) for async PWFL
    and FedBuff. A round short of online clients goes on with those it found."""
    online_period_s: float = _ranged(60.0, gt=0)
    """Simulated seconds for which a client's online draw holds in the strategies
    without a round barrier (async PWFL, FedBuff): period n (from (n-1) x this to
    n x this) draws as round n does."""


@dataclass(frozen=True)
class StragglerConfig:
    """Straggler detection, load balancing and the reply deadline."""

    ema: float = _ranged(0.5, gt=0, le=1)
    """Weight of the newest round trip in each client's moving estimate."""
    threshold: float = _ranged(1.5, ge=1)
    """A client is a straggler when its estimate exceeds threshold x the median."""
    load_balancing: str = "off"
    """off, halve (a straggler's epochs are halved, an on-time client gets one more
    up to max_epochs) or proportional (epochs scaled so every client needs about the
    median time)."""
    max_epochs: int = _ranged(4, ge=1)
    """Upper bound on the local epochs load balancing may give a client."""
    deadline_s: float = _ranged(0.0, ge=0, inf="no deadline")
    """Replies later than this many seconds on the simulated clock are dropped;
    0 and inf both mean no deadline."""


@dataclass(frozen=True)
class FaultsConfig:
    """Injected client failures, and how the server rides them out.

    Faults hit training messages and are drawn from ``(seed, "fault", round,
    client)``, so every strategy of one seed meets the same failures.
    """

    crash_prob: float = _ranged(0.0, ge=0, le=1)
    """Per round and client: its ClientApp raises on every attempt of that round."""
    transient_prob: float = _ranged(0.0, ge=0, le=1)
    """Per round and client: its ClientApp raises once and succeeds when asked again."""
    hang_prob: float = _ranged(0.0, ge=0, le=1)
    """Per round and client: it never answers within ``round_timeout_s`` on the
    simulated clock, so the server records a timeout (the host does not wait: the
    client replies at once with a reply marked as hanging)."""
    max_retries: int = _ranged(2, ge=0)
    """Failed (error) replies are sent again to the same client up to this many
    times within the round; a timeout is not retried (the round's time is up)."""
    quorum: float = _ranged(0.5, gt=0, le=1)
    """A weight set's group is aggregated only when at least this share of its
    clients' replies counts (ceil, at least one); otherwise the set keeps its weights
    for the round, recorded as ``quorum_missed``. In (0, 1]."""
    max_missed_rounds: int = _ranged(3, ge=1)
    """The run stops (with its records kept) when every weight set misses quorum
    this many rounds in a row."""
    round_timeout_s: float = _ranged(3600.0, gt=0, inf="wait for ever")
    """Simulated seconds from a job's sending after which the server gives up on the
    clients that have not answered (all attempts), recorded as ``timeout``; inf:
    wait for ever (then ``hang_prob`` must be 0: a hanging client never answers).
    The host's own wait for a reply is ``simulation.reply_timeout_s``."""


@dataclass(frozen=True)
class ClockConfig:
    """How the simulated clock prices client compute (pwfl/clock.py)."""

    compute: str = "modelled"
    """modelled: examples processed x the model's training FLOPs per example /
    (reference_gflops x the device's speed), from the config and the seed alone;
    measured: the CPU time of the client's training thread on this host / its speed
    (depends on the host; kept to validate the model)."""
    reference_gflops: float = _ranged(10.0, gt=0)
    """Training throughput of a device of speed 1.0 in counted GFLOP/s. 10 stands for
    a phone-class CPU core: about a quarter of the fp32 peak of one Cortex-A78-class
    core (2 x 128-bit FMA units at 2.4 GHz: 38 GFLOP/s), and about a third of what one
    core of this project's 2-core host sustains on the CNN (27 GFLOP/s; make bench
    prints both)."""


@dataclass(frozen=True)
class ServerConfig:
    """The server as a device on the simulated clock: its cores, memory and links."""

    cores: int = _ranged(8, ge=1)
    """Cores that aggregate; aggregations beyond them wait for a free one. 8: a
    general-purpose cloud VM (8 vCPUs)."""
    memory_gbps: float = _ranged(10.0, gt=0)
    """Memory bandwidth one core streams while aggregating (GB/s); an aggregation
    takes the bytes it reads, decodes and writes over this. 10: one core summing
    float32 arrays on DDR4/DDR5 memory."""
    up_mbps: float = _ranged(10_000.0, gt=0, inf="no limit of the server's own")
    """Server uplink (Mbit/s), shared by the weights it sends at the same time. 10,000:
    a cloud VM's 10 Gbit/s network; inf: no limit of its own (each transfer moves at
    its client's bandwidth)."""
    down_mbps: float = _ranged(10_000.0, gt=0, inf="no limit of the server's own")
    """Server downlink (Mbit/s), shared by the updates it receives at the same time;
    inf: no limit of its own."""


@dataclass(frozen=True)
class CheckpointConfig:
    """Server (and client) checkpoints for ``pwfl resume``."""

    every: int = _ranged(1, ge=0)
    """Write ``checkpoint.npz`` after every this many rounds and after the last one
    (0: never). Writing takes milliseconds next to a round."""


@dataclass(frozen=True)
class SimulationConfig:
    """Where the simulated clients run, and with what resources."""

    backend: str = "ray"
    """ray (Flower's simulation engine: each client in a Ray actor) or inline (each
    client in a thread of this process, no Ray: starts in a fraction of a second,
    for tests and debugging; the numbers are the same)."""
    client_binding: str = "pool"
    """pool: a few Flower nodes run whichever clients the server names (each message
    says which), so a population is a number and costs what its cohort costs; node:
    one node per client, which holds its own data (pwfl deploy, real devices)."""
    pool_size: int = _ranged(0, ge=0)
    """pool binding: Flower nodes in the pool; 0 means as many as clients train at once
    (the clients sampled per round, or fedbuff's concurrency)."""
    client_cpus: float = _ranged(1.0, gt=0)
    """CPUs reserved per client actor (Flower's default of 2 runs one client at a
    time on a 2-core machine)."""
    client_gpus: float = _ranged(0.0, ge=0)
    """GPUs reserved per client actor; training uses CUDA when this is > 0."""
    ray_cpus: int = _ranged(0, ge=0)
    """CPUs Ray may use; 0 means all of this machine's cores (ignored with ray_address)."""
    reply_timeout_s: float = _ranged(3600.0, gt=0)
    """Host seconds (a measurement of this machine, not simulated time) the server
    waits for one message's reply before it stops waiting and records it as
    ``lost``: a safety limit for a client process that died or stalled."""
    ray_address: str = ""
    """An existing Ray cluster to run on (``auto``, or ``host:port`` of its head, as
    printed by ``ray start --head``); empty starts a Ray session on this machine."""


@dataclass(frozen=True)
class ReproducibilityConfig:
    """How the numbers are made reproducible beyond the seed (pwfl/arithmetic.py)."""

    arithmetic: str = "portable"
    """portable: PyTorch's CPU kernels pinned to AVX2 (ATen, MKL in strict CNR mode),
    oneDNN and NNPACK off, one intra-op thread, deterministic algorithms, so a seed
    gives the same bits on every x86-64 CPU with AVX2; native: the kernels the
    libraries pick for this CPU (faster on some hosts, other bits on another CPU).
    Chosen before PyTorch loads: one mode per process."""


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

    seed: int = _ranged(0, ge=0)
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

    def set_name(self, weight_set: int) -> str:
        """The name of weight set ``weight_set`` in the records."""
        if self.weight_set and self.weight_set[weight_set].name:
            return self.weight_set[weight_set].name
        return str(weight_set)

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
        """Return the configuration as nested plain dictionaries (``weight_set`` as the
        list of its TOML tables, left out when there are none)."""
        raw = {f.name: dataclasses.asdict(getattr(self, f.name)) for f in _section_fields()}
        raw = {"seed": self.seed, **raw}
        if self.weight_set:
            raw["weight_set"] = [ws.to_table() for ws in self.weight_set]
        return raw

    def to_flat(self) -> dict[str, Any]:
        """The configuration as dotted keys (``"strategy.k": 2``), as Flower's run config
        carries it (``pwfl.apps.settings.config_from_run_config`` reads it back)."""
        flat: dict[str, Any] = {}
        for section, values in self.to_dict().items():
            if section == "weight_set":
                for index, table in enumerate(values):
                    for key, value in _flatten(table):
                        flat[f"weight_set.{index}.{key}"] = value
            elif isinstance(values, dict):
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
    "clock": ClockConfig,
    "server": ServerConfig,
    "checkpoint": CheckpointConfig,
    "simulation": SimulationConfig,
    "reproducibility": ReproducibilityConfig,
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
        # Before validation, which loads PyTorch: the kernel pins act only before it.
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
    if sections[:1] == ["weight_set"]:
        node, sections = _weight_set_table(raw, sections, item), sections[2:]
    for name in sections:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{name}' is not a section")
    node[leaf] = value


def _section_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Config) if f.name in SECTIONS]


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


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
        for key, item in _flatten({k: v for k, v in table.items() if k != "name"}):
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
    name = _type_name(type_name)
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


def _type_name(type_name: Any) -> str:
    # Annotations are strings here (``from __future__ import annotations``).
    return type_name if isinstance(type_name, str) else type_name.__name__


def _suggest(key: str, known: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; known keys: {', '.join(prefix + k for k in known)}"


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
            kind = _type_name(f.type)
            if kind in ("int", "float"):
                key = f"{section}.{f.name}" if section else f.name
                out.append((key, section, f.name, kind == "int", f.metadata.get(RANGE, Range())))
    return out


def ranges() -> dict[str, Range]:
    """Every numeric config key (``"train.lr"``, ``"seed"``) and the range it accepts."""
    return {key: rng for key, _, _, _, rng in _numeric_fields()}


def registered_choices() -> dict[str, Collection[str]]:
    """The names each choice key accepts, read from the module that implements them.

    Returns
    -------
    dict
        Dotted key -> that module's registry (a dict keyed by name, or a tuple of
        names): ``data.name`` -> ``pwfl.data.INFO``, ``data.partitioner`` ->
        ``pwfl.data.PARTITIONERS``, ``model.name`` -> ``pwfl.models.MODELS``, and so on.
    """
    # Imported here, not at the top: these modules import torch and Flower, which
    # reading, writing or analysing a config must not load.
    from pwfl import (
        aggregation,
        clock,
        codec,
        data,
        devices,
        models,
        partition,
        stragglers,
        strategies,
        training,
        transport,
    )
    from pwfl.strategies import server_optimizer

    return {
        "data.name": data.INFO,
        "data.partitioner": data.PARTITIONERS,
        "model.name": models.MODELS,
        "train.client_state": training.CLIENT_STATES,
        "simulation.client_binding": transport.BINDINGS,
        "strategy.name": strategies.STRATEGIES,
        "strategy.mode": strategies.MODES,
        "strategy.group_policy": partition.GROUP_POLICIES,
        "strategy.executor": aggregation.EXECUTORS,
        "strategy.server_opt": server_optimizer.OPTIMIZERS,
        "comm.compression": codec.MODES,
        "clients.profile": devices.PROFILES,
        "clock.compute": clock.COMPUTE,
        "stragglers.load_balancing": stragglers.BALANCING,
        "reproducibility.arithmetic": arithmetic.MODES,
    }


def _check_number(key: str, value: Any, integer: bool, rng: Range) -> None:
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


def validate(cfg: Config) -> None:
    """Check every value and the relations between them; raise ConfigError.

    Every numeric key is checked against the :class:`Range` declared beside its
    field (type, finiteness, bounds) and every choice key against the registry of
    the module that implements it (:func:`registered_choices`); the rules that
    relate several keys follow one by one.
    """
    for key, section, name, integer, rng in _numeric_fields():
        _check_number(key, getattr(getattr(cfg, section) if section else cfg, name), integer, rng)
    for key, names in registered_choices().items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if key in ("model.name", "data.name") and ("." in value or ":" in value):
            continue  # your own, by dotted path: loaded and checked as the run starts
        _choice(key, value, names)
    _validate_inputs(cfg)
    if cfg.weight_set:
        _validate_weight_sets(cfg)
    d, s = cfg.data, cfg.strategy
    _check(
        s.min_train_nodes <= d.num_clients,
        "strategy.min_train_nodes",
        s.min_train_nodes,
        f"must be <= data.num_clients ({d.num_clients})",
    )
    if s.name not in ("fedavg", "fedbuff"):
        sampled = num_sampled(d.num_clients, s.fraction_train, s.min_train_nodes)
        _check(
            s.k <= sampled,
            "strategy.k",
            s.k,
            f"must be <= the {sampled} clients sampled per round "
            "(raise strategy.fraction_train or data.num_clients, or lower k)",
        )
    _check(
        s.mode == "sync" or s.name == "pwfl",
        "strategy.mode",
        s.mode,
        "async applies to strategy.name = pwfl only",
    )
    _check(
        s.group_policy != "loss-aware" or cfg.train.client_state != "personal",
        "strategy.group_policy",
        s.group_policy,
        "allocates by the sets' server validation losses, which personal client state "
        "leaves empty (each client keeps its own classifier); use another group policy",
    )
    parse_merge(s.merge)
    if s.name == "fedbuff":
        _check(
            s.concurrency <= d.num_clients,
            "strategy.concurrency",
            s.concurrency,
            f"must be <= data.num_clients ({d.num_clients}): a client trains one model at a time",
        )
    if s.name in ("fedavg", "fedbuff"):
        _check(
            s.aggregator == "fedavg",
            "strategy.aggregator",
            s.aggregator,
            f"the {s.name} strategy aggregates its own way; use strategy.name = pwfl with "
            "k = 1 for another aggregator",
        )
        _check(
            s.server_opt == "none",
            "strategy.server_opt",
            s.server_opt,
            "use strategy.name = pwfl with k = 1 for a server optimiser on one model",
        )
    _validate_clients(cfg.clients)
    _validate_faults(cfg.faults)
    _choice("simulation.backend", cfg.simulation.backend, BACKENDS)
    _check(
        not cfg.simulation.ray_address or cfg.simulation.backend == "ray",
        "simulation.ray_address",
        cfg.simulation.ray_address,
        "a Ray cluster runs the clients only with simulation.backend = ray",
    )


def _validate_weight_sets(cfg: Config) -> None:
    """One table per weight set, each set's settings valid, merges only of one model."""
    s = cfg.strategy
    _check(
        s.name in ("pwfl", "pwfl-sequential"),
        "strategy.name",
        s.name,
        "has one weight set; [[weight_set]] tables need pwfl or pwfl-sequential",
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
            validate(cfg.for_set(ws))
        except ConfigError as err:
            raise ConfigError(f"weight set {ws} ({names[ws]}): {err}") from None
    models = {cfg.for_set(ws).model.name for ws in range(s.k)}
    _check(
        s.merge == "none" or len(models) == 1,
        "strategy.merge",
        s.merge,
        f"averages the weight sets, which train different models ({', '.join(sorted(models))}); "
        "use merge = none",
    )


def _validate_inputs(cfg: Config) -> None:
    """The model must take the data set's examples; only images are augmented."""
    import torch

    from pwfl.data import INFO
    from pwfl.models import build_model

    if cfg.data.name not in INFO or "." in cfg.model.name or ":" in cfg.model.name:
        return  # your own data set or model: checked as the run starts (runner.prepare_data)
    info = INFO[cfg.data.name]
    try:
        with torch.random.fork_rng(devices=[]):  # building draws initial weights
            build_model(cfg.model.name, info.input_shape, info.num_classes)
    except ValueError as err:
        raise ConfigError(
            f"config key 'model.name' = {cfg.model.name!r} does not fit data.name = "
            f"{cfg.data.name!r}: {err}"
        ) from None
    _check(
        info.images or not cfg.train.augment,
        "train.augment",
        cfg.train.augment,
        f"augmentation rotates images; data.name = {cfg.data.name!r} has none",
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
