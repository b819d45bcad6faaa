"""The config sections of the simulated system: devices and links, stragglers, faults, the
clock, the server, checkpoints, where the clients run, and the arithmetic.

Every field carries its meaning in the docstring beneath it and, when it is a
number, the range it accepts (``ranged``).
"""

from __future__ import annotations

from dataclasses import dataclass

from pwfl.config.ranges import ranged


@dataclass(frozen=True)
class ClientsConfig:
    """Simulated devices and links: how long each client takes on the simulated clock."""

    profile: str = "uniform"
    """How speed factors are drawn: uniform (all 1), lognormal (spread), tiers, or
    trace (read from ``trace``)."""
    spread: float = ranged(0.5, ge=0)
    """Sigma of log(speed) for the lognormal profile."""
    tiers: str = "0.6:1.0,0.3:0.5,0.1:0.2"
    """Tiers profile as share:speed pairs; speed 0.2 computes 5x slower."""
    trace: str = ""
    """CSV with columns client,speed,up_mbps,down_mbps,latency_ms (profile = trace)."""
    up_mbps: float = ranged(20.0, gt=0, inf="no bandwidth limit")
    """Upload bandwidth of every client in Mbit/s (profiles other than trace);
    inf: no bandwidth limit (uploads take no time on the simulated clock)."""
    down_mbps: float = ranged(50.0, gt=0, inf="no bandwidth limit")
    """Download bandwidth of every client in Mbit/s (profiles other than trace);
    inf: no bandwidth limit (downloads take no time on the simulated clock)."""
    latency_ms: float = ranged(20.0, ge=0)
    """One round trip's network latency in milliseconds (profiles other than trace)."""
    offline_prob: float = ranged(0.0, ge=0, lt=1)
    """Probability that a client is unavailable for sampling: per round for the
    synchronous strategies, per online period (``online_period_s``) for async PWFL
    and FedBuff. A round short of online clients goes on with those it found."""
    online_period_s: float = ranged(60.0, gt=0)
    """Simulated seconds for which a client's online draw holds in the strategies
    without a round barrier (async PWFL, FedBuff): period n (from (n-1) x this to
    n x this) draws as round n does."""


@dataclass(frozen=True)
class StragglerConfig:
    """Straggler detection, load balancing and the reply deadline."""

    ema: float = ranged(0.5, gt=0, le=1)
    """Weight of the newest round trip in each client's moving estimate."""
    threshold: float = ranged(1.5, ge=1)
    """A client is a straggler when its estimate exceeds threshold x the median."""
    load_balancing: str = "off"
    """off, halve (a straggler's epochs are halved, an on-time client gets one more
    up to max_epochs) or proportional (epochs scaled so every client needs about the
    median time)."""
    max_epochs: int = ranged(4, ge=1)
    """Upper bound on the local epochs load balancing may give a client."""
    deadline_s: float = ranged(0.0, ge=0, inf="no deadline")
    """Replies later than this many seconds on the simulated clock are dropped;
    0 and inf both mean no deadline."""


