"""Device profiles, round trips on the simulated clock, straggler flags and load balancing."""

from __future__ import annotations

import pytest

from pwfl.clock import ClientTiming
from pwfl.config import ClientsConfig, StragglerConfig, load_config
from pwfl.devices import ClientProfile, make_profiles, read_trace
from pwfl.errors import ConfigError
from pwfl.stragglers import StragglerTracker


def test_tiers_give_exact_shares_and_are_seeded():
    cfg = ClientsConfig(profile="tiers", tiers="0.9:1,0.1:0.2")
    profiles = make_profiles(cfg, 20, seed=3)
    speeds = sorted(p.speed for p in profiles.values())
    assert speeds == [0.2, 0.2] + [1.0] * 18
    assert make_profiles(cfg, 20, seed=3) == profiles
    slow = {c for c, p in profiles.items() if p.speed < 1}
    other = {c for c, p in make_profiles(cfg, 20, seed=4).items() if p.speed < 1}
    assert slow != other or len(slow) == 0


@pytest.mark.parametrize("count", [1, 2, 3, 10, 17, 1000, 4096, 4097])
def test_permuted_place_is_a_bijection_of_the_population(count):
    from pwfl.devices import permuted_place

    places = [permuted_place(c, count, key=12345) for c in range(count)]
    assert sorted(places) == list(range(count))
    if count >= 10:
        assert places != list(range(count))  # actually shuffled
        assert places != [permuted_place(c, count, key=54321) for c in range(count)]


def test_a_clients_profile_needs_no_list_of_the_population():
    """Drawn for one client alone: a billion-client population costs nothing up front,
    and the tiers still hold their exact shares."""
    cfg = ClientsConfig(profile="tiers", tiers="0.9:1,0.1:0.2")
    huge = make_profiles(cfg, 1_000_000_000, seed=0)
    assert huge[999_999_999].speed in (0.2, 1.0)
    assert len(huge._known) == 1
    lognormal = make_profiles(ClientsConfig(profile="lognormal"), 1_000_000_000, seed=0)
    assert lognormal[5] == make_profiles(ClientsConfig(profile="lognormal"), 10, seed=0)[5]
    with pytest.raises(KeyError):
        huge[1_000_000_000]


def test_lognormal_spread_zero_is_uniform():
    profiles = make_profiles(ClientsConfig(profile="lognormal", spread=0.0), 5, 0)
    assert {p.speed for p in profiles.values()} == {1.0}
    spread = make_profiles(ClientsConfig(profile="lognormal", spread=1.0), 50, 0)
    assert max(p.speed for p in spread.values()) / min(p.speed for p in spread.values()) > 5


def write(tmp_path, text):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return path


def test_trace_is_read(tmp_path):
    path = write(
        tmp_path, "client,speed,up_mbps,down_mbps,latency_ms\n0,1,10,20,5\n1,0.25,1,2,100\n"
    )
    profiles = read_trace(path, [0, 1])
    assert profiles[1] == ClientProfile(speed=0.25, up_mbps=1, down_mbps=2, latency_ms=100)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("client,speed,up_mbps,latency_ms\n0,1,1,1\n", "down_mbps"),
        ("client,speed,up_mbps,down_mbps,latency_ms\n0,-1,1,1,1\n", "speed"),
        ("client,speed,up_mbps,down_mbps,latency_ms\n0,x,1,1,1\n", "numbers"),
        ("client,speed,up_mbps,down_mbps,latency_ms\n0,1,1,1,1\n", "client 1"),
    ],
)
def test_malformed_trace_is_one_clear_line(tmp_path, text, named):
    with pytest.raises(ConfigError) as err:
        read_trace(write(tmp_path, text), [0, 1])
    message = str(err.value)
    assert named in message and "\n" not in message


def test_config_rejects_trace_profile_without_file():
    with pytest.raises(ConfigError, match="clients.trace"):
        load_config(None, ["clients.profile=trace"])


COST = "cnn/batch 32"


def timing(compute: float) -> ClientTiming:
    return ClientTiming(download_s=0.1, compute_s=compute, upload_s=0.1, latency_s=0.0)


