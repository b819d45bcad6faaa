"""Each list of names in pwfl.registry is the one its implementing module keys its table by."""

from __future__ import annotations

import pytest

from pwfl import registry


def _pairs():
    """(registry name, the implementing table) of every choice list."""
    from pwfl import (
        aggregation,
        arithmetic,
        clock,
        codec,
        data,
        devices,
        models,
        partition,
        stragglers,
        training,
        transport,
    )
    from pwfl.strategies import server_optimizer

    return {
        "DATASETS": data.INFO,
        "IMAGE_DATASETS": [name for name, info in data.INFO.items() if info.images],
        "PARTITIONERS": data.PARTITIONERS,
        "MODELS": models.MODELS,
        "CLIENT_STATES": training.CLIENT_STATES,
        "BINDINGS": transport.BINDINGS,
        "MESSAGES": transport.MESSAGES,
        "GROUP_POLICIES": partition.GROUP_POLICIES,
        "EXECUTORS": aggregation.EXECUTORS,
        "SERVER_OPTIMIZERS": server_optimizer.OPTIMIZERS,
        "COMPRESSION_MODES": codec.MODES,
        "PROFILES": devices.PROFILES,
        "CLOCK_MODES": clock.COMPUTE,
        "BALANCING": stragglers.BALANCING,
        "ARITHMETIC_MODES": arithmetic.MODES,
    }


PAIRS = _pairs()


@pytest.mark.parametrize("name", PAIRS)
def test_the_implementing_table_is_keyed_by_exactly_the_registrys_names(name):
    names = getattr(registry, name)
    assert isinstance(names, tuple) and len(set(names)) == len(names)
    # The same names in the same order: error messages list them in this order.
    assert tuple(PAIRS[name]) == names


def test_every_list_of_the_registry_is_paired_or_is_the_backends():
    listed = {name for name, value in vars(registry).items() if isinstance(value, tuple)}
    # simulation.backend's two engines have no table: the runner branches on the name.
    assert listed == set(PAIRS) | {"BACKENDS"}


def test_the_lists_that_are_tuples_in_their_module_are_the_registrys_own():
    from pwfl import arithmetic, clock, codec, training, transport

    assert codec.MODES is registry.COMPRESSION_MODES
    assert clock.COMPUTE is registry.CLOCK_MODES
    assert arithmetic.MODES is registry.ARITHMETIC_MODES
    assert training.CLIENT_STATES is registry.CLIENT_STATES
    assert transport.BINDINGS is registry.BINDINGS
    assert transport.MESSAGES is registry.MESSAGES


def test_every_registry_list_is_a_choice_of_the_config():
    from pwfl.config import registered_choices

    choices = registered_choices()
    lists = {name for name in PAIRS if name != "IMAGE_DATASETS"} | {"BACKENDS"}
    own = [v for k, v in choices.items() if k not in ("strategy.name", "strategy.mode")]
    assert {id(getattr(registry, name)) for name in lists} == {id(v) for v in own}
