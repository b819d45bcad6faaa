"""Unit tests for pwfl.partition: seeded client sampling and the K-group split policies."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pwfl.partition import (
    sample_clients,
    split_balanced,
    split_clients,
    split_complementary,
    split_fixed,
)

POLICIES = ("complementary", "balanced", "fixed")


def _sizes(clients, seed=0):
    rng = np.random.default_rng(seed)
    return {c: int(rng.integers(1, 500)) for c in clients}


def _assert_partition(groups, clients, k):
    assert len(groups) == k
    flat = [c for g in groups for c in g]
    # Pairwise disjoint (no client twice) and the union is exactly the sample.
    assert len(flat) == len(set(flat))
    assert sorted(flat) == sorted(clients)
    for i in range(k):
        for j in range(i + 1, k):
            assert not set(groups[i]) & set(groups[j])


# ---------------------------------------------------------------- sampling


def test_sample_clients_is_deterministic_for_a_seed():
    a = sample_clients(range(10), 0.5, 2, np.random.default_rng(123))
    b = sample_clients(range(10), 0.5, 2, np.random.default_rng(123))
    assert a == b
    assert len(a) == 5
    assert len(set(a)) == 5
    assert set(a) <= set(range(10))


def test_sample_clients_ignores_input_order():
    # The pool is sorted before drawing, so the order clients arrive in does not matter.
    a = sample_clients([4, 1, 9, 7, 3, 0], 0.5, 1, np.random.default_rng(5))
    b = sample_clients([0, 1, 3, 4, 7, 9], 0.5, 1, np.random.default_rng(5))
    assert a == b


def test_sample_clients_differs_between_seeds():
    draws = {tuple(sample_clients(range(20), 0.5, 2, np.random.default_rng(s))) for s in range(5)}
    assert len(draws) > 1


@pytest.mark.parametrize(
    ("n", "fraction", "min_nodes", "expected"),
    [(10, 1.0, 2, 10), (10, 0.5, 2, 5), (10, 0.1, 3, 3), (5, 0.5, 1, 2), (4, 0.1, 10, 4)],
)
def test_sample_clients_size_equals_num_sampled(n, fraction, min_nodes, expected):
    pool = list(range(100, 100 + n))
    picked = sample_clients(pool, fraction, min_nodes, np.random.default_rng(0))
    assert len(picked) == expected
    assert len(set(picked)) == expected
    assert set(picked) <= set(range(100, 100 + n))


def test_sample_clients_full_fraction_returns_everyone():
    picked = sample_clients([3, 8, 1], 1.0, 1, np.random.default_rng(0))
    assert sorted(picked) == [1, 3, 8]


# ---------------------------------------------------------------- split invariants


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("num_clients", [5, 6, 10, 11])
def test_groups_are_disjoint_and_cover_the_sample(policy, k, num_clients):
    rng = np.random.default_rng(num_clients * 10 + k)
    clients = sample_clients(range(num_clients), 1.0, 1, rng)
    groups = split_clients(policy, clients, k, rng, sizes=_sizes(clients))
    _assert_partition(groups, clients, k)


@settings(max_examples=150, deadline=None)
@given(
    policy=st.sampled_from(POLICIES),
    clients=st.lists(st.integers(0, 1000), min_size=1, max_size=40, unique=True),
    k=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_groups_partition_sample_property(policy, clients, k, seed):
    rng = np.random.default_rng(seed)
    if k > len(clients):
        with pytest.raises(ValueError):
            split_clients(policy, clients, k, rng, sizes=_sizes(clients, seed))
        return
    groups = split_clients(policy, clients, k, rng, sizes=_sizes(clients, seed))
    _assert_partition(groups, clients, k)
    if policy == "complementary":
        lengths = [len(g) for g in groups]
        assert max(lengths) - min(lengths) <= 1
    if policy == "fixed":
        for g, group in enumerate(groups):
            assert all(c % k == g for c in group)


def test_split_is_deterministic_for_a_seed():
    clients = list(range(11))
    sizes = _sizes(clients)
    for policy in POLICIES:
        a = split_clients(policy, clients, 3, np.random.default_rng(9), sizes=sizes)
        b = split_clients(policy, clients, 3, np.random.default_rng(9), sizes=sizes)
        assert a == b


# ---------------------------------------------------------------- complementary


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("num_clients", [5, 6, 10, 11])
def test_complementary_sizes_differ_by_at_most_one(k, num_clients):
    groups = split_complementary(list(range(num_clients)), k, np.random.default_rng(1))
    lengths = sorted(len(g) for g in groups)
    assert lengths[-1] - lengths[0] <= 1
    assert sum(lengths) == num_clients


def test_complementary_k2_is_subset_and_its_complement():
    clients = [10, 20, 30, 40, 50]
    s, s_prime = split_complementary(clients, 2, np.random.default_rng(0))
    assert sorted(len(g) for g in (s, s_prime)) == [2, 3]
    assert set(s_prime) == set(clients) - set(s)


def test_complementary_varies_with_the_generator():
    clients = list(range(10))
    splits = {
        tuple(sorted(split_complementary(clients, 2, np.random.default_rng(s))[0]))
        for s in range(10)
    }
    assert len(splits) > 1


# ---------------------------------------------------------------- balanced


def test_balanced_hand_computed_k2():
    # Greedy, largest first, each to the lightest group:
    # 10->g0, 8->g1, 6->g1 (14), 5->g0 (15), 3->g1 (17), 2->g0 (17).
    sizes = {0: 10, 1: 8, 2: 6, 3: 5, 4: 3, 5: 2}
    clients = [5, 3, 1, 0, 4, 2]
    groups = split_balanced(clients, 2, sizes, np.random.default_rng(0))
    assert groups == [[0, 3, 5], [1, 2, 4]]
    assert [sum(sizes[c] for c in g) for g in groups] == [17, 17]


def test_balanced_hand_computed_k3():
    # 9->g0, 7->g1, 6->g2, 5->g2 (11), 4->g1 (11), 2->g0 (11),
    # 1 -> tie on totals and lengths, lowest index g0 (12).
    sizes = {0: 9, 1: 7, 2: 6, 3: 5, 4: 4, 5: 2, 6: 1}
    groups = split_balanced(list(range(7)), 3, sizes, np.random.default_rng(3))
    assert groups == [[0, 5, 6], [1, 4], [2, 3]]
    assert [sum(sizes[c] for c in g) for g in groups] == [12, 11, 11]


def test_balanced_fills_by_examples_not_by_count():
    # One big client outweighs three small ones: every small client goes to the other group.
    sizes = {0: 100, 1: 1, 2: 1, 3: 1}
    groups = split_balanced([3, 2, 1, 0], 2, sizes, np.random.default_rng(0))
    assert groups[0] == [0]
    assert sorted(groups[1]) == [1, 2, 3]


def test_balanced_equal_sizes_give_equal_group_lengths():
    clients = list(range(6))
    sizes = dict.fromkeys(clients, 100)
    groups = split_balanced(clients, 3, sizes, np.random.default_rng(0))
    assert [len(g) for g in groups] == [2, 2, 2]
    assert [sum(sizes[c] for c in g) for g in groups] == [200, 200, 200]


def test_balanced_ties_are_broken_at_random():
    clients = list(range(8))
    sizes = dict.fromkeys(clients, 50)
    splits = {
        tuple(sorted(split_balanced(clients, 2, sizes, np.random.default_rng(s))[0]))
        for s in range(10)
    }
    assert len(splits) > 1


def test_balanced_totals_are_near_equal():
    clients = list(range(11))
    sizes = _sizes(clients, seed=4)
    groups = split_balanced(clients, 3, sizes, np.random.default_rng(0))
    totals = [sum(sizes[c] for c in g) for g in groups]
    # The greedy rule keeps the spread within the largest single client.
    assert max(totals) - min(totals) <= max(sizes.values())


def test_balanced_without_sizes_raises():
    with pytest.raises(ValueError, match="example counts"):
        split_clients("balanced", [0, 1, 2], 2, np.random.default_rng(0))


# ---------------------------------------------------------------- fixed


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_fixed_puts_client_in_group_c_mod_k(k):
    clients = [7, 2, 11, 4, 0, 9, 5, 13, 8, 6, 3]
    groups = split_fixed(clients, k)
    assert len(groups) == k
    for c in clients:
        assert c in groups[c % k]
    _assert_partition(groups, clients, k)


def test_fixed_hand_computed_and_keeps_sample_order():
    assert split_fixed([5, 2, 4, 3, 0], 2) == [[2, 4, 0], [5, 3]]
    assert split_fixed([5, 2, 4, 3, 0], 3) == [[3, 0], [4], [5, 2]]


def test_fixed_group_can_be_empty():
    assert split_fixed([0, 2, 4], 2) == [[0, 2, 4], []]


def test_fixed_ignores_the_generator():
    clients = list(range(10))
    a = split_clients("fixed", clients, 3, np.random.default_rng(0))
    b = split_clients("fixed", clients, 3, np.random.default_rng(99))
    assert a == b


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("policy", POLICIES)
def test_k_larger_than_clients_raises(policy):
    clients = [0, 1, 2]
    with pytest.raises(ValueError) as info:
        split_clients(policy, clients, 4, np.random.default_rng(0), sizes=_sizes(clients))
    message = str(info.value)
    assert "k=4" in message
    assert "3 sampled clients" in message


@pytest.mark.parametrize("policy", POLICIES)
def test_k_zero_raises(policy):
    with pytest.raises(ValueError, match="k must be >= 1"):
        split_clients(policy, [0, 1], 0, np.random.default_rng(0), sizes={0: 1, 1: 1})


def test_unknown_policy_raises():
    with pytest.raises(ValueError, match="unknown group policy 'greedy'"):
        split_clients("greedy", [0, 1], 2, np.random.default_rng(0))
