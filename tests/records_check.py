"""The run checker as the tests apply it: every run a test makes, less known defects.

``tests/conftest.py`` checks the records of every run an end-to-end test makes
(:func:`violations`); the property test checks its drawn configs the same way.
``KNOWN_BROKEN`` lists the engine defects the records are known to show, each
with the invariants it breaks and the configs it shows in, so that the checker
itself stays strict (``pwfl check`` reports them) while the tests wait for their
fixes; remove an entry once its fix is in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pwfl.config import Config
from pwfl.invariants import Violation, check_run, load_records


@dataclass(frozen=True)
class Known:
    """An engine defect the records show: where, and which invariants it breaks."""

    name: str
    invariants: frozenset[str]
    applies: Callable[[Config], bool]


KNOWN_BROKEN: list[Known] = []
"""Defects whose violations the tests excuse until they are fixed."""


def violations(run_dir: str | Path) -> list[Violation]:
    """The run's violations that no ``KNOWN_BROKEN`` entry explains."""
    cfg = load_records(run_dir).cfg
    excused = {name for known in KNOWN_BROKEN if known.applies(cfg) for name in known.invariants}
    return [v for v in check_run(run_dir) if v.invariant not in excused]


def assert_records_valid(run_dir: str | Path) -> None:
    """Fail with every unexplained violation of the run's records, one per line."""
    found = violations(run_dir)
    assert not found, "\n".join(str(v) for v in found)
