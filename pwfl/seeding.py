"""One experiment seed, many independent generators: one per (purpose, round, client)."""

from __future__ import annotations

import zlib

import numpy as np


def seed_for(seed: int, purpose: str, *keys: int) -> int:
    """Return a 63-bit integer seed derived from ``(seed, purpose, *keys)``.

    The purpose string is hashed with CRC32 (stable across processes, unlike
    ``hash``), so sampling, splitting and model initialisation never share a stream.
    """
    entropy = [seed, zlib.crc32(purpose.encode()), *keys]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def rng_for(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    """Return a NumPy generator for one purpose (and optional round, client)."""
    return np.random.default_rng(seed_for(seed, purpose, *keys))
