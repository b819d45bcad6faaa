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
from dataclasses import dataclass, field

import numpy as np

from pwfl import allocation
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


def draw_random(
    free: Sequence[int], weight_set: int, k: int, size: int, rng: np.random.Generator
) -> list[int]:
    """One group for one weight set, drawn uniformly from the free clients (async mode)."""
    take = min(size, len(free))
    return sorted(int(c) for c in rng.choice(np.asarray(free), size=take, replace=False))


def draw_balanced(
    free: Sequence[int],
    weight_set: int,
    k: int,
    size: int,
    rng: np.random.Generator,
    sizes: Mapping[int, int],
) -> list[int]:
    """One group whose mean examples per client is as close as it can be to the free pool's.

    The async counterpart of :func:`split_balanced`: clients are taken one by one
    (in a random order, so equal choices vary from round to round), each time
    the one that brings the group's mean nearest the pool's.
    """
    pool = [free[i] for i in rng.permutation(len(free))]
    target = float(np.mean([sizes[c] for c in pool])) if pool else 0.0
    group: list[int] = []
    total = 0
    for _ in range(min(size, len(pool))):
        best = min(pool, key=lambda c: abs((total + sizes[c]) / (len(group) + 1) - target))
        pool.remove(best)
        group.append(best)
        total += sizes[best]
    return sorted(group)


def split_round_robin(clients: Sequence[int], k: int, server_round: int) -> list[list[int]]:
    """MFA-RR (Bhuyan and Moharir, multi-model federated learning): in round ``r`` client
    ``c`` trains weight set ``(c + r) mod k``, so each client cycles through the sets."""
    _check_k(clients, k)
    return [[c for c in clients if (c + server_round) % k == g] for g in range(k)]


def loss_shares(losses: Sequence[float]) -> np.ndarray:
    """Each set's share of the clients: its latest server validation loss over the sum.

    The loss-aware rule: a client goes to set ``k`` with probability
    ``L_k / sum_j L_j``, so the sets that are furthest behind get the most
    clients. Before a set has a loss (round 1) or when a loss is not finite,
    every set gets an equal share. The losses are the server's validation losses,
    never its test losses: an allocation chosen from the test set would tune the run
    to the set its accuracy is reported on.
    """
    values = np.asarray(losses, dtype=np.float64)
    if len(values) == 0 or not np.all(np.isfinite(values)) or values.sum() <= 0:
        return np.full(len(values), 1.0 / max(len(values), 1))
    return values / values.sum()


def split_loss_aware(
    clients: Sequence[int], k: int, rng: np.random.Generator, losses: Sequence[float]
) -> list[list[int]]:
    """Every client drawn into one set, set ``k`` with probability :func:`loss_shares`;
    a set that draws nobody keeps its weights for the round."""
    _check_k(clients, k)
    picks = rng.choice(k, size=len(clients), p=loss_shares(losses))
    return [[c for c, g in zip(clients, picks, strict=True) if g == group] for group in range(k)]


def draw_round_robin(
    free: Sequence[int],
    weight_set: int,
    k: int,
    size: int,
    rng: np.random.Generator,
    server_round: int,
) -> list[int]:
    """One group of the free clients whose turn it is to train ``weight_set`` in the set's
    round ``server_round`` (MFA-RR, as :func:`split_round_robin`)."""
    due = [c for c in free if (c + server_round) % k == weight_set]
    return draw_random(due, weight_set, k, size, rng) if due else []


def draw_loss_aware(
    free: Sequence[int],
    weight_set: int,
    k: int,
    size: int,
    rng: np.random.Generator,
    losses: Sequence[float],
) -> list[int]:
    """One group whose size is the set's loss share of K groups' clients (at least one)."""
    share = loss_shares(losses)[weight_set] if len(losses) == k else 1.0 / k
    return draw_random(free, weight_set, k, max(1, round(size * k * share)), rng)


def draw_fixed(
    free: Sequence[int], weight_set: int, k: int, size: int, rng: np.random.Generator
) -> list[int]:
    """One group of the weight set's own clients (``c mod k``) among the free ones."""
    own = [c for c in free if c % k == weight_set]
    return draw_random(own, weight_set, k, size, rng) if own else []


@dataclass(frozen=True)
class GroupContext:
    """What a policy may know beyond the clients: the round (the set's own in async
    mode), each weight set's latest server validation loss (NaN before its first),
    the alpha-fair settings, and the norms of the latest updates received."""

    server_round: int = 1
    losses: tuple[float, ...] = ()
    alpha: float = 1.0
    """alpha-fair: the fairness exponent (``strategy.alpha``)."""
    set_weights: tuple[float, ...] = ()
    """alpha-fair: each set's priority (``strategy.set_weights``; empty: all 1)."""
    norms: Mapping[tuple[int, int], float] = field(default_factory=dict)
    """variance-reduced: (client, weight set) -> the norm of the latest update of that
    client for that set the server received (:func:`pwfl.allocation.update_norm`)."""
    holds: Callable[[int, int], bool] | None = None
    """(client, weight set) -> whether the client holds the set's task
    (``data.participation``); None: every client holds every task."""