def test_stragglers_are_flagged_from_a_synthetic_trace():
    tracker = StragglerTracker(StragglerConfig(threshold=1.5, ema=0.5), base_epochs=1)
    # Clients 0-3 take ~1 s, client 4 takes 5 s.
    for _ in range(3):
        for c in range(4):
            tracker.observe(c, COST, timing(0.8), epochs=1)
        tracker.observe(4, COST, timing(4.8), epochs=1)
    assert tracker.stragglers(COST) == {4}
    assert tracker.median_round_trip(COST) == pytest.approx(1.0)
    # The estimate moves with the ema: one fast round halves the gap, it does not erase it.
    tracker.observe(4, COST, timing(0.8), epochs=1)
    assert tracker.estimates[COST][4].per_epoch_s == pytest.approx(0.5 * 0.8 + 0.5 * 4.8)
    assert tracker.is_straggler(4, COST)


def test_halve_rule_of_the_seed():
    tracker = StragglerTracker(
        StragglerConfig(load_balancing="halve", max_epochs=3, threshold=1.5), base_epochs=2
    )

    def one_round() -> list[float]:
        for c in range(4):
            tracker.observe(c, COST, timing(1.0), epochs=2)
        tracker.observe(4, COST, timing(10.0), epochs=2)
        return tracker.plan(COST, range(5))

    assert tracker.plan(COST, range(5)) == [2] * 5  # no round trip seen yet
    epochs = one_round()
    assert epochs[4] == 1  # halved
    assert epochs[0] == 3  # one more
    epochs = one_round()
    assert epochs[0] == 3  # bounded by max_epochs
    assert epochs[4] == 0.5  # halved again: half an epoch of batches
    # A plan with no round trip since the last one has learnt nothing: epochs stay.
    assert tracker.plan(COST, range(5)) == epochs


def test_proportional_rule_evens_out_round_trips():
    tracker = StragglerTracker(
        StragglerConfig(load_balancing="proportional", max_epochs=4), base_epochs=2
    )
    per_epoch = {0: 0.5, 1: 0.5, 2: 0.5, 3: 2.0}
    for c, t in per_epoch.items():
        tracker.observe(c, COST, ClientTiming(0, 2 * t, 0, 0), epochs=2)
    planned = dict(zip(per_epoch, tracker.plan(COST, list(per_epoch)), strict=True))
    predicted = [tracker.estimates[COST][c].predict(planned[c]) for c in per_epoch]
    before = [tracker.estimates[COST][c].predict(2) for c in per_epoch]
    assert max(predicted) / min(predicted) < max(before) / min(before)
    assert planned[3] < 2 <= planned[0]


def test_estimates_of_two_models_never_mix():
    """A client's epoch of a large model says nothing of its epoch of a small one: each
    cost has its own estimates, its own median and its own plan."""
    tracker = StragglerTracker(
        StragglerConfig(load_balancing="proportional", ema=0.5), base_epochs=1
    )
    big, small = "cnn/batch 32", "mlp/batch 32"
    for c in range(3):  # every client a median client of both models
        tracker.observe(c, big, ClientTiming(0.1, 4.0, 0.1, 0), epochs=1)
        tracker.observe(c, small, ClientTiming(0.1, 0.5, 0.1, 0), epochs=1)
    assert tracker.plan(big, range(3)) == pytest.approx([1, 1, 1])
    assert tracker.plan(small, range(3)) == pytest.approx([1, 1, 1])
    assert tracker.median_round_trip(big) == pytest.approx(4.2)
    assert tracker.median_round_trip(small) == pytest.approx(0.7)
    assert tracker.stragglers(big) == tracker.stragglers(small) == set()
    assert tracker.plan("cnn/batch 64", [0]) == [1]  # a cost not seen: the base epochs


def test_load_balancing_off_keeps_base_epochs():
    tracker = StragglerTracker(StragglerConfig(load_balancing="off"), base_epochs=2)
    tracker.observe(0, COST, timing(9.0), epochs=2)
    assert tracker.plan(COST, [0]) == [2]


def test_the_cost_of_a_sets_work_names_its_model_and_batches_only():
    from pwfl.stragglers import cost_of

    cfg = load_config(None, ["model.name=mlp", "train.batch_size=64"])
    assert cost_of(cfg) == cost_of(cfg.with_overrides(["train.lr=0.5", "train.local_epochs=3"]))
    assert cost_of(cfg) != cost_of(cfg.with_overrides(["model.name=cnn"]))
    assert cost_of(cfg) != cost_of(cfg.with_overrides(["train.batch_size=32"]))
    assert cost_of(cfg) != cost_of(cfg.with_overrides(["train.augment=true"]))
