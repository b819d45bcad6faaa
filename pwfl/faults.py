"""Injected client failures: which fault (if any) a client meets in a round.

The draw is a pure function of ``(seed, "fault", round, client)``, so a run's
failures repeat exactly, and the same clients fail under every strategy of one
seed. The ClientApp acts on the draw; the server only sees what a real failure
would show it (an error reply, or no reply before the round's timeout).
"""

from __future__ import annotations

from pwfl.config import FaultsConfig
from pwfl.seeding import rng_for

NONE, CRASH, TRANSIENT, HANG = "none", "crash", "transient", "hang"
# A hanging client answers this long after the round's timeout, so the server
# has certainly stopped waiting for it.
HANG_MARGIN_S = 1.0


class InjectedFault(RuntimeError):
    """Raised by a ClientApp that was told to fail."""


def fault_for(cfg: FaultsConfig, seed: int, server_round: int, client: int) -> str:
    """The fault client ``client`` meets in ``server_round``: none, crash, transient or hang.

    One uniform draw is cut into consecutive intervals of length ``crash_prob``,
    ``transient_prob`` and ``hang_prob``.
    """
    u = rng_for(seed, "fault", server_round, client).random()
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
