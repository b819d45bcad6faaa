"""The simulated population: sampling costs what the cohort costs, whatever its size."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from pwfl.config import load_config
from pwfl.population import Population

BILLION = 1_000_000_000


def population(num_clients: int, offline_prob: float = 0.0) -> Population:
    cfg = load_config(
        None, [f"data.num_clients={num_clients}", f"clients.offline_prob={offline_prob}"]
    )
    return Population(cfg, lambda client, ws: 10 + client % 7)


def test_sampling_ten_of_a_billion_takes_no_memory_of_the_population():
    people = population(BILLION)
    tracemalloc.start()
    start = time.perf_counter()
    picked = people.sample(1, 10, np.random.default_rng(0))
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(set(picked)) == 10 and all(0 <= c < BILLION for c in picked)
    assert peak < 1_000_000  # bytes; a list of the population would be gigabytes
    assert elapsed < 1.0
    assert max(picked) > BILLION // 100  # drawn over the whole population


def test_without_offline_clients_a_sample_is_numpys_choice_over_the_ids():
    # So a population that fits a list samples exactly as when it was a list.
    people = population(50)
    picked = people.sample(3, 10, np.random.default_rng(7))
    assert picked == list(np.random.default_rng(7).choice(50, size=10, replace=False))


def test_offline_clients_are_never_sampled_and_the_draw_repeats():
    people = population(BILLION, offline_prob=0.7)
    a = people.sample(4, 20, np.random.default_rng(1))
    b = people.sample(4, 20, np.random.default_rng(1))
    assert a == b and len(set(a)) == 20
    assert all(people.online(c, 4) for c in a)
    # The same client is online in some rounds and not others, as drawn.
    rounds = [people.online(a[0], r) for r in range(1, 60)]
    assert 0.1 < np.mean(rounds) < 0.6


def test_a_round_too_short_of_online_clients_gets_only_the_online_ones():
    people = population(6, offline_prob=0.9)
    picked = people.sample(2, 5, np.random.default_rng(0))
    online = [c for c in range(6) if people.online(c, 2)]
    assert len(online) < 5  # the seed leaves this round short
    assert sorted(picked) == online


def test_online_periods_follow_the_simulated_clock():
    cfg = load_config(None, ["clients.online_period_s=10"])
    people = Population(cfg, lambda client, ws: 1)
    assert [people.period_at(t) for t in (0.0, 9.99, 10.0, 25.0)] == [1, 1, 2, 3]
    assert people.next_period_s(0.0) == 10.0 and people.next_period_s(25.0) == 30.0


def test_excluded_clients_are_not_sampled():
    people = population(30)
    busy = list(range(0, 30, 2))
    picked = people.sample(1, 15, np.random.default_rng(3), exclude=busy)
    assert sorted(picked) == list(range(1, 30, 2))


def test_the_free_pool_lists_a_small_population_and_samples_a_large_one():
    small = population(12, offline_prob=0.25)
    free = small.eligible(3, exclude=[0, 1], limit=100, rng=np.random.default_rng(0))
    assert free == [c for c in range(2, 12) if small.online(c, 3)]
    large = population(BILLION)
    pool = large.eligible(3, exclude=[5], limit=1000, rng=np.random.default_rng(0))
    assert len(pool) == 1000 == len(set(pool)) and 5 not in pool and pool == sorted(pool)


def test_sizes_are_asked_for_once_and_only_for_the_clients_asked_about():
    asked = []
    cfg = load_config(None, [f"data.num_clients={BILLION}"])
    people = Population(cfg, lambda client, ws: asked.append(client) or 42)
    assert people.sizes([3, 10**8, 3]) == {3: 42, 10**8: 42}
    people.size(3)
    assert asked == [3, 10**8]


@pytest.mark.parametrize("count", [2, 99])
def test_a_sample_never_exceeds_the_population(count):
    people = population(count)
    assert sorted(people.sample(1, 500, np.random.default_rng(0))) == list(range(count))
