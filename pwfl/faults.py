"""Injected client failures: which fault (if any) a client meets in a round.

The draw is a pure function of ``(seed, "fault", round, client)``, so a run's
failures repeat exactly, and the same clients fail under every strategy of one
seed. The ClientApp acts on the draw; the server only sees what a real failure
would show it: an error reply, or, for a hang, a reply that on the simulated
clock never arrives, so the server gives up on it at ``faults.round_timeout_s``.
A hang is simulated time, not host time: the client answers the host at once
with a reply marked ``HANG_KEY``, and no host second is spent waiting for it.
"""

from __future__ import annotations

from pwfl.config import FaultsConfig
from pwfl.seeding import rng_for

NONE, CRASH, TRANSIENT, HANG = "none", "crash", "transient", "hang"
HANG_KEY = "hang"
"""The metric a hanging client's reply carries: the engine treats the reply as one
that never reaches the server on the simulated clock."""


class InjectedFault(RuntimeError):
    """Raised by a ClientApp that was told to fail."""


def fault_for(
    cfg: FaultsConfig, seed: int, server_round: int, client: int, repeat: tuple[int, ...] = ()
) -> str:
    """The fault client ``client`` meets in ``server_round``: none, crash, transient or hang.

    One uniform draw is cut into consecutive intervals of length ``crash_prob``,
    ``transient_prob`` and ``hang_prob``. ``repeat`` tells a client's later jobs of one
    round apart (FedBuff can send a client two in one step; see
    :func:`pwfl.apps.settings.repeat_key`).
    """
    u = rng_for(seed, "fault", server_round, client, *repeat).random()
    for kind, p in (
        (CRASH, cfg.crash_prob),
        (TRANSIENT, cfg.transient_prob),
        (HANG, cfg.hang_prob),
    ):
        if u < p:
            return kind
        u -= p
    return NONE


def fails_attempt(kind: str, attempt: int) -> bool:
    """Whether a client with fault ``kind`` raises on its ``attempt``-th try (0 first)."""
    return kind == CRASH or (kind == TRANSIENT and attempt == 0)
