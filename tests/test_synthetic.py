"""Synthetic(alpha, beta) against the definition of Li et al. (FedProx, MLSys 2020)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pwfl import synthetic
from pwfl.config import DataConfig
from pwfl.data import client_data, client_size, server_test_data, server_validation_data

CLIENTS = range(3000)


def test_a_client_holds_60_features_labelled_over_10_classes_by_its_own_model():
    x, y = synthetic.client_examples(0.5, 0.5, seed=0, client=7)
    assert x.shape == (synthetic.client_size(0, 7), 60) and x.dtype == np.float32
    assert y.shape == (len(x),) and y.dtype == np.int64
    model = synthetic.client_model(0.5, 0.5, seed=0, client=7)
    assert model["W"].shape == (10, 60) and model["b"].shape == (10,)
    assert model["v"].shape == (60,)
    # y = argmax(softmax(W x + b)); x was rounded to float32 after labelling.
    agree = np.argmax(x.astype(np.float64) @ model["W"].T + model["b"], axis=1) == y
    assert agree.mean() > 0.999


def test_inputs_follow_n_v_sigma_with_sigma_jj_j_to_the_minus_1_2():
    x, _ = synthetic.client_examples(1.0, 1.0, seed=0, client=3, count=40_000)
    v = synthetic.client_model(1.0, 1.0, seed=0, client=3)["v"]
    sigma = np.arange(1, 61) ** -1.2
    np.testing.assert_allclose(x.mean(axis=0), v, atol=5 * np.sqrt(sigma.max() / len(x)))
    np.testing.assert_allclose(x.var(axis=0), sigma, rtol=0.05)


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (1.0, 1.0), (2.0, 0.25)])
def test_alpha_and_beta_are_the_spreads_of_u_and_b(alpha, beta):
    # The authors' generator draws u_k ~ N(0, alpha) and B_k ~ N(0, beta) with
    # numpy's normal(0, alpha): alpha and beta are standard deviations.
    models = [synthetic.client_model(alpha, beta, 0, c) for c in CLIENTS]
    u = np.array([m["u"] for m in models])
    big_b = np.array([m["B"] for m in models])
    assert u.std() == pytest.approx(alpha, rel=0.05)
    assert big_b.std() == pytest.approx(beta, rel=0.05)
    # Around its own mean a client's W, b and v are N(., 1).
    w_noise = np.concatenate([(m["W"] - m["u"]).ravel() for m in models[:200]])
    v_noise = np.concatenate([m["v"] - m["B"] for m in models[:200]])
    assert w_noise.mean() == pytest.approx(0, abs=0.02) and w_noise.var() == pytest.approx(1, 0.03)
    assert v_noise.mean() == pytest.approx(0, abs=0.03) and v_noise.var() == pytest.approx(1, 0.05)


def test_alpha_beta_zero_centres_every_client_on_the_same_means():
    # The paper's Synthetic(0, 0): u_k = B_k = 0 for every client, so their models
    # and inputs come from one distribution; each client still draws its own.
    models = [synthetic.client_model(0.0, 0.0, 0, c) for c in range(500)]
    assert all(m["u"] == 0 and m["B"] == 0 for m in models)
    assert not np.array_equal(models[0]["W"], models[1]["W"])
    heterogeneous = [synthetic.client_model(1.0, 1.0, 0, c) for c in range(500)]
    spread_00 = np.var([m["W"].mean() for m in models])
    spread_11 = np.var([m["W"].mean() for m in heterogeneous])
    assert spread_11 > 20 * spread_00  # alpha moves whole models apart


def test_alpha_never_changes_a_label():
    # u_k adds u_k (1 + sum x) to every class's logit alike: the argmax ignores it.
    model = synthetic.client_model(3.0, 0.5, 0, 11)
    x, y = synthetic.client_examples(3.0, 0.5, 0, 11, count=2000)
    shifted = np.argmax(x @ (model["W"] - model["u"]).T + (model["b"] - model["u"]), axis=1)
    assert (shifted == y).mean() > 0.999


def test_synthetic_iid_gives_every_client_the_same_model_and_input_distribution():
    models = [synthetic.client_model(1.0, 1.0, 0, c, iid=True) for c in (0, 1, 10**9 - 1)]
    for m in models[1:]:
        np.testing.assert_array_equal(m["W"], models[0]["W"])
        np.testing.assert_array_equal(m["b"], models[0]["b"])
        np.testing.assert_array_equal(m["v"], np.zeros(60))
    other_seed = synthetic.client_model(1.0, 1.0, 1, 0, iid=True)
    assert not np.array_equal(other_seed["W"], models[0]["W"])
    x, y = synthetic.client_examples(1.0, 1.0, 0, 5, count=20_000, iid=True)
    assert np.abs(x.mean(axis=0)).max() < 0.05
    labels = np.argmax(x.astype(np.float64) @ models[0]["W"].T + models[0]["b"], axis=1)
    assert (labels == y).mean() > 0.999


def test_sizes_follow_the_papers_power_law():
    sizes = np.array([synthetic.client_size(0, c) for c in range(5000)])
    assert sizes.min() >= 50 and sizes.max() == synthetic.MAX_EXAMPLES
    extra = sizes - 50  # floor(LogNormal(4, 2)): P(extra >= e^4) = 1/2, P(>= e^6) = 0.159
    assert (extra >= np.exp(4)).mean() == pytest.approx(0.5, abs=0.03)
    assert (extra >= np.exp(6)).mean() == pytest.approx(0.1587, abs=0.02)
    # A heavy tail: the largest 1 % of clients hold more examples than the smallest half.
    ordered = np.sort(sizes)
    assert ordered[-50:].sum() > ordered[:2500].sum()


def test_draws_depend_on_seed_and_client_only():
    a = synthetic.client_examples(0.5, 0.5, seed=3, client=10**9 - 1)
    b = synthetic.client_examples(0.5, 0.5, seed=3, client=10**9 - 1)
    c = synthetic.client_examples(0.5, 0.5, seed=4, client=10**9 - 1)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_the_server_tests_on_fresh_examples_of_the_populations_clients():
    # As the paper: each client's held-out share (10 %), labelled by its own model.
    x, y = synthetic.test_set(0.5, 0.5, seed=0, num_clients=30)
    sizes = [synthetic.client_size(0, c) for c in range(30)]
    assert len(x) == sum(max(1, round(0.1 * n)) for n in sizes)
    first = round(0.1 * sizes[0])
    model = synthetic.client_model(0.5, 0.5, 0, 0)
    labels = np.argmax(x[:first].astype(np.float64) @ model["W"].T + model["b"], axis=1)
    assert (labels == y[:first]).mean() > 0.99
    train_x, _ = synthetic.client_examples(0.5, 0.5, 0, 0)
    assert not np.isin(x[:first], train_x).all(axis=1).any()  # never a training example
    # A large population tests on a seeded sample of its clients, found in O(sample).
    clients = synthetic.test_clients(10**9, seed=0)
    assert len(clients) == synthetic.TEST_CLIENTS and clients == synthetic.test_clients(10**9, 0)
    assert max(clients) > 10**7


def test_data_module_serves_a_billion_synthetic_clients_one_at_a_time():
    cfg = DataConfig(
        name="synthetic", num_clients=10**9, synthetic_alpha=1, synthetic_beta=1, client_holdout=0
    )
    data = client_data(cfg, 0, 10**9 - 1)
    x, y = synthetic.client_examples(1.0, 1.0, 0, 10**9 - 1)
    assert torch.equal(data.x, torch.from_numpy(x)) and torch.equal(data.y, torch.from_numpy(y))
    assert client_size(cfg, 0, 10**9 - 1) == len(data)
    test = server_test_data(cfg, 0)
    x, _ = synthetic.test_set(1.0, 1.0, 0, 10**9)
    # The test set is the test clients' fresh examples less the validation set.
    held_out = {row.tobytes() for row in x}
    assert {row.numpy().tobytes() for row in test.x} <= held_out
    assert len(test) + len(server_validation_data(cfg, 0)) == len(x)
