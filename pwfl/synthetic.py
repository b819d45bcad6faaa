"""Synthetic(alpha, beta): the federated benchmark of Li et al., drawn for each client on demand.

Li, Sahu, Zaheer, Sanjabi, Talwalkar and Smith, "Federated Optimization in
Heterogeneous Networks", MLSys 2020, Section 5.1. Client ``k`` holds examples
``x`` in R^60 labelled by its own model ``y = argmax(softmax(W_k x + b_k))`` over
10 classes, with

* ``u_k ~ N(0, alpha)``, ``W_k ~ N(u_k, 1)`` (10 x 60) and ``b_k ~ N(u_k, 1)``;
* ``B_k ~ N(0, beta)``, ``v_k ~ N(B_k, 1)`` (60 values) and ``x ~ N(v_k, Sigma)``
  with ``Sigma`` diagonal, ``Sigma_jj = j^-1.2``;
* ``50 + floor(LogNormal(4, 2))`` examples: a power law, capped here at
  ``MAX_EXAMPLES`` so that no single client holds millions.

As in the authors' generator, which made the paper's data, alpha and beta are the
standard deviations of ``u_k`` and ``B_k`` (the paper writes ``N(0, alpha)``).
Synthetic(0, 0) centres every client on the same means, yet each client draws
a classifier of its own. The fourth data set of the paper, Synthetic-IID
(``data.name = "synthetic-iid"``), gives every client one shared ``W, b ~ N(0, 1)``
and the inputs ``x ~ N(0, Sigma)``.

Two properties of the definition decide what a global model can learn. The
shift ``u_k`` adds the same ``u_k (1 + sum_j x_j)`` to every class's logit, so it
never changes a label: alpha plays no part in who labels what. And the rest of
``W_k`` and ``b_k`` is independent from client to client, so outside
Synthetic-IID a client's labels follow a rule no other client shares. The
paper evaluates on its 30 clients' own held-out examples; so does the server's
test set here (``test_set``): fresh examples of ``TEST_CLIENTS`` of the
population's clients (all of them in a smaller population).

Everything is drawn from ``(seed, client)`` when a client is first asked for and
never stored, so a population of a billion costs what its sampled clients cost.
"""

from __future__ import annotations

import math

import numpy as np

from pwfl.seeding import rng_for

NAMES = ("synthetic", "synthetic-iid")
"""The data set names (``data.name``) drawn here."""
IID = "synthetic-iid"
FEATURES, CLASSES = 60, 10
COVARIANCE = np.arange(1, FEATURES + 1, dtype=np.float64) ** -1.2
"""The diagonal of Sigma: feature j has variance j^-1.2."""
MIN_EXAMPLES = 50
MAX_EXAMPLES = 10_000
TEST_CLIENTS = 100
TEST_SHARE = 0.1
"""The server's test set takes this share of each test client's examples on top of them
(the authors' generator keeps 10 % of each client's examples for testing)."""


def client_size(seed: int, client: int) -> int:
    """Training examples client ``client`` holds: ``50 + floor(LogNormal(4, 2))``, capped."""
    draw = rng_for(seed, "synthetic-size", client).lognormal(4.0, 2.0)
    return int(min(MAX_EXAMPLES, MIN_EXAMPLES + math.floor(draw)))


def client_model(
    alpha: float, beta: float, seed: int, client: int, iid: bool = False
) -> dict[str, np.ndarray | np.float64]:
    """Client ``client``'s generative model: ``u``, ``W`` (10 x 60), ``b``, ``B`` and ``v``.

    With ``iid`` (Synthetic-IID) it is the one model of the seed, whatever the client:
    ``W, b ~ N(0, 1)``, ``v = 0``; alpha and beta play no part.
    """
    if iid:
        rng = rng_for(seed, "synthetic-iid")
        return {
            "u": np.float64(0.0),
            "W": rng.normal(0.0, 1.0, size=(CLASSES, FEATURES)),
            "b": rng.normal(0.0, 1.0, size=CLASSES),
            "B": np.float64(0.0),
            "v": np.zeros(FEATURES),
        }
    rng = rng_for(seed, "synthetic-model", client)
    u = rng.normal(0.0, alpha)
    big_b = rng.normal(0.0, beta)
    return {
        "u": np.float64(u),
        "W": rng.normal(u, 1.0, size=(CLASSES, FEATURES)),
        "b": rng.normal(u, 1.0, size=CLASSES),
        "B": np.float64(big_b),
        "v": rng.normal(big_b, 1.0, size=FEATURES),
    }


def client_examples(
    alpha: float,
    beta: float,
    seed: int,
    client: int,
    count: int | None = None,
    iid: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Client ``client``'s training examples: ``x`` (count, 60) float32, labels ``y`` (count,).

    ``count`` defaults to the client's size (:func:`client_size`).
    """
    count = client_size(seed, client) if count is None else count
    model = client_model(alpha, beta, seed, client, iid)
    return _label(model, rng_for(seed, "synthetic-examples", client), count)


def test_clients(num_clients: int, seed: int) -> list[int]:
    """The clients whose fresh examples make the server's test set: every client of a
    population of at most ``TEST_CLIENTS``, else a seeded uniform sample of that many."""
    if num_clients <= TEST_CLIENTS:
        return list(range(num_clients))
    picked = rng_for(seed, "synthetic-test-clients").choice(num_clients, TEST_CLIENTS, False)
    return sorted(int(c) for c in picked)


def test_set(
    alpha: float, beta: float, seed: int, num_clients: int, iid: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The server's test set: for each of :func:`test_clients`, ``TEST_SHARE`` of its size
    in fresh examples of its own distribution (never the ones it trains on)."""
    parts = [
        _label(
            client_model(alpha, beta, seed, c, iid),
            rng_for(seed, "synthetic-test-examples", c),
            max(1, round(TEST_SHARE * client_size(seed, c))),
        )
        for c in test_clients(num_clients, seed)
    ]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def _label(
    model: dict[str, np.ndarray | np.float64], rng: np.random.Generator, count: int
) -> tuple[np.ndarray, np.ndarray]:
    x = model["v"] + np.sqrt(COVARIANCE) * rng.standard_normal((count, FEATURES))
    y = np.argmax(x @ model["W"].T + model["b"], axis=1)  # softmax keeps the argmax
    return x.astype(np.float32), y.astype(np.int64)