@dataclass(frozen=True)
class FaultsConfig:
    """Injected client failures, and how the server rides them out.

    Faults hit training messages and are drawn from ``(seed, "fault", round,
    client)``, so every strategy of one seed meets the same failures.
    """

    crash_prob: float = ranged(0.0, ge=0, le=1)
    """Per round and client: its ClientApp raises on every attempt of that round."""
    transient_prob: float = ranged(0.0, ge=0, le=1)
    """Per round and client: its ClientApp raises once and succeeds when asked again."""
    hang_prob: float = ranged(0.0, ge=0, le=1)
    """Per round and client: it never answers within ``round_timeout_s`` on the
    simulated clock, so the server records a timeout (the host does not wait: the
    client replies at once with a reply marked as hanging)."""
    max_retries: int = ranged(2, ge=0)
    """Failed (error) replies are sent again to the same client up to this many
    times within the round; a timeout is not retried (the round's time is up)."""
    quorum: float = ranged(0.5, gt=0, le=1)
    """A weight set's group is aggregated only when at least this share of its
    clients' replies counts (ceil, at least one); otherwise the set keeps its weights
    for the round, recorded as ``quorum_missed``. In (0, 1]."""
    max_missed_rounds: int = ranged(3, ge=1)
    """The run stops (with its records kept) when every weight set misses quorum
    this many rounds in a row."""
    round_timeout_s: float = ranged(3600.0, gt=0, inf="wait for ever")
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
    reference_gflops: float = ranged(10.0, gt=0)
    """Training throughput of a device of speed 1.0 in counted GFLOP/s. 10 stands for
    a phone-class CPU core: about a quarter of the fp32 peak of one Cortex-A78-class
    core (2 x 128-bit FMA units at 2.4 GHz: 38 GFLOP/s), and about a third of what one
    core of this project's 2-core host sustains on the CNN (27 GFLOP/s; make bench
    prints both)."""


@dataclass(frozen=True)
class ServerConfig:
    """The server as a device on the simulated clock: its cores, memory and links."""

    cores: int = ranged(8, ge=1)
    """Cores that aggregate; aggregations beyond them wait for a free one. 8: a
    general-purpose cloud VM (8 vCPUs)."""
    memory_gbps: float = ranged(10.0, gt=0)
    """Memory bandwidth one core streams while aggregating (GB/s); an aggregation
    takes the bytes it reads, decodes and writes over this. 10: one core summing
    float32 arrays on DDR4/DDR5 memory."""
    up_mbps: float = ranged(10_000.0, gt=0, inf="no limit of the server's own")
    """Server uplink (Mbit/s), shared by the weights it sends at the same time. 10,000:
    a cloud VM's 10 Gbit/s network; inf: no limit of its own (each transfer moves at
    its client's bandwidth)."""
    down_mbps: float = ranged(10_000.0, gt=0, inf="no limit of the server's own")
    """Server downlink (Mbit/s), shared by the updates it receives at the same time;
    inf: no limit of its own."""


@dataclass(frozen=True)
class CheckpointConfig:
    """Server (and client) checkpoints for ``pwfl resume``."""

    every: int = ranged(1, ge=0)
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
    pool_size: int = ranged(0, ge=0)
    """pool binding: Flower nodes in the pool; 0 means as many as clients train at once
    (the clients sampled per round, or fedbuff's concurrency), and with cohort
    messages no more than the client processes that run at once."""
    messages: str = "cohort"
    """pool binding: cohort (each pool node gets one message per job, with the weights
    once and the clients it trains one after another; each client's update and
    metrics come back in the reply) or client (one message per client). The records
    are the same; node binding always sends one message per client."""
    node_aggregation: bool = False
    """cohort messages: each node sums its clients' weighted updates and sends back one
    partial sum, not every update (a plain weighted mean only; other bits than the
    server's own sum: docs/populations.md measures the gap). Needs
    simulation.pool_size, which cuts each job into the cohorts the nodes sum."""
    client_cpus: float = ranged(1.0, gt=0)
    """CPUs reserved per client actor (Flower's default of 2 runs one client at a
    time on a 2-core machine)."""
    client_gpus: float = ranged(0.0, ge=0)
    """GPUs reserved per client actor; training uses CUDA when this is > 0."""
    ray_cpus: int = ranged(0, ge=0)
    """CPUs Ray may use; 0 means all of this machine's cores (ignored with ray_address)."""
    reply_timeout_s: float = ranged(3600.0, gt=0)
    """Host seconds (a measurement of this machine, not simulated time) the server
    waits for one message's reply before it stops waiting and records it as
    ``lost``: a safety limit for a client process that died or stalled. A cohort
    message's clients run one after another: it is waited for this long per client."""
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
