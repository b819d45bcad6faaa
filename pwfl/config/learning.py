"""The config sections of the learning itself: data, model, local training, strategy, and
what travels between clients and server.

Every field carries its meaning in the docstring beneath it and, when it is a
number, the range it accepts (``ranged``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pwfl.config.ranges import ranged


@dataclass(frozen=True)
class DataConfig:
    """Where client data comes from and how it is split between clients."""

    name: str = "mnist-5k"
    """Data set: mnist-5k (embedded, no download), mnist, fashion-mnist, cifar10,
    mnist1d (MNIST-1D drawn from the seed, no download), digits (scikit-learn's 8x8
    digits), hf (a Hugging Face data set: hf_dataset), or synthetic and synthetic-iid
    (Li et al.'s Synthetic(alpha, beta) and Synthetic-IID, drawn per client: any
    population)."""
    root: str = "data"
    """Folder holding torchvision data sets (ignored by the others)."""
    download: bool = False
    """Let torchvision download a missing data set into ``root``."""
    test_fraction: float = ranged(0.2, gt=0, lt=1)
    """Share of mnist-5k, mnist1d, digits (and an hf set without hf_test_split) held
    out, stratified by label, for the server's test set (others ship one)."""
    validation_fraction: float = ranged(0.2, gt=0, lt=1)
    """Share of the server's held-out examples (mnist-5k's test_fraction, a torchvision
    set's test split, the synthetic test clients' fresh examples) kept apart, by a
    seeded split stratified by label, as its validation set: whatever selects (the
    search's pick, the loss-aware policy) reads validation, the reported accuracy is
    the test set's. 0.2 keeps 80 % for the test and gives mnist-5k 200 validation
    images, enough to tell settings apart by a few points (standard error about 0.02
    at accuracy 0.9)."""
    num_clients: int = ranged(10, ge=1)
    """Number of simulated clients, one data partition each."""
    partitioner: str = "iid"
    """Client split: iid, dirichlet (alpha), pathological (classes_per_client),
    size-skewed (client sizes grow linearly: the largest holds ~N x the smallest),
    resample (examples_per_client drawn per client; partitions overlap), natural
    (hf only: one client per value of partition_by; num_clients must be their count)."""
    hf_dataset: str = ""
    """hf only: a Hugging Face hub id (read through flwr-datasets' FederatedDataset,
    which needs a network or the local hub cache) or a folder written by
    ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    hf_features: str = "image"
    """hf only: the column of examples (images become (channels, side, side) in [0, 1];
    numbers or lists of numbers are taken as they are)."""
    hf_label: str = "label"
    """hf only: the column of labels (integers, or strings numbered in sorted order)."""
    hf_test_split: str = "test"
    """hf only: the split the server tests on; a set without it holds out
    test_fraction of its train split."""
    partition_by: str = "writer_id"
    """natural only: the column whose values are the clients (FEMNIST's writer_id)."""
    alpha: float = ranged(0.5, gt=0)
    """Dirichlet concentration; small values give very non-IID clients."""
    classes_per_client: int = ranged(2, ge=1)
    """Labels per client for the pathological split."""
    examples_per_client: int = ranged(40, ge=1)
    """resample only: each client draws this many training examples of its own from
    (seed, client) (clients may share examples), so any population fits a small
    data set without a list of it."""
    synthetic_alpha: float = ranged(0.5, ge=0)
    """synthetic only: alpha of Li et al.'s Synthetic(alpha, beta), the spread of the
    clients' model means (the paper runs (0, 0), (0.5, 0.5) and (1, 1))."""
    synthetic_beta: float = ranged(0.5, ge=0)
    """synthetic only: beta, the spread of the clients' input means."""
    client_holdout: float = ranged(0.2, ge=0, lt=1)
    """Share of each client's own examples kept out of its training, on which the
    client evaluates (``client_accuracy``): a seeded split of its partition, drawn
    from (seed, client), the same for every strategy. 0.2 is the 80/20 split of
    Flower's examples: enough examples to measure a partition's accuracy to a few
    points while it keeps most of its data to train on. A partition of two examples
    or more holds out at least one and keeps at least one; a one-example client
    trains on it and reports no evaluation. 0 turns the split off."""
    participation: float = ranged(1.0, gt=0, le=1)
    """Share of the clients that hold this data set: each client holds it with this
    probability, drawn from (seed, task, client), and is never asked to train a task
    it does not hold. 1 (every client holds it) unless a weight set is its own task
    (``data`` keys in a ``[[weight_set]]`` table): below 1 needs a group policy that
    draws each client's set from a row of probabilities (random, alpha-fair,
    variance-reduced)."""


@dataclass(frozen=True)
class ModelConfig:
    """Which network every client trains."""

    name: str = "cnn"
    """Registry name: cnn (two conv+BN+pool blocks, dropout FC), small-cnn, mlp,
    logreg, cnn1d (two 1D conv+pool blocks, for signals such as mnist1d)."""


@dataclass(frozen=True)
class TrainConfig:
    """Local training on each client, sent to it every round."""

    local_epochs: int = ranged(1, ge=1)
    """Passes over the client's partition per round."""
    batch_size: int = ranged(32, ge=1)
    """Mini-batch size of local SGD."""
    lr: float = ranged(0.02, gt=0)
    """SGD learning rate."""
    momentum: float = ranged(0.9, ge=0, lt=1)
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
    """The strategy, by its name in ``pwfl.strategies.STRATEGIES``: pwfl (K weight sets
    trained concurrently), pwfl-sequential (the same K sets one group after another),
    fedavg (Flower's FedAvg) and the asynchronous ones; docs/strategies.md has each."""
    num_rounds: int = ranged(10, ge=1)
    """Server rounds; in a PWFL round every weight set trains once."""
    fraction_train: float = ranged(1.0, gt=0, le=1)
    """Share of clients sampled for training each round, in (0, 1]."""
    min_train_nodes: int = ranged(2, ge=1)
    """Lower bound on the number of sampled training clients."""
    fraction_evaluate: float = ranged(0.5, ge=0, le=1)
    """Share of each round's cohort (the clients sent training messages) that then
    evaluates the round's weight set(s) on its own data, in [0, 1]; at least one
    client when above 0. Synchronous rounds only."""
    mode: str = "sync"
    """pwfl only: sync (a round barrier over the K groups) or async (each weight set
    moves on as soon as its own group is aggregated, with clients that are free)."""
    k: int = ranged(2, ge=1)
    """Number of global weight sets (PWFL only); each round's clients are split
    into k disjoint groups."""
    group_policy: str = "complementary"
    """How sampled clients are split into groups: complementary (random split),
    balanced (near-equal examples per group), fixed (a client always trains the
    same weight set), round-robin (MFA-RR: in round r client c trains set
    (c + r) mod k), loss-aware (a client goes to set k with probability
    L_k / sum L, the sets' latest server validation losses), random (MFA-Rand: each
    client draws a set uniformly), alpha-fair (FedFairMMFL: set s with probability
    proportional to w_s L_s^(alpha - 1)) or variance-reduced (client i to set s in
    proportion to the norm of its latest update for s); docs/strategies.md has each.
    In async mode each set draws its group from the free clients by the same rule."""
    alpha: float = ranged(1.0, ge=0)
    """alpha-fair: the fairness exponent, >= 0; 1 allocates uniformly, larger values
    send more clients to the sets with the highest validation loss."""
    set_weights: str = ""
    """alpha-fair: each weight set's priority w_s, k positive numbers separated by
    commas ("1,2"); empty: every set 1."""
    merge: str = "none"
    """Merge policy between weight sets: none, every:N (average and redistribute
    every N rounds) or final (one merged model, evaluated at the end)."""
    executor: str = "threads"
    """Where the K group aggregations run: threads (the default: on one machine the
    fastest, benchmarks/aggregation.py), ray (one Ray task each: the updates are
    copied into Ray's object store, which costs more than the mean itself here, but
    lets a multi-node cluster aggregate on other machines' cores; on the inline backend,
    which starts no Ray session, it aggregates in threads: the records are the same)
    or serial."""
    aggregator: str = "fedavg"
    """How a group's updates become one weight set: fedavg, median, trimmed-mean,
    krum, multi-krum, or a dotted path ``package.module:function`` to your own
    (pwfl strategies; the fedavg strategy is Flower's FedAvg)."""
    trim_beta: float = ranged(0.2, ge=0, lt=0.5)
    """trimmed-mean: share of values cut from each end, in [0, 0.5)."""
    num_malicious: int = ranged(0, ge=0)
    """krum / multi-krum: number of Byzantine clients tolerated."""
    krum_keep: int = ranged(0, ge=0)
    """multi-krum: updates averaged; 0 keeps n - num_malicious."""
    server_opt: str = "none"
    """Server optimiser applied to each weight set after aggregation (Flower's own):
    none, fedavgm, fedadam, fedyogi, fedadagrad (pwfl strategies)."""
    server_lr: float = ranged(0.0, ge=0)
    """Server learning rate; 0 keeps the default: Flower's for the optimiser (1.0 for
    fedavgm, 0.1 for the adaptive ones), 1.0 for fedbuff's step, 0.1 for fedast's (its
    reference code's global learning rate)."""
    server_momentum: float = ranged(0.0, ge=0, lt=1)
    """fedavgm: server momentum, in [0, 1)."""
    target_accuracy: float = ranged(0.9, gt=0, le=1)
    """Accuracy whose first crossing is reported as rounds/time to target."""
    tables: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    """The strategies' own tables, ``[strategy.<name>]``: keys only that strategy reads,
    declared by its ``Settings`` (:mod:`pwfl.strategies`), as (name, ((key, value),
    ...)) pairs; read them with :meth:`table`."""

    def table(self, name: str) -> dict[str, Any]:
        """The keys of the ``[strategy.<name>]`` table (empty when there is none)."""
        return dict(dict(self.tables).get(name, ()))


@dataclass(frozen=True)
class CommConfig:
    """What travels between clients and server."""

    compression: str = "none"
    """Client updates as sent: none, int8 (8-bit weights with a per-tensor scale and
    zero point) or int8-delta (8-bit difference from the weights received)."""
