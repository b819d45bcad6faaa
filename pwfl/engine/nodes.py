"""Finding the Flower nodes that run the clients, before the first round."""

from __future__ import annotations

import time

from flwr.app import ConfigRecord, ConfigRecordValues, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from pwfl.config import Config
from pwfl.errors import PwflError
from pwfl.transport import CLIENT, CONFIG, NodeBinding, as_int, config_of

CONNECT_TIMEOUT_S = 60.0
"""How long the server waits for the nodes it needs before saying which are missing."""

NODE_POLL_S = 0.05
"""How often the server looks for nodes still missing. Flower's grids offer no event
for a node's arrival; in a simulation the nodes are registered in the server's first
moments, so a short pause lets the first round start as soon as they are."""


def connect(grid: Grid, cfg: Config, pool_size: int = 0) -> NodeBinding:
    """Find the nodes that will run the clients (before the first round).

    Node binding: every node is asked for its partition id and example count,
    and there must be one node per client (``data.num_clients``). Pool binding:
    the nodes are a pool, asked only to get ready (each loads its libraries and
    warms PyTorch up, so that this one-off work is start-up, not the first
    round's compute); ``pool_size`` nodes are waited for when known, else the
    number connected once it stops growing.

    Raises
    ------
    PwflError
        When the nodes needed have not connected within ``CONNECT_TIMEOUT_S``:
        one line naming how many did, instead of a silent wait.
    """
    pool = cfg.simulation.client_binding == "pool"
    expected = pool_size if pool else cfg.data.num_clients
    node_ids = _wait_for_nodes(grid, cfg, pool, expected)
    query: dict[str, ConfigRecordValues] = {"binding": "pool" if pool else "node"}
    messages = [
        Message(
            content=RecordDict({CONFIG: ConfigRecord(query)}),
            message_type=MessageType.QUERY,
            dst_node_id=node,
        )
        for node in node_ids
    ]
    answered = [r for r in grid.send_and_receive(messages, timeout=600) if not r.has_error()]
    if not answered:
        raise PwflError("no node answered the server's first query; rerun with --verbose")
    if pool:
        return NodeBinding(pool=True, nodes=sorted(r.metadata.src_node_id for r in answered))
    binding = NodeBinding(pool=False)
    for reply in answered:
        info = config_of(reply.content, CLIENT)
        client = as_int(info["partition-id"])
        binding.node_of[client] = reply.metadata.src_node_id
        binding.sizes[client] = as_int(info["num-examples"])
    return binding


def _wait_for_nodes(grid: Grid, cfg: Config, pool: bool, expected: int) -> list[int]:
    """The connected node ids, once ``expected`` are up (or, when 0, once their number
    has not grown for two seconds)."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    seen, stable_since = -1, time.monotonic()
    while True:
        node_ids = sorted(grid.get_node_ids())
        if len(node_ids) != seen:
            seen, stable_since = len(node_ids), time.monotonic()
        if expected and len(node_ids) >= expected:
            return node_ids
        if not expected and node_ids and time.monotonic() - stable_since > 2.0:
            return node_ids
        if time.monotonic() > deadline:
            raise PwflError(_missing_nodes(cfg, pool, len(node_ids), expected))
        time.sleep(NODE_POLL_S)


def _missing_nodes(cfg: Config, pool: bool, connected: int, expected: int) -> str:
    if pool:
        return (
            f"{connected} of the {expected or 'at least 1'} nodes of the client pool connected "
            f"within {CONNECT_TIMEOUT_S:.0f} s; check the SuperNodes' logs"
        )
    return (
        f"{connected} SuperNodes connected within {CONNECT_TIMEOUT_S:.0f} s, but node binding "
        f"needs one per client (data.num_clients = {cfg.data.num_clients}): start more "
        "SuperNodes, or let a few nodes run every client with "
        "simulation.client_binding = pool"
    )
