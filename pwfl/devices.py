"""Simulated client devices: their speed and link, drawn from the seed or read from a trace.

A profile says how fast a client computes relative to the reference device
(``clock.reference_gflops``) and how fast its link is. Profiles are drawn once
per experiment from its seed (``uniform``, ``lognormal``, ``tiers``) or read
from a user's CSV trace (``client,speed,up_mbps,down_mbps,latency_ms``).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pwfl.config import ClientsConfig, Range, parse_tiers, ranges
from pwfl.errors import ConfigError
from pwfl.seeding import rng_for, seed_for

TRACE_COLUMNS = ("client", "speed", "up_mbps", "down_mbps", "latency_ms")


@dataclass(frozen=True)
class ClientProfile:
    """One simulated device and its link."""

    speed: float = 1.0
    """Compute speed relative to the reference device: 0.2 takes 5x as long."""
    up_mbps: float = 20.0
    """Upload bandwidth (Mbit/s)."""
    down_mbps: float = 50.0
    """Download bandwidth (Mbit/s)."""
    latency_ms: float = 20.0
    """Network latency of one round trip."""


def _uniform(cfg: ClientsConfig, seed: int, client: int, population: int) -> float:
    return 1.0


def _lognormal(cfg: ClientsConfig, seed: int, client: int, population: int) -> float:
    return float(np.exp(rng_for(seed, "profile", client).normal(0.0, cfg.spread)))


def _tiers(cfg: ClientsConfig, seed: int, client: int, population: int) -> float:
    # Exact shares: the tiers take consecutive places in a seeded permutation of the
    # population, and a client's place is computed for it alone.
    place = permuted_place(client, population, seed_for(seed, "tiers"))
    start = 0
    tiers = parse_tiers(cfg.tiers)
    for i, (share, speed) in enumerate(tiers):
        size = population - start if i == len(tiers) - 1 else int(round(share * population))
        if place < start + size:
            return speed
        start += size
    return tiers[-1][1]


def permuted_place(item: int, count: int, key: int) -> int:
    """Where ``item`` lands in a keyed permutation of ``range(count)``, in O(1).

    A four-round Feistel network on the smallest even number of bits that covers
    ``count`` is a bijection of that power-of-two range; values beyond
    ``count`` are walked on (applying it again) until they land inside, which
    keeps it a bijection of ``range(count)`` (Black and Rogaway, "Ciphers with
    Arbitrary Finite Domains", CT-RSA 2002, cycle walking). No list of the
    population is ever built, so a billion clients cost what ten do.
    """
    if not 0 <= item < count:
        raise ValueError(f"{item} is not in range({count})")
    bits = max(2, (count - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    mask = (1 << half) - 1
    value = item
    while True:
        left, right = value >> half, value & mask
        for round_key in range(1, 5):
            left, right = right, left ^ (_splitmix64(right + key + round_key * _GOLDEN) & mask)
        value = (left << half) | right
        if value < count:
            return value


_GOLDEN = 0x9E3779B97F4A7C15
_BITS64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    # The output function of Steele et al.'s SplitMix64 (OOPSLA 2014): every output
    # bit depends on every input bit, so the low bits a small domain uses are mixed.
    z = value & _BITS64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _BITS64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _BITS64
    return z ^ (z >> 31)


SpeedDraw = Callable[[ClientsConfig, int, int, int], float]

PROFILES: dict[str, SpeedDraw | None] = {
    "uniform": _uniform,
    "lognormal": _lognormal,
    "tiers": _tiers,
    "trace": None,
}
"""Device profiles by name (``clients.profile``): a client's speed factor from
``(config, seed, client, population)``, drawn for that client alone; ``trace``
reads every profile from ``clients.trace`` instead. Keyed by exactly
``pwfl.registry.PROFILES``."""


class Profiles(Mapping[int, ClientProfile]):
    """Every client's device profile, drawn when first asked for and kept.

    Deterministic for the seed: a client's profile depends on the seed, the
    client and the population's size only, never on which clients were asked
    for before it.
    """

    def __init__(self, cfg: ClientsConfig, population: int, seed: int):
        if cfg.profile not in PROFILES:
            raise ConfigError(
                f"config key 'clients.profile' = {cfg.profile!r} is invalid: "
                f"choose one of {', '.join(PROFILES)}"
            )
        self.cfg, self.population, self.seed = cfg, population, seed
        self._draw = PROFILES[cfg.profile]
        self._known: dict[int, ClientProfile] = {}
        if self._draw is None:
            self._known = read_trace(cfg.trace, range(population))

    def __getitem__(self, client: int) -> ClientProfile:
        if client in self._known:
            return self._known[client]
        if not 0 <= client < self.population or self._draw is None:
            raise KeyError(client)
        cfg = self.cfg
        profile = ClientProfile(
            speed=self._draw(cfg, self.seed, client, self.population),
            up_mbps=cfg.up_mbps,
            down_mbps=cfg.down_mbps,
            latency_ms=cfg.latency_ms,
        )
        self._known[client] = profile
        return profile

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.population))

    def __len__(self) -> int:
        return self.population


def make_profiles(cfg: ClientsConfig, population: int, seed: int) -> Profiles:
    """The device profiles of a population of ``population`` clients (drawn on demand)."""
    return Profiles(cfg, population, seed)


def read_trace(path: str | Path, clients: Sequence[int]) -> dict[int, ClientProfile]:
    """Read a user's device trace (CSV with ``client,speed,up_mbps,down_mbps,latency_ms``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"trace '{path}' does not exist; set clients.trace to a CSV file")
    # The link columns stand in for the config keys of the same name, with their ranges.
    declared = ranges()
    limits = {
        "speed": Range(low=0.0, low_open=True),
        **{key: declared[f"clients.{key}"] for key in TRACE_COLUMNS[2:]},
    }
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in TRACE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                f"trace '{path}' lacks column '{missing[0]}'; "
                f"the header must be {','.join(TRACE_COLUMNS)}"
            )
        profiles = {}
        for line, row in enumerate(reader, start=2):
            try:
                client = int(row["client"])
                values = {k: float(row[k]) for k in TRACE_COLUMNS[1:]}
            except (TypeError, ValueError):
                raise ConfigError(f"trace '{path}' line {line}: values must be numbers") from None
            for key, allowed in limits.items():
                if not allowed.admits(values[key]):
                    raise ConfigError(
                        f"trace '{path}' line {line}: {key} = {values[key]} is invalid: "
                        f"{allowed.rule(integer=False)}"
                    )
            profiles[client] = ClientProfile(**values)
    absent = [c for c in clients if c not in profiles]
    if absent:
        raise ConfigError(f"trace '{path}' has no row for client {absent[0]}; add one per client")
    return profiles
