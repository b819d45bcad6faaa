"""Stopping a run on Ctrl-C at a safe point, its folder left as its last checkpoint wrote it.

A SIGINT sets a :class:`threading.Event` instead of raising ``KeyboardInterrupt``
wherever the main thread happens to be; the server's next call to its grid then
raises :class:`pwfl.errors.Interrupted`. Every loop of the server (connecting
to the nodes, waiting for replies, client evaluation) calls its grid while it
waits, so the stop is seen within one poll, and never halfway through writing
the records or a checkpoint (callbacks make no grid calls). The server thread
then ends as it would on any error: Flower's simulation stops its workers and
shuts Ray down, the inline grid stops taking messages. A second Ctrl-C raises
``KeyboardInterrupt`` at once, as without this module.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from pwfl.errors import Interrupted

STOP_MESSAGE = "stopped by Ctrl-C"


@contextmanager
def sigint_sets(stop: threading.Event) -> Iterator[threading.Event]:
    """Within the block, a first SIGINT sets ``stop``; a second one raises
    ``KeyboardInterrupt``. Off the main thread (where Python allows no signal
    handler) the block runs with the handler it had."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: object) -> None:
        if stop.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class StoppableGrid(Grid):
    """A grid that raises :class:`Interrupted` from every call once ``stop`` is set.

    It forwards everything else to ``grid``. ``send_and_receive`` is the push and
    pull loop of Flower's own grids, written here over the checked pull so that
    a stop ends the wait too.
    """

    def __init__(self, grid: Grid, stop: threading.Event):
        self._grid = grid
        self._stop = stop

    def _check(self) -> None:
        if self._stop.is_set():
            raise Interrupted(STOP_MESSAGE)

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        self._check()
        return self._grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self._check()
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self._check()
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        pending = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        interval = float(getattr(self._grid, "pull_interval", 0.1))
        while pending and (deadline is None or time.monotonic() < deadline):
            got = list(self.pull_messages(pending))
            replies += got
            pending -= {reply.metadata.reply_to_message_id for reply in got}
            if pending:
                self._stop.wait(interval)
        return replies

    def __getattr__(self, name: str):
        # Anything a particular grid adds (the inline grid's shutdown).
        return getattr(self._grid, name)
