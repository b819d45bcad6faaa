"""The ClientApp: unpack a message, call pwfl.training on this client's partition, reply.

Two things happen here besides training. Injected faults (``[faults]``) make
the app raise or answer too late, as a failing device would. A client that keeps
state between rounds (``train.client_state``) holds it in Flower's
``Context.state`` and, when the app has a state folder, also writes it there
after each of its rounds, so a resumed run can give it back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from pwfl import training
from pwfl.apps.settings import config_from_run_config, train_settings
from pwfl.checkpoint import load_client_state, prune_client_state, save_client_state
from pwfl.config import Config
from pwfl.data import client_data, partition_indices
from pwfl.faults import HANG, HANG_MARGIN_S, InjectedFault, fails_attempt, fault_for
from pwfl.training import PERSONAL
from pwfl.transport import (
    ARRAYS,
    CLIENT,
    CONFIG,
    METRICS,
    WEIGHT_KEY,
    encode_reply_arrays,
)

LOCAL = "pwfl-local"  # the Context.state key of what a client keeps

# Clients that are threads of one process (the inline backend) run their work one
# at a time: PyTorch's default generator and parts of Python's own machinery (3.11's
# AST state, which its tracebacks use) are one per process, and concurrent use was
# seen to fail. An injected hang waits outside it. In a Ray actor it is never contended.
_ONE_CLIENT = threading.Lock()


def one_client_at_a_time() -> threading.Lock:
    """The lock above. The app's handlers reach it through this module-level function,
    which pickles by reference: a Ray actor receives the app, and a lock cannot be
    pickled."""
    return _ONE_CLIENT


def make_client_app(cfg: Config | None = None, state_dir: str | Path | None = None) -> ClientApp:
    """A ClientApp for ``cfg``, or for the run config when ``cfg`` is None.

    ``state_dir`` is where clients save what they keep between rounds (one
    folder per client); without it (and without a ``state-dir`` node config)
    that state lives only in memory.
    """
    app = ClientApp()

    def setup(context: Context) -> tuple[Config, int]:
        config = cfg if cfg is not None else config_from_run_config(context.run_config)
        return config, int(context.node_config["partition-id"])

    @app.query()
    def describe(msg: Message, context: Context) -> Message:
        """Tell the server which partition this node holds and how many examples.

        Every node answers it once and a simulation may have thousands, so it
        reads the split's indices only; but the first query a process sees also
        loads the data and warms the process up, so that this one-off work is
        start-up, not the first round's compute time.
        """
        config, pid = setup(context)
        with one_client_at_a_time():
            size = len(partition_indices(config.data, config.seed)[pid])
            if size:
                settings = train_settings(config)
                warm_up_once(settings, lambda: client_data(config.data, config.seed, pid))
            info = ConfigRecord({"partition-id": pid, "num-examples": size})
            return Message(RecordDict({CLIENT: info}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """Train the received weights on the local partition."""
        config, pid = setup(context)
        sent = msg.content[CONFIG]
        server_round = int(sent["server-round"])
        inject_fault(config, server_round, pid, int(sent.get("attempt", 0)))
        with one_client_at_a_time():
            settings = train_settings(config, server_round, pid, dict(sent))
            data = client_data(config.data, config.seed, pid)
            warm_up_once(settings, lambda: data)
            received = msg.content[ARRAYS]
            keep = config.train.client_state
            weight_set = int(sent["weight-set"])
            folder = state_dir or context.node_config.get("state-dir")
            local = kept_state(context, folder, pid, weight_set) if keep != "none" else {}
            state, metrics, local = training.train_keeping(
                received.to_torch_state_dict(), data, settings, keep, local
            )
            if keep != "none":
                context.state[state_key(weight_set)] = ArrayRecord(local)
                if folder:
                    arrays = {k: v.numpy() for k, v in local.items()}
                    save_client_state(folder, pid, server_round, arrays, weight_set)
                    prune_client_state(
                        folder, pid, int(sent.get("checkpoint-round", 0)), weight_set
                    )
            if keep == "personal":
                # FedPer: the personal layer stays on the client; the server keeps its own.
                state = {k: v for k, v in state.items() if PERSONAL + k not in local}
            reply = RecordDict(
                {
                    ARRAYS: encode_reply_arrays(state, received, config.comm.compression),
                    METRICS: MetricRecord(
                        {
                            WEIGHT_KEY: int(metrics["num_examples"]),
                            "examples-run": int(metrics["examples_run"]),
                            "loss": metrics["loss"],
                            "train-measured-s": metrics["train_measured_s"],
                        }
                    ),
                    CLIENT: ConfigRecord({"partition-id": pid, "weight-set": weight_set}),
                }
            )
            return Message(reply, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """Evaluate the received weights on the local partition."""
        config, pid = setup(context)
        with one_client_at_a_time():
            sent = msg.content[CONFIG]
            settings = train_settings(config, int(sent["server-round"]), pid)
            data = client_data(config.data, config.seed, pid)
            metrics = training.evaluate(msg.content[ARRAYS].to_torch_state_dict(), data, settings)
            reply = RecordDict(
                {
                    METRICS: MetricRecord(
                        {
                            WEIGHT_KEY: len(data),
                            "loss": metrics["loss"],
                            "accuracy": metrics["accuracy"],
                        }
                    ),
                    CLIENT: ConfigRecord({"partition-id": pid, "weight-set": sent["weight-set"]}),
                }
            )
            return Message(reply, reply_to=msg)

    return app


_WARMED: set[str] = set()


def warm_up_once(settings: training.TrainSettings, data: Callable[[], training.ClientData]) -> None:
    """Pay this process's one-off training costs before the first measured training.

    A process's first forward and backward pass (allocator, autograd and kernel
    set-up) would otherwise count as its first client's compute time on the
    simulated clock. Simulation reuses a few worker processes for every client,
    so this runs once per process and model, not once per client; ``data`` is
    only called then (discovery asks thousands of nodes, and gathering a
    partition is not free).
    """
    if settings.model not in _WARMED:
        training.warm_up(settings, data())
        _WARMED.add(settings.model)


def inject_fault(cfg: Config, server_round: int, client: int, attempt: int) -> None:
    """Fail as ``[faults]`` says this client fails this round: raise, or answer late."""
    kind = fault_for(cfg.faults, cfg.seed, server_round, client)
    if fails_attempt(kind, attempt):
        raise InjectedFault(f"injected {kind} fault (round {server_round}, try {attempt})")
    if kind == HANG:
        # Really wait: the server must see what a silent client looks like to it.
        time.sleep(cfg.faults.round_timeout_s + HANG_MARGIN_S)


def state_key(weight_set: int) -> str:
    """The ``Context.state`` key of what a client keeps for one weight set."""
    return f"{LOCAL}/{weight_set}"


def kept_state(
    context: Context, folder: str | Path | None, client: int, weight_set: int
) -> training.StateDict:
    """What this client kept from its last round with ``weight_set``: from memory, else
    from its saved file. Momentum or a personal layer trained on one weight set never
    reaches another set's model."""
    key = state_key(weight_set)
    if key in context.state:
        return dict(context.state[key].to_torch_state_dict())
    if folder:
        saved = load_client_state(folder, client, weight_set)
        if saved is not None:
            return {k: torch.from_numpy(v) for k, v in saved[1].items()}
    return {}


# Loaded by Flower's tooling (``flwr run .``): the config comes from the run config.
app = make_client_app()
