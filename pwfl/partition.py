"""Client sampling and the policies that split a round's clients into K disjoint groups.

Usage::

    sampled = sample_clients(range(10), fraction=1.0, min_nodes=2, rng=rng)
    groups = split_clients("complementary", sampled, k=2, rng=rng)   # S and S'

Every function works on client ids (partition ids) and NumPy generators, so the
same seed always gives the same sample and the same split. Groups are
disjoint and together equal the sample: no client trains two weight sets in
one round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from pwfl.config import num_sampled


def sample_clients(
    clients: Sequence[int], fraction: float, min_nodes: int, rng: np.random.Generator
) -> list[int]:
    """Draw ``max(int(len * fraction), min_nodes)`` clients without replacement.

    Flower's FedAvg counts the sample the same way but draws from the unseeded
    ``random`` module over an unordered set of node ids; drawing from a seeded
    generator over sorted client ids makes runs repeatable.
    """
    pool = sorted(clients)
    size = num_sampled(len(pool), fraction, min_nodes)
    picked = rng.choice(len(pool), size=size, replace=False)
    return [pool[i] for i in picked]


def split_complementary(
    clients: Sequence[int], k: int, rng: np.random.Generator
) -> list[list[int]]:
    """A random subset S and its complement S' (K=2); for K>2 a random K-way split.

    Group sizes differ by at most one.
    """
    _check_k(clients, k)
    order = rng.permutation(len(clients))
    return [[clients[i] for i in chunk] for chunk in np.array_split(order, k)]


def split_balanced(
    clients: Sequence[int], k: int, sizes: Mapping[int, int], rng: np.random.Generator
) -> list[list[int]]:
    """Groups of near-equal total examples (greedy: largest client to the lightest group).

    Ties between equal-sized clients are broken at random, so the split still
    varies from round to round.
    """
    _check_k(clients, k)
    jitter = rng.permutation(len(clients))
    # Sort by size (largest first), random order among equal sizes.
    order = sorted(range(len(clients)), key=lambda i: (-sizes[clients[i]], jitter[i]))
    groups: list[list[int]] = [[] for _ in range(k)]
    totals = [0] * k
    for i in order:
        target = min(range(k), key=lambda g: (totals[g], len(groups[g]), g))
        groups[target].append(clients[i])
        totals[target] += sizes[clients[i]]
    return groups


def split_fixed(clients: Sequence[int], k: int) -> list[list[int]]:
    """Client ``c`` always trains weight set ``c mod k``.

    A group can be empty in a round whose sample holds none of its clients;
    that weight set then keeps its weights for the round.
    """
    _check_k(clients, k)
    return [[c for c in clients if c % k == g] for g in range(k)]


GROUP_POLICIES: dict[str, Callable[..., list[list[int]]]] = {
    "complementary": lambda clients, k, rng, sizes: split_complementary(clients, k, rng),
    "balanced": lambda clients, k, rng, sizes: split_balanced(clients, k, sizes, rng),
    "fixed": lambda clients, k, rng, sizes: split_fixed(clients, k),
}
"""``strategy.group_policy`` names -> ``(clients, k, rng, sizes) -> groups``."""


def split_clients(
    policy: str,
    clients: Sequence[int],
    k: int,
    rng: np.random.Generator,
    sizes: Mapping[int, int] | None = None,
) -> list[list[int]]:
    """Split ``clients`` into ``k`` disjoint groups with a named policy."""
    if policy not in GROUP_POLICIES:
        raise ValueError(
            f"unknown group policy '{policy}'; choose one of {', '.join(GROUP_POLICIES)}"
        )
    if policy == "balanced" and sizes is None:
        raise ValueError("the balanced policy needs the clients' example counts")
    return GROUP_POLICIES[policy](clients, k, rng, sizes)


def _check_k(clients: Sequence[int], k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > len(clients):
        raise ValueError(
            f"cannot split {len(clients)} sampled clients into k={k} groups; "
            "lower strategy.k or sample more clients"
        )
