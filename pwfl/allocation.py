"""Multi-model client-to-set allocation: each client draws its weight set from a probability row.

Usage::

    probs = alpha_fair_shares(losses=(0.5, 0.25), alpha=3.0)        # [0.8, 0.2]
    groups = split_by_probabilities(clients, np.tile(probs, (len(clients), 1)), rng)

Three rules from the multi-model federated learning literature, where each weight
set may be a different task: uniform (MFA-Rand), alpha-fair (FedFairMMFL) and
variance-reduced. Each gives every client a row of K probabilities; a client's
set is drawn from its row, independently of the others, by one uniform number
(:func:`assign_sets`), so groups can be unequal or empty. A set with no client in
a round keeps its weights (the engine completes a job without clients at once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def assign_sets(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row's set: the first column whose cumulative probability exceeds one
    uniform draw ``u`` in [0, 1) for that row (one ``rng.random(n)`` call for all rows).

    The last cumulative value is pinned to 1 so a row summing to 1 - eps still
    always picks a set. A row of zeros (a client that holds no task,
    :func:`restrict`) picks none: -1.
    """
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(len(probs))
    picks = (u[:, None] >= cdf).sum(axis=1)
    picks[probs.sum(axis=1) <= 0] = -1
    return picks


def restrict(probs: np.ndarray, held: np.ndarray) -> np.ndarray:
    """Each client's row over the tasks it holds (``held[i, s]``), scaled back to sum 1:
    the rule's probabilities conditioned on a task the client can train. A row whose
    every held task has probability 0 is spread uniformly over the held ones; a client
    holding none gets a row of zeros and trains nothing (:func:`assign_sets`)."""
    masked = np.where(held, probs, 0.0)
    totals = masked.sum(axis=1, keepdims=True)
    counts = held.sum(axis=1, keepdims=True)
    uniform = np.where(held, 1.0 / np.maximum(counts, 1), 0.0)
    return np.where(totals > 0, masked / np.where(totals > 0, totals, 1.0), uniform)


def split_by_probabilities(
    clients: Sequence[int], probs: np.ndarray, rng: np.random.Generator
) -> list[list[int]]:
    """K groups: client ``clients[i]`` trains the set :func:`assign_sets` draws from row i."""
    picks = assign_sets(probs, rng)
    return [
        [c for c, g in zip(clients, picks, strict=True) if g == ws] for ws in range(probs.shape[1])
    ]


def draw_by_probabilities(
    free: Sequence[int], weight_set: int, size: int, probs: np.ndarray, rng: np.random.Generator
) -> list[int]:
    """One group for ``weight_set`` from the ``free`` clients (async mode).

    Every free client draws its set from its row as in :func:`split_by_probabilities`;
    of those that drew ``weight_set``, at most ``max(1, round(size * K * m))`` are
    kept, uniformly at random, where ``m`` is the set's mean probability over the
    free clients: a set gets, in expectation, its share of K groups' clients, as a
    synchronous round would give it. None when no free client drew the set: it then
    waits for the next reply (or online period) and draws again.
    """
    if not free:
        return []
    picks = assign_sets(probs, rng)
    drew = np.asarray([c for c, g in zip(free, picks, strict=True) if g == weight_set])
    cap = max(1, round(size * probs.shape[1] * float(probs[:, weight_set].mean())))
    take = min(cap, len(drew))
    return sorted(int(c) for c in rng.choice(drew, size=take, replace=False)) if take else []


def update_norm(trained: Mapping[str, np.ndarray], sent: Mapping[str, np.ndarray]) -> float:
    """``||U||``: the L2 norm, in float64, of a client's update, its trained weights
    minus the weights it was sent, over the arrays it sent back (by name, in sorted
    order so the float sum never depends on the arrays' order)."""
    total = 0.0
    for name in sorted(set(trained) & set(sent)):
        delta = np.asarray(trained[name], dtype=np.float64) - np.asarray(sent[name], np.float64)
        total += float(np.dot(delta.ravel(), delta.ravel()))
    return float(np.sqrt(total))


