"""The simulated clock: how long a round would take if every client were its own device.

This machine runs all clients on a few shared cores, so its wall clock cannot
show what PWFL does on real, separate devices. The simulated clock models it:

* a client's round trip is the download of the weights it receives, plus the CPU
  time of its own training thread (``train_time_s``) divided by its device's
  speed factor, plus the upload of the update it sends (the bytes actually
  sent), plus its link's latency (:class:`ClientProfile`, :func:`round_trip`);
* a group's time is the time of its slowest client (the server waits for all);
* aggregating a group takes the host time the server measured for it, and
  starts when the group's last reply is in.

The round engine (:mod:`pwfl.engine`) places every group on this clock when it
is sent and when it is done; the strategies decide when groups are sent. So a
``pwfl`` round lasts until its last group is aggregated, ``max_k(g_k + a_k)``,
since the K groups train at the same time; a ``pwfl-sequential`` round lasts
``sum_k(g_k + a_k)``, group k+1 being sent when group k is aggregated; a
``fedavg`` round is one group: its slowest client plus the aggregation.

The server is *busy* while it aggregates and *idle* otherwise; the idle time of
a round is its length minus the union of its aggregation intervals
(:func:`busy_time`).

Device profiles are drawn once per experiment from its seed (``uniform``,
``lognormal``, ``tiers``) or read from a user's CSV trace.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pwfl.config import ClientsConfig, Range, parse_tiers, ranges
from pwfl.errors import ConfigError
from pwfl.seeding import rng_for

TRACE_COLUMNS = ("client", "speed", "up_mbps", "down_mbps", "latency_ms")


@dataclass(frozen=True)
class ClientProfile:
    """One simulated device and its link."""

    speed: float = 1.0
    """Compute speed relative to this host's core: 0.2 takes 5x as long."""
    up_mbps: float = 20.0
    down_mbps: float = 50.0
    latency_ms: float = 20.0


@dataclass(frozen=True)
class ClientTiming:
    """A client's round trip on the simulated clock, in parts."""

    download_s: float
    compute_s: float
    upload_s: float
    latency_s: float

    @property
    def total_s(self) -> float:
        """The whole round trip."""
        return self.download_s + self.compute_s + self.upload_s + self.latency_s


def round_trip(
    profile: ClientProfile, measured_compute_s: float, bytes_down: int, bytes_up: int
) -> ClientTiming:
    """Time one client needs for one message: download, compute, upload, latency."""
    return ClientTiming(
        download_s=bytes_down * 8 / (profile.down_mbps * 1e6),
        compute_s=measured_compute_s / profile.speed,
        upload_s=bytes_up * 8 / (profile.up_mbps * 1e6),
        latency_s=profile.latency_ms / 1000,
    )


def _uniform(cfg: ClientsConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    return np.ones(count)


def _lognormal(cfg: ClientsConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    return np.exp(rng.normal(0.0, cfg.spread, size=count))


def _tiers(cfg: ClientsConfig, count: int, rng: np.random.Generator) -> np.ndarray:
    # Exact shares, assigned to a seeded shuffle of the clients.
    speeds = np.empty(count)
    order = rng.permutation(count)
    start = 0
    tiers = parse_tiers(cfg.tiers)
    for i, (share, speed) in enumerate(tiers):
        size = count - start if i == len(tiers) - 1 else int(round(share * count))
        speeds[order[start : start + size]] = speed
        start += size
    return speeds


PROFILES: dict[str, Callable[[ClientsConfig, int, np.random.Generator], np.ndarray] | None] = {
    "uniform": _uniform,
    "lognormal": _lognormal,
    "tiers": _tiers,
    "trace": None,
}
"""Device profiles by name (``clients.profile``): how the clients' speed factors are
drawn (in client order, from the seeded generator given); ``trace`` reads every
profile from ``clients.trace`` instead."""


def make_profiles(
    cfg: ClientsConfig, clients: Sequence[int], seed: int
) -> dict[int, ClientProfile]:
    """Every client's device profile, deterministic for the seed."""
    if cfg.profile not in PROFILES:
        raise ConfigError(
            f"config key 'clients.profile' = {cfg.profile!r} is invalid: "
            f"choose one of {', '.join(PROFILES)}"
        )
    draw = PROFILES[cfg.profile]
    if draw is None:
        return read_trace(cfg.trace, clients)
    link = {"up_mbps": cfg.up_mbps, "down_mbps": cfg.down_mbps, "latency_ms": cfg.latency_ms}
    ids = sorted(clients)
    speeds = draw(cfg, len(ids), rng_for(seed, "profiles"))
    return {c: ClientProfile(speed=float(v), **link) for c, v in zip(ids, speeds, strict=True)}


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


def busy_time(
    intervals: Sequence[tuple[float, float]], start: float = -math.inf, end: float = math.inf
) -> float:
    """Length of the union of ``(begin, finish)`` intervals, clipped to ``[start, end]``.

    The server's busy time: two aggregations that overlap count once.
    """
    total, reach = 0.0, -math.inf
    for begin, finish in sorted(intervals):
        begin, finish = max(begin, start, reach), min(finish, end)
        if finish > begin:
            total += finish - begin
        reach = max(reach, finish)
    return total
