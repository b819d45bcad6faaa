"""The names every choice key of the config accepts, readable without PyTorch or Flower.

Usage::

    from pwfl import registry
    registry.MODELS          # ("cnn", "small-cnn", "mlp", "logreg", "cnn1d")

Each tuple is the one list of its names. The module that implements them keys its
table by exactly this tuple (``pwfl.models.MODELS``, ``pwfl.data.PARTITIONERS``,
...; ``tests/test_registry.py`` checks every pair), so a new component is its code,
its entry in that table, and its name here. The config validates against these
tuples, which is why reading a config loads neither PyTorch nor Flower. This module
imports nothing. Strategies are their own registry (``pwfl.strategies.STRATEGIES``:
each policy class names itself, declares its settings and checks them), and their
modules import neither PyTorch nor Flower either.
"""

from __future__ import annotations

DATASETS = (
    "mnist-5k",
    "mnist",
    "fashion-mnist",
    "cifar10",
    "mnist1d",
    "digits",
    "hf",
    "synthetic",
    "synthetic-iid",
)
"""``data.name``: the keys of ``pwfl.data.INFO``."""
IMAGE_DATASETS = ("mnist-5k", "mnist", "fashion-mnist", "cifar10", "digits")
"""The data sets whose examples are images (``(channels, side, side)``), the only ones
``train.augment`` applies to: those of ``pwfl.data.INFO`` whose ``images`` is true."""
PARTITIONERS = ("iid", "dirichlet", "pathological", "size-skewed", "resample", "natural")
"""``data.partitioner``: the keys of ``pwfl.data.PARTITIONERS``."""
MODELS = ("cnn", "small-cnn", "mlp", "logreg", "cnn1d")
"""``model.name``: the keys of ``pwfl.models.MODELS``."""
CLIENT_STATES = ("none", "momentum", "personal")
"""``train.client_state``: ``pwfl.training.CLIENT_STATES``."""
BINDINGS = ("pool", "node")
"""``simulation.client_binding``: ``pwfl.transport.BINDINGS``."""
MESSAGES = ("cohort", "client")
"""``simulation.messages``: a message per pool node and job, or one per client."""
BACKENDS = ("ray", "inline")
"""``simulation.backend``: Flower's simulation engine on Ray, or ``pwfl.inline``."""
GROUP_POLICIES = (
    "complementary",
    "balanced",
    "fixed",
    "round-robin",
    "loss-aware",
    "random",
    "alpha-fair",
    "variance-reduced",
)
"""``strategy.group_policy``: the keys of ``pwfl.partition.GROUP_POLICIES``."""
EXECUTORS = ("ray", "threads", "serial")
"""``strategy.executor``: the keys of ``pwfl.aggregation.EXECUTORS``."""
SERVER_OPTIMIZERS = ("none", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
"""``strategy.server_opt``: the keys of ``pwfl.strategies.server_optimizer.OPTIMIZERS``."""
COMPRESSION_MODES = ("none", "int8", "int8-delta")
"""``comm.compression``: ``pwfl.codec.MODES``."""
PROFILES = ("uniform", "lognormal", "tiers", "trace")
"""``clients.profile``: the keys of ``pwfl.devices.PROFILES``."""
CLOCK_MODES = ("modelled", "measured")
"""``clock.compute``: ``pwfl.clock.COMPUTE``."""
BALANCING = ("off", "halve", "proportional")
"""``stragglers.load_balancing``: the keys of ``pwfl.stragglers.BALANCING``."""
ARITHMETIC_MODES = ("portable", "native")
"""``reproducibility.arithmetic``: ``pwfl.arithmetic.MODES``."""
