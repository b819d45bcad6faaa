"""Configs drawn across the whole option space: each is refused in one line, or runs to
records that satisfy every invariant (pwfl.invariants) and repeat exactly.

Each config runs tiny (four Synthetic-IID clients of a logistic regression, one or
two rounds, in threads of this process), twice. The clock's throughput and links
are slowed so that round trips take simulated seconds, far above the host's
milliseconds: a deadline or ``faults.round_timeout_s`` (both a number of seconds on
the simulated clock, the timeout also the host's) then bites on the simulated clock
while no client ever comes near it on the host, and the run stays deterministic.

The first test draws Hypothesis's profile's count of configs (``ci``: 60, the
``thorough`` one that ``--runslow`` loads: 200), always the same ones; the second,
with ``--runslow``, 2,000 random ones.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pwfl.config import Config, load_config
from pwfl.errors import PwflError
from pwfl.partition import GROUP_POLICIES
from pwfl.runner import run_experiment
from pwfl.schema import CLIENTS, ROUNDS, SERVER
from pwfl.strategies.server_optimizer import OPTIMIZERS
from tests.records_check import violations

BASE: dict[str, Any] = {
    "data": {"name": "synthetic-iid"},
    "model": {"name": "logreg"},  # 610 weights: an aggregation costs microseconds
    "train": {"batch_size": 64},
    "strategy": {"executor": "serial"},
    "checkpoint": {"every": 0},  # no checkpoint files to write
    "simulation": {"backend": "inline"},
    # Round trips of about a simulated second: the logistic regression's FLOPs over a
    # very slow device, its 2.5 kB over a slow link.
    "clock": {"reference_gflops": 0.002},
    "clients": {"down_mbps": 0.1, "up_mbps": 0.05, "latency_ms": 50.0},
}


@dataclass(frozen=True)
class KnownCrash:
    """Configs known to end in an exception other than a one-line refusal."""

    name: str
    applies: Callable[[Config], bool]
    message: str = ""
    """Part of the exception's message; empty: such configs are not run at all."""


KNOWN_CRASHES: list[KnownCrash] = []
"""Engine defects this test waits for; remove an entry with its fix."""


HOST_COLUMNS = {
    table.file: [c for c in table.names if c.endswith(("_wall_s", "_measured_s"))]
    for table in (ROUNDS, CLIENTS, SERVER)
}
"""Columns measured on the host, which change from run to run."""