def uniform_shares(num_clients: int, k: int) -> np.ndarray:
    """MFA-Rand (Bhuyan, Moharir and Joshi, "Multi-model federated learning with
    provable guarantees", arXiv 2022; after Bhuyan and Moharir, "Multi-model
    federated learning", COMSNETS 2022): every client draws each of the K sets with
    probability 1/K, independently of the others and of the round."""
    return np.full((num_clients, k), 1.0 / k)


def alpha_fair_shares(
    losses: Sequence[float], alpha: float, weights: Sequence[float] = ()
) -> np.ndarray:
    """FedFairMMFL's task probabilities: ``p_s = w_s f_s^(alpha-1) / sum_j w_j f_j^(alpha-1)``.

    Siew, Zhang, Park, Liu, Ruan, Su, Ioannidis, Yeh and Joe-Wong, "Fair concurrent
    training of multiple models in federated learning" (arXiv:2404.13841, IEEE/ACM
    ToN 2025), FedFairMMFL: each round every client trains task s with a probability
    proportional to the task's current loss raised to ``alpha - 1``, the gradient
    weight of the alpha-fair objective ``sum_s f_s^alpha / alpha``; ``alpha = 1`` is
    uniform, larger ``alpha`` sends more clients to the tasks furthest behind,
    ``alpha < 1`` to those ahead. The stored copies of the paper reachable here hold
    its abstract only ("dynamically allocates clients to tasks ... based on the
    tasks' current performance levels"), so the power form above is the one the
    paper's alpha-fair derivation gives, not checked against its text here.
    ``f_s`` is set s's latest server *validation loss*: the loss is the paper's
    ``f_s`` (its objective is over the tasks' losses, whose gradient the weight
    multiplies; an accuracy error would be another objective), and validation, never
    test, so the allocation is not tuned on the set its accuracy is reported on.
    ``w_s`` are per-set priorities (``strategy.set_weights``, default 1). Before
    every set has a finite, positive loss (round 1), or when a weight comes out
    non-finite, the shares are the weights' alone (uniform by default).
    """
    k = len(losses)
    w = np.asarray(weights if len(weights) else np.ones(k), dtype=np.float64)
    f = np.asarray(losses, dtype=np.float64)
    if k == 0:
        return f
    if np.all(np.isfinite(f)) and np.all(f > 0):
        raw = w * f ** (alpha - 1.0)
        if np.all(np.isfinite(raw)) and raw.sum() > 0:
            return raw / raw.sum()
    return w / w.sum()


def variance_reduced_shares(
    clients: Sequence[int], k: int, norms: Mapping[tuple[int, int], float]
) -> np.ndarray:
    """Each client's row ``p_{i,s} = d_i ||U_{i,s}|| / sum_j d_i ||U_{i,j}||``.

    After the optimal variance-reduced sampling of multi-model FL (Zhang, Siew,
    Joe-Wong et al., "Optimal variance-reduced client sampling for multiple models
    federated learning", ICDCS 2024 poster; "Towards optimal heterogeneous client
    sampling in multi-model federated learning", arXiv:2504.05138, 2025): the
    variance of a task's aggregated update is smallest when a client is sampled for
    it in proportion to its data share ``d_i`` times the norm of its update
    ``U_{i,s}``. Here a client always trains exactly one set, so the rule is
    normalised over the sets per client; ``d_i`` (one data partition per client,
    the same for every set) then cancels and the row is the client's norms over
    their sum. ``norms`` holds the norm of the latest update the server received from
    client i for set s (:func:`update_norm`). A pair never seen
    takes the mean known norm of that set; a set with no known norm the mean of all
    known norms; with none known, 1 (uniform rows). A row whose norms sum to 0 is
    uniform.
    """
    known: list[list[float]] = [[] for _ in range(k)]
    for (_, ws), value in sorted(norms.items()):
        if ws < k:
            known[ws].append(value)
    everything = [v for values in known for v in values]
    overall = float(np.mean(everything)) if everything else 1.0
    fill = [float(np.mean(values)) if values else overall for values in known]
    rows = np.asarray(
        [[norms.get((c, ws), fill[ws]) for ws in range(k)] for c in clients], dtype=np.float64
    ).reshape(len(clients), k)
    totals = rows.sum(axis=1, keepdims=True)
    return np.where(totals > 0, rows / np.where(totals > 0, totals, 1.0), 1.0 / k)
