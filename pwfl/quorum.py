"""The quorum rule: how many replies a weight set's group needs, and when a run gives up.

A group is aggregated only if enough of its clients' replies count; otherwise
its weight set keeps the weights it had (Flower's FedAvg does the same
silently; pwfl records it as ``quorum_missed``). A run whose every weight set
keeps missing quorum is not learning anything, so it stops, with its records
kept, after ``max_missed_rounds`` such rounds in a row. A policy without rounds
of groups (FedBuff, FedAsync: each round a server step of ``K`` single-client
updates) is lost after ``max_missed_rounds x K`` failed updates in a row instead.
"""

from __future__ import annotations

import math

from pwfl.errors import PwflError

OK, QUORUM_MISSED = "ok", "quorum_missed"


class QuorumLost(PwflError):
    """Every weight set missed quorum for too many rounds in a row."""


def replies_needed(quorum: float, sent: int) -> int:
    """Replies a group of ``sent`` clients needs: ``ceil(quorum x sent)``, at least one."""
    # The small tolerance keeps 0.3 x 10 at 3, not 4 (0.3 * 10 = 3.0000000000000004).
    return max(1, math.ceil(quorum * sent - 1e-9))


def has_quorum(quorum: float, sent: int, counted: int) -> bool:
    """Whether ``counted`` replies out of ``sent`` messages make a quorum."""
    return sent > 0 and counted >= replies_needed(quorum, sent)


class QuorumWatch:
    """Counts, per weight set, its rounds in a row that missed quorum.

    The run is lost when every weight set has missed its last
    ``max_missed_rounds`` rounds: with a round barrier that is N rounds in a
    row in which all sets missed, without one (async) each set's own last N.
    """

    def __init__(self, max_missed_rounds: int, num_weight_sets: int = 1, updates_per_step: int = 0):
        self.max_missed_rounds = max_missed_rounds
        self.streaks: dict[str, int] = {str(ws): 0 for ws in range(num_weight_sets)}
        self.updates_per_step = updates_per_step
        self.failed_updates = 0
        """Single-client updates in a row that failed (policies of server steps)."""

    def observe(self, statuses: dict[str, str]) -> None:
        """Note one round's status of each weight set it covers (set -> status)."""
        for weight_set, status in statuses.items():
            missed = status == QUORUM_MISSED
            self.streaks[weight_set] = self.streaks.get(weight_set, 0) + 1 if missed else 0

    @property
    def streak(self) -> int:
        """Rounds in a row that every weight set has missed."""
        return min(self.streaks.values(), default=0)

    def stop_if_lost(self, server_round: int) -> None:
        """Raise :class:`QuorumLost` once every set's streak reaches ``max_missed_rounds``."""
        if self.streak >= self.max_missed_rounds:
            raise QuorumLost(
                f"run stopped after round {server_round}: every weight set missed quorum "
                f"{self.streak} rounds in a row (too few clients answered); records so far "
                "are kept; see the error column of clients.csv, or lower faults.quorum, raise "
                "faults.max_retries or faults.round_timeout_s"
            )

    def observe_update(self, delivered: bool, steps: int) -> None:
        """Note one single-client update of a policy of server steps (``updates_per_step``
        > 0) after ``steps`` steps; raise :class:`QuorumLost` once
        ``max_missed_rounds x updates_per_step`` updates in a row have failed."""
        self.failed_updates = 0 if delivered else self.failed_updates + 1
        limit = self.max_missed_rounds * self.updates_per_step
        if self.failed_updates >= limit:
            raise QuorumLost(
                f"run stopped after server step {steps}: the last {limit} client updates "
                "all failed; records so far are kept; see the error column of clients.csv, or "
                "raise faults.max_retries or faults.round_timeout_s"
            )
