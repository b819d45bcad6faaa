"""An in-process Flower grid: every client runs in a thread of this process, without Ray.

``simulation.backend = "inline"`` runs the same ServerApp and ClientApp, with
the same Flower messages, as the Ray backend does, but hands each message to
the ClientApp in a worker thread of this process instead of a Ray actor. There
is no Ray session to start and no actor to import PyTorch, so a small run
starts in a fraction of a second instead of several seconds: the test suite
and quick debugging (a breakpoint in the ClientApp works) use it. Flower's
simulation engine offers only the Ray backend, hence this small grid.

What it does like Flower's simulation: message and reply ids, one
:class:`flwr.app.Context` per node kept between its messages, node configs
with ``partition-id`` and ``num-partitions``, and a ClientApp exception turned
into an error reply with Flower's error code and reason. What differs: the
clients' PyTorch work shares this process (:mod:`pwfl.training` serialises it,
so seeded draws stay exact), and nothing is copied between processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.client_app import ClientAppException
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

PULL_INTERVAL_S = 0.01
"""How often a wait for replies looks again: a reply is a finished future in this process,
so looking costs next to nothing, and a longer pause is time the server sits idle."""


class InlineGrid(Grid):
    """A grid whose nodes are contexts in this process and whose clients run in threads.

    Parameters
    ----------
    client_app
        The ClientApp every node runs.
    num_nodes
        Nodes to register; node ``i`` gets ``partition-id = i``.
    workers
        Threads that run messages at the same time.
    """

    pull_interval = PULL_INTERVAL_S
    """Read by the waits of :class:`pwfl.interrupt.StoppableGrid` (Flower's grids name it
    so too); without it they would look every 0.1 s."""

    def __init__(self, client_app: ClientApp, num_nodes: int, workers: int = 4):
        self._app = client_app
        self._run = Run.create_empty(run_id=1)
        # Messages take their run and sender from the process's task identity, as
        # Flower's run_simulation sets it for the ServerApp it starts.
        TaskIdentity.task_id, TaskIdentity.run_id = 1, 1
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        # Node ids start at 1: Flower reserves 0 for the SuperLink.
        self._contexts = {
            i + 1: Context(
                run_id=1,
                node_id=i + 1,
                node_config={"partition-id": i, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i in range(num_nodes)
        }
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pwfl-client")
        self._futures: dict[str, Future[Message]] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Give every message an id and start it on a worker thread."""
        ids = []
        for message in messages:
            message_id = str(uuid4())
            message.metadata.__dict__["_message_id"] = message_id
            self._futures[message_id] = self._pool.submit(self._handle, message)
            ids.append(message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies that are ready among ``message_ids``."""
        replies = []
        for message_id in message_ids:
            future = self._futures.get(message_id)
            if future is not None and future.done():
                replies.append(self._futures.pop(message_id).result())
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages`` and wait for their replies (until ``timeout`` seconds)."""
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending and (deadline is None or time.monotonic() < deadline):
            got = list(self.pull_messages(pending))
            replies += got
            pending -= {r.metadata.reply_to_message_id for r in got}
            if pending:
                time.sleep(PULL_INTERVAL_S)
        return replies

    def shutdown(self) -> None:
        """Stop taking messages; clients still running finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _handle(self, message: Message) -> Message:
        context = self._contexts[message.metadata.dst_node_id]
        try:
            reply = self._app(message, context)
        except Exception as ex:  # reported as Flower's simulation reports it
            wrapped = ClientAppException(str(ex))
            reason = str(type(wrapped)) + ":<'" + str(wrapped) + "'>"
            reply = Message(
                Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message
            )
        reply.metadata.__dict__["_message_id"] = str(uuid4())
        return reply
