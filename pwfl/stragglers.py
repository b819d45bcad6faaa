"""Straggler detection from round-trip times, and load balancing by local epochs.

The server keeps, per client and per *cost* (what prices a weight set's work on
a client: its model and its batches, :func:`cost_of`), a moving estimate
(exponential, weight ``ema`` on the newest value) of the fixed part of its
round trip (transfer and latency) and of its compute time per local epoch. Sets
that train different models so never mix their costs: a client's CNN epoch
says nothing of its MLP epoch. A client is a *straggler* for a cost when its
predicted round trip at the base number of epochs exceeds ``threshold`` times
the median prediction over the clients seen with that cost so far.

Load balancing changes how many local epochs a client is asked to run:

* ``halve``: the rule of the load-balancing seed project: a straggler's epochs
  are halved (down to an eighth of an epoch), an on-time client gets one more
  (at most ``max_epochs``);
* ``proportional``: each client gets the epochs that bring its predicted round
  trip closest to the median client's at the base epochs, so the groups finish
  together instead of waiting for their slowest member;
* ``off``: every client runs the base epochs (flags are still recorded).

Epochs are planned (:meth:`StragglerTracker.plan`) when a policy says a job's
work is decided, from the estimates as they stand then; which moment that is
is each policy's rule (:mod:`pwfl.strategies`). A plan moves a client's epochs
only when a round trip of it came in since its last plan; otherwise it keeps
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import median

from pwfl.clock import ClientTiming
from pwfl.config import Config, StragglerConfig

# Least work load balancing gives a client: an eighth of an epoch's batches. Below
# that an update carries too little to be worth its transfer.
MIN_EPOCHS = 0.125


def cost_of(cfg: Config) -> str:
    """The name of what a weight set's work costs a client, from the set's config.

    A round trip's fixed part is the model's bytes on the client's link, its
    compute the model's FLOPs over the client's batches: the model, the batch size
    and augmentation price it; the learning rate, momentum, the epochs (estimates
    are per epoch) and the server's options do not. Sets with one cost share
    their estimates.
    """
    t = cfg.train
    return f"{cfg.model.name}/batch {t.batch_size}" + ("/augment" if t.augment else "")


@dataclass
class Estimate:
    """Moving estimates of one client's round trip, in two parts."""

    fixed_s: float
    per_epoch_s: float

    def predict(self, epochs: float) -> float:
        """Predicted round trip when running ``epochs`` local epochs."""
        return self.fixed_s + epochs * self.per_epoch_s