def _shares(name: str, clients: Sequence[int], k: int, ctx: GroupContext) -> np.ndarray:
    """One row of K set probabilities per client, by the allocation rule ``name``; with
    partial participation, each row restricted to the tasks its client holds
    (:func:`pwfl.allocation.restrict`)."""
    if name == "random":
        probs = allocation.uniform_shares(len(clients), k)
    elif name == "alpha-fair":
        losses = ctx.losses if len(ctx.losses) == k else (float("nan"),) * k
        weights = ctx.set_weights if len(ctx.set_weights) == k else ()
        row = allocation.alpha_fair_shares(losses, ctx.alpha, weights)
        probs = np.tile(row, (len(clients), 1))
    else:
        probs = allocation.variance_reduced_shares(clients, k, ctx.norms)
    if ctx.holds is None:
        return probs
    held = np.array([[ctx.holds(c, ws) for ws in range(k)] for c in clients], dtype=bool)
    return allocation.restrict(probs, held.reshape(len(clients), k))


def _allocated(name: str) -> GroupPolicy:
    """The policy of a rule where each client draws its own set (:mod:`pwfl.allocation`)."""

    def split(
        clients: Sequence[int],
        k: int,
        rng: np.random.Generator,
        sizes: Mapping[int, int],
        ctx: GroupContext,
    ) -> list[list[int]]:
        _check_k(clients, k)
        return allocation.split_by_probabilities(clients, _shares(name, clients, k, ctx), rng)

    def draw(
        free: Sequence[int],
        ws: int,
        k: int,
        size: int,
        rng: np.random.Generator,
        sizes: Mapping[int, int],
        ctx: GroupContext,
    ) -> list[int]:
        return allocation.draw_by_probabilities(free, ws, size, _shares(name, free, k, ctx), rng)

    return GroupPolicy(split, draw)


@dataclass(frozen=True)
class GroupPolicy:
    """How clients form groups: all of a round's sample at once (a round barrier, K groups),
    or one group at a time for one weight set from the clients free then (async)."""

    split: Callable[..., list[list[int]]]
    """(clients, k, rng, sizes, context) -> K disjoint groups."""
    draw: Callable[..., list[int]]
    """(free, weight_set, k, size, rng, sizes, context) -> one group."""


GROUP_POLICIES: dict[str, GroupPolicy] = {
    "complementary": GroupPolicy(
        lambda clients, k, rng, sizes, ctx: split_complementary(clients, k, rng),
        lambda free, ws, k, size, rng, sizes, ctx: draw_random(free, ws, k, size, rng),
    ),
    "balanced": GroupPolicy(
        lambda clients, k, rng, sizes, ctx: split_balanced(clients, k, sizes, rng),
        lambda free, ws, k, size, rng, sizes, ctx: draw_balanced(free, ws, k, size, rng, sizes),
    ),
    "fixed": GroupPolicy(
        lambda clients, k, rng, sizes, ctx: split_fixed(clients, k),
        lambda free, ws, k, size, rng, sizes, ctx: draw_fixed(free, ws, k, size, rng),
    ),
    "round-robin": GroupPolicy(
        lambda clients, k, rng, sizes, ctx: split_round_robin(clients, k, ctx.server_round),
        lambda free, ws, k, size, rng, sizes, ctx: draw_round_robin(
            free, ws, k, size, rng, ctx.server_round
        ),
    ),
    "loss-aware": GroupPolicy(
        lambda clients, k, rng, sizes, ctx: split_loss_aware(clients, k, rng, ctx.losses),
        lambda free, ws, k, size, rng, sizes, ctx: draw_loss_aware(
            free, ws, k, size, rng, ctx.losses
        ),
    ),
    "random": _allocated("random"),
    "alpha-fair": _allocated("alpha-fair"),
    "variance-reduced": _allocated("variance-reduced"),
}
"""``strategy.group_policy`` names -> their split (sync) and draw (async); keyed by exactly
``pwfl.registry.GROUP_POLICIES``."""


def _policy(name: str) -> GroupPolicy:
    if name not in GROUP_POLICIES:
        raise ValueError(
            f"unknown group policy '{name}'; choose one of {', '.join(GROUP_POLICIES)}"
        )
    return GROUP_POLICIES[name]


def draw_group(
    policy: str,
    free: Sequence[int],
    weight_set: int,
    k: int,
    size: int,
    rng: np.random.Generator,
    sizes: Mapping[int, int],
    context: GroupContext = GroupContext(),
) -> list[int]:
    """Up to ``size`` of the ``free`` clients for weight set ``weight_set`` with a named policy."""
    return _policy(policy).draw(free, weight_set, k, size, rng, sizes, context)


def split_clients(
    policy: str,
    clients: Sequence[int],
    k: int,
    rng: np.random.Generator,
    sizes: Mapping[int, int] | None = None,
    context: GroupContext = GroupContext(),
) -> list[list[int]]:
    """Split ``clients`` into ``k`` disjoint groups with a named policy."""
    chosen = _policy(policy)
    if policy == "balanced" and sizes is None:
        raise ValueError("the balanced policy needs the clients' example counts")
    return chosen.split(clients, k, rng, sizes or {}, context)


def _check_k(clients: Sequence[int], k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > len(clients):
        raise ValueError(
            f"cannot split {len(clients)} sampled clients into k={k} groups; "
            "lower strategy.k or sample more clients"
        )
