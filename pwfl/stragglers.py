"""Straggler detection from round-trip times, and load balancing by local epochs.

The server keeps, per client, a moving estimate (exponential, weight ``ema`` on
the newest value) of the fixed part of its round trip (transfer and latency)
and of its compute time per local epoch. A client is a *straggler* when its
predicted round trip at the base number of epochs exceeds ``threshold`` times
the median prediction over the clients seen so far.

Load balancing changes how many local epochs a client is asked to run:

* ``halve``: the rule of the load-balancing seed project: a straggler's epochs
  are halved (down to an eighth of an epoch), an on-time client gets one more
  (at most ``max_epochs``);
* ``proportional``: each client gets the epochs that bring its predicted round
  trip closest to the median client's at the base epochs, so the groups finish
  together instead of waiting for their slowest member;
* ``off``: every client runs the base epochs (flags are still recorded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import median

from pwfl.clock import ClientTiming
from pwfl.config import StragglerConfig

# Least work load balancing gives a client: an eighth of an epoch's batches. Below
# that an update carries too little to be worth its transfer.
MIN_EPOCHS = 0.125


@dataclass
class Estimate:
    """Moving estimates of one client's round trip, in two parts."""

    fixed_s: float
    per_epoch_s: float

    def predict(self, epochs: int) -> float:
        """Predicted round trip when running ``epochs`` local epochs."""
        return self.fixed_s + epochs * self.per_epoch_s


class StragglerTracker:
    """Round-trip estimates, straggler flags and the local epochs each client gets."""

    def __init__(self, cfg: StragglerConfig, base_epochs: int):
        self.cfg = cfg
        self.base_epochs = base_epochs
        self.estimates: dict[int, Estimate] = {}
        self.epochs: dict[int, float] = {}

    def epochs_for(self, client: int) -> float:
        """Local epochs to ask of ``client`` in the next round."""
        if self.cfg.load_balancing == "off":
            return self.base_epochs
        return self.epochs.get(client, self.base_epochs)

    def observe(self, client: int, timing: ClientTiming, epochs: float) -> None:
        """Fold one round trip into the client's estimates.

        ``epochs`` is the work the client actually did, in epochs: the examples
        of the batches it ran over its partition's size (0.23 for 3 batches of a
        13-batch epoch), so a client given a fraction of an epoch is not taken
        for a faster one.
        """
        if epochs <= 0:
            raise ValueError(f"a round trip of {epochs} epochs says nothing of a client's speed")
        fixed = timing.download_s + timing.upload_s + timing.latency_s
        per_epoch = timing.compute_s / epochs
        old = self.estimates.get(client)
        if old is None:
            self.estimates[client] = Estimate(fixed, per_epoch)
            return
        w = self.cfg.ema
        old.fixed_s = w * fixed + (1 - w) * old.fixed_s
        old.per_epoch_s = w * per_epoch + (1 - w) * old.per_epoch_s

    def median_round_trip(self) -> float:
        """Median predicted round trip at the base epochs over the clients seen."""
        return median(e.predict(self.base_epochs) for e in self.estimates.values())

    def is_straggler(self, client: int) -> bool:
        """Whether the client's predicted round trip is ``threshold`` x the median or more."""
        if client not in self.estimates:
            return False
        limit = self.cfg.threshold * self.median_round_trip()
        return self.estimates[client].predict(self.base_epochs) > limit

    def stragglers(self) -> set[int]:
        """Every client currently flagged."""
        return {c for c in self.estimates if self.is_straggler(c)}

    def state(self) -> dict[str, dict[str, list[float] | float]]:
        """The estimates and planned epochs, as JSON-able values (for checkpoints)."""
        return {
            "estimates": {str(c): [e.fixed_s, e.per_epoch_s] for c, e in self.estimates.items()},
            "epochs": {str(c): e for c, e in self.epochs.items()},
        }

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state` returned."""
        self.estimates = {int(c): Estimate(*v) for c, v in state["estimates"].items()}
        self.epochs = {int(c): float(e) for c, e in state["epochs"].items()}

    def end_round(self, clients: list[int]) -> None:
        """Re-plan the epochs of the clients that answered this round."""
        BALANCING[self.cfg.load_balancing](self, clients)


def _keep_epochs(tracker: StragglerTracker, clients: list[int]) -> None:
    """off: every client keeps the base epochs."""


def _halve(tracker: StragglerTracker, clients: list[int]) -> None:
    for c in clients:
        current = tracker.epochs_for(c)
        if tracker.is_straggler(c):
            tracker.epochs[c] = max(MIN_EPOCHS, current / 2)
        else:
            tracker.epochs[c] = min(tracker.cfg.max_epochs, current + 1)


def _proportional(tracker: StragglerTracker, clients: list[int]) -> None:
    target = tracker.median_round_trip()
    for c in clients:
        est = tracker.estimates[c]
        ideal = (target - est.fixed_s) / est.per_epoch_s if est.per_epoch_s > 0 else 1
        tracker.epochs[c] = float(min(tracker.cfg.max_epochs, max(MIN_EPOCHS, ideal)))


BALANCING: dict[str, Callable[[StragglerTracker, list[int]], None]] = {
    "off": _keep_epochs,
    "halve": _halve,
    "proportional": _proportional,
}
"""Load-balancing rules by name (``stragglers.load_balancing``), described above: each
re-plans the local epochs of the clients that answered a round."""