class StragglerTracker:
    """Round-trip estimates, straggler flags and the local epochs each client gets.

    Everything is kept per cost (:func:`cost_of`), then per client.
    """

    def __init__(self, cfg: StragglerConfig, base_epochs: int):
        self.cfg = cfg
        self.base_epochs = base_epochs
        self.estimates: dict[str, dict[int, Estimate]] = {}
        self.epochs: dict[str, dict[int, float]] = {}
        """The epochs each client got at its latest plan."""
        self.fresh: dict[str, set[int]] = {}
        """The clients with a round trip observed since their latest plan."""
        self._medians: dict[str, float] = {}  # per cost, until its next observation

    def observe(self, client: int, cost: str, timing: ClientTiming, epochs: float) -> None:
        """Fold one round trip of work priced by ``cost`` into the client's estimates.

        ``epochs`` is the work the client actually did, in epochs: the examples
        of the batches it ran over its partition's size (0.23 for 3 batches of a
        13-batch epoch), so a client given a fraction of an epoch is not taken
        for a faster one.
        """
        if epochs <= 0:
            raise ValueError(f"a round trip of {epochs} epochs says nothing of a client's speed")
        fixed = timing.download_s + timing.upload_s + timing.latency_s
        per_epoch = timing.compute_s / epochs
        self.fresh.setdefault(cost, set()).add(client)
        self._medians.pop(cost, None)
        known = self.estimates.setdefault(cost, {})
        old = known.get(client)
        if old is None:
            known[client] = Estimate(fixed, per_epoch)
            return
        w = self.cfg.ema
        old.fixed_s = w * fixed + (1 - w) * old.fixed_s
        old.per_epoch_s = w * per_epoch + (1 - w) * old.per_epoch_s

    def median_round_trip(self, cost: str) -> float:
        """Median predicted round trip at the base epochs over the clients seen with ``cost``.

        Kept until the next round trip of ``cost`` is observed: a round's N tries each
        ask whether their client straggles, and N medians of N estimates would cost
        seconds a round at a thousand clients."""
        if cost not in self._medians:
            self._medians[cost] = median(
                e.predict(self.base_epochs) for e in self.estimates[cost].values()
            )
        return self._medians[cost]

    def is_straggler(self, client: int, cost: str) -> bool:
        """Whether the client's predicted round trip for ``cost`` is ``threshold`` x the
        median or more."""
        estimate = self.estimates.get(cost, {}).get(client)
        return estimate is not None and self.flagged(estimate, self.median_round_trip(cost))

    def flagged(self, estimate: Estimate, median_s: float) -> bool:
        """The straggler test: a predicted round trip at the base epochs over
        ``threshold`` x the median ``median_s``."""
        return estimate.predict(self.base_epochs) > self.cfg.threshold * median_s

    def stragglers(self, cost: str) -> set[int]:
        """Every client currently flagged for ``cost``."""
        return {c for c in self.estimates.get(cost, {}) if self.is_straggler(c, cost)}

    def plan(self, cost: str, clients: Sequence[int]) -> list[float]:
        """The local epochs to ask of each of ``clients`` for work priced by ``cost``.

        Each client observed since its latest plan gets the rule's epochs from the
        estimates as they stand now; the others keep the epochs they had (the base
        epochs before their first round trip).

        Parameters
        ----------
        cost
            What the work costs a client (:func:`cost_of` of its weight set).
        clients
            The clients the work goes to.

        Returns
        -------
        list[float]
            Each client's local epochs, in the order of ``clients``.
        """
        fresh = self.fresh.get(cost, set())
        planned = self.epochs.setdefault(cost, {})
        due = [c for c in clients if c in fresh]
        if due:
            rule = BALANCING[self.cfg.load_balancing]
            target = self.median_round_trip(cost)  # once: the same for every client
            for client in due:
                planned[client] = rule(
                    self, self.estimates[cost][client], planned.get(client), target
                )
                fresh.discard(client)
        return [planned.get(c, float(self.base_epochs)) for c in clients]

    def state(self) -> dict[str, list[list[float | int | str]]]:
        """The estimates and planned epochs, as JSON-able values (for checkpoints)."""
        return {
            "estimates": [
                [k, c, e.fixed_s, e.per_epoch_s]
                for k, known in self.estimates.items()
                for c, e in known.items()
            ],
            "epochs": [[k, c, e] for k, planned in self.epochs.items() for c, e in planned.items()],
            "fresh": [[k, c] for k, clients in self.fresh.items() for c in sorted(clients)],
        }

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state` returned."""
        self.estimates, self.epochs, self.fresh, self._medians = {}, {}, {}, {}
        for k, c, fixed, per_epoch in state["estimates"]:
            self.estimates.setdefault(str(k), {})[int(c)] = Estimate(fixed, per_epoch)
        for k, c, epochs in state["epochs"]:
            self.epochs.setdefault(str(k), {})[int(c)] = float(epochs)
        for k, c in state["fresh"]:
            self.fresh.setdefault(str(k), set()).add(int(c))


Rule = Callable[[StragglerTracker, Estimate, float | None, float], float]
"""``rule(tracker, estimate, epochs, median)``: a client's new epochs from its estimate,
the epochs of its latest plan (None before its first) and the median round trip."""


def _base_epochs(
    tracker: StragglerTracker, est: Estimate, epochs: float | None, target: float
) -> float:
    """off: every client keeps the base epochs."""
    return float(tracker.base_epochs)


def _halve(tracker: StragglerTracker, est: Estimate, epochs: float | None, target: float) -> float:
    current = tracker.base_epochs if epochs is None else epochs
    if tracker.flagged(est, target):
        return max(MIN_EPOCHS, current / 2)
    return min(tracker.cfg.max_epochs, current + 1)


def _proportional(
    tracker: StragglerTracker, est: Estimate, epochs: float | None, target: float
) -> float:
    ideal = (target - est.fixed_s) / est.per_epoch_s if est.per_epoch_s > 0 else 1
    return float(min(tracker.cfg.max_epochs, max(MIN_EPOCHS, ideal)))


BALANCING: dict[str, Rule] = {
    "off": _base_epochs,
    "halve": _halve,
    "proportional": _proportional,
}
"""Load-balancing rules by name (``stragglers.load_balancing``), described above: each
gives the epochs of one client observed since its latest plan. Keyed by exactly
``pwfl.registry.BALANCING``."""