@st.composite
def configs(draw, hangs: bool = True) -> tuple[dict[str, Any], list[str]]:
    """A config file's tables (``[[weight_set]]`` ones when drawn) and ``--set`` overrides.

    One draw in four takes every option independently, so refusals are drawn too;
    the others keep to what the strategy drawn accepts (async mode and a server
    optimiser for PWFL, no more sets than sampled clients), where the runs are.
    """
    anything = draw(st.integers(0, 3)) == 0
    name = draw(st.sampled_from(["fedavg", "pwfl", "pwfl", "pwfl-sequential", "fedbuff"]))
    pwfl = anything or name in ("pwfl", "pwfl-sequential")
    clients = draw(st.integers(3, 6))
    fraction = draw(st.sampled_from([1.0, 0.5]))
    k = draw(st.integers(1, 3 if anything else min(3, max(int(clients * fraction), 2))))
    mode = draw(st.sampled_from(["sync", "async"])) if anything or name == "pwfl" else "sync"
    optimisers = sorted(OPTIMIZERS) if pwfl else ["none"]
    overrides = [
        f"seed={draw(st.integers(0, 3))}",
        f"strategy.name={name}",
        f"strategy.k={k}",
        f"strategy.num_rounds={draw(st.integers(1, 2))}",
        f"data.num_clients={clients}",
        f"strategy.fraction_train={fraction}",
        f"strategy.fraction_evaluate={draw(st.sampled_from([0.0, 0.0, 0.5]))}",
        f"strategy.mode={mode}",
        f"strategy.group_policy={draw(st.sampled_from(sorted(GROUP_POLICIES)))}",
        f"strategy.merge={draw(st.sampled_from(['none', 'none', 'every:1', 'final']))}",
        f"strategy.server_opt={draw(st.sampled_from(['none', 'none', *optimisers]))}",
        f"train.client_state={draw(st.sampled_from(['none', 'none', 'momentum', 'personal']))}",
        f"comm.compression={draw(st.sampled_from(['none', 'none', 'int8', 'int8-delta']))}",
        f"clients.profile={draw(st.sampled_from(['uniform', 'tiers', 'lognormal']))}",
        f"clients.offline_prob={draw(st.sampled_from([0.0, 0.0, 0.3]))}",
        f"stragglers.load_balancing={draw(st.sampled_from(['off', 'proportional']))}",
        f"stragglers.deadline_s={draw(st.sampled_from([0.0, 0.0, 1.5, 4.0]))}",
        f"faults.crash_prob={draw(st.sampled_from([0.0, 0.0, 0.2]))}",
        f"faults.transient_prob={draw(st.sampled_from([0.0, 0.0, 0.3]))}",
        f"faults.quorum={draw(st.sampled_from([0.5, 1.0]))}",
    ]
    if name == "fedbuff":
        overrides += [
            f"strategy.fedbuff.buffer_size={draw(st.integers(1, 3))}",
            f"strategy.fedbuff.concurrency={draw(st.integers(0, 3))}",
        ]
    # A hanging client costs the host the whole timeout (real seconds): rare.
    hang = draw(st.sampled_from([0.0] * 24 + [0.25])) if hangs else 0.0
    timeout = 2.0 if hang else draw(st.sampled_from([3600.0, 3600.0, 2.0]))
    overrides += [f"faults.hang_prob={hang}", f"faults.round_timeout_s={timeout}"]
    tables = {section: dict(values) for section, values in BASE.items()}
    if pwfl and draw(st.integers(0, 3)) == 0:
        lrs = draw(st.lists(st.sampled_from([0.01, 0.05, 0.2]), min_size=k, max_size=k))
        tables["weight_set"] = [
            {"name": f"lr {lr} #{i}", "train": {"lr": lr, "local_epochs": 1 + i % 2}}
            for i, lr in enumerate(lrs)
        ]
    return tables, overrides


def frames(out: Path) -> dict[str, pd.DataFrame]:
    """The run's tables without their host-measured columns."""
    return {
        file: pd.read_csv(out / file).drop(columns=HOST_COLUMNS[file])
        for file in HOST_COLUMNS
        if (out / file).is_file()
    }


def build(tables: dict[str, Any], overrides: list[str]) -> Config:
    """The config as ``pwfl run --config FILE --set ...`` builds it."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "drawn.toml"
        path.write_text(tomli_w.dumps(tables))
        return load_config(path, overrides)


def check_config(raw: dict[str, Any], overrides: list[str]) -> None:
    try:
        cfg = build(raw, overrides)
    except PwflError as err:
        assert "\n" not in str(err), f"a refusal of more than one line: {err}"
        return
    if any(known.applies(cfg) and not known.message for known in KNOWN_CRASHES):
        return
    tables = []
    for again in (False, True):
        with tempfile.TemporaryDirectory() as out:
            try:
                run_experiment(cfg, out, quiet=True)
            except PwflError as err:  # a run stopped by a lost quorum keeps its records
                assert "\n" not in str(err), f"a stop of more than one line: {err}"
            except Exception as err:
                if any(k.applies(cfg) and k.message in str(err) for k in KNOWN_CRASHES):
                    return
                raise
            if not again:  # the second run is checked by being the same
                found = violations(out)
                assert not found, "\n".join(str(v) for v in found)
            tables.append(frames(Path(out)))
    first, second = tables
    assert first.keys() == second.keys()
    for file in first:
        pd.testing.assert_frame_equal(first[file], second[file], check_exact=True, obj=file)


@pytest.mark.checks_its_own_records
@settings(  # max_examples from the profile tests/conftest.py loads: 60, 200 with --runslow
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(configs(hangs=True))
def test_any_config_is_refused_in_one_line_or_runs_to_valid_repeatable_records(drawn):
    check_config(*drawn)


@pytest.mark.slow
@pytest.mark.checks_its_own_records
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(hangs=True))
def test_many_more_configs_hold_the_invariants(drawn):
    check_config(*drawn)
