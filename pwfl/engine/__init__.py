"""The round engine: the one loop every strategy runs in, cut by concern.

The engine owns everything a round does: it sends the jobs a policy plans (a
*job* is one weight set sent to one group of clients), collects the replies and
retries the failed ones, places every transfer, computation and aggregation on
the simulated clock (:mod:`pwfl.clock`), applies the quorum rule, runs the
aggregations the policy asks for, applies the server optimiser, evaluates the
weight sets, builds the records and calls the callbacks. Strategies
(:mod:`pwfl.strategies`) are policies it asks what to send, what to aggregate
and when a round ends.

* :mod:`~pwfl.engine.loop`: the loop and what policies may read of it;
* :mod:`~pwfl.engine.events`: the events on the simulated clock, one handler each;
* :mod:`~pwfl.engine.messaging`: messages to the clients, training and evaluation alike;
* :mod:`~pwfl.engine.server`: a finished job's aggregations and their time on a core;
* :mod:`~pwfl.engine.rounds`: the end of a round of the records;
* :mod:`~pwfl.engine.state`: checkpoints, jobs in flight included;
* :mod:`~pwfl.engine.nodes` and :mod:`~pwfl.engine.jobs`: node discovery, and what
  the engine keeps of weight sets and jobs.

A job is aggregated when the server stops waiting for it on the simulated
clock, from exactly the replies counted then; a reply the host never gets
within ``simulation.reply_timeout_s`` (host seconds) is recorded as ``lost``.
"""

from pwfl.engine.jobs import EvaluateFn, RunResult, SetModel, train_loss
from pwfl.engine.loop import Engine
from pwfl.engine.nodes import CONNECT_TIMEOUT_S, connect

__all__ = [
    "CONNECT_TIMEOUT_S",
    "Engine",
    "EvaluateFn",
    "RunResult",
    "SetModel",
    "connect",
    "train_loss",
]
