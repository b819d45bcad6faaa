"""A user-defined aggregator, loaded by dotted path in an end-to-end test."""

from __future__ import annotations

import numpy as np

CALLS: list[int] = []


def counting_mean(updates: list[tuple[dict[str, np.ndarray], float]]) -> dict[str, np.ndarray]:
    """Unweighted mean of the group's arrays; records how many updates it saw."""
    CALLS.append(len(updates))
    names = updates[0][0].keys()
    return {
        n: np.mean([u[n] for u, _ in updates], axis=0).astype(updates[0][0][n].dtype) for n in names
    }
