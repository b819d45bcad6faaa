"""The ClientApp: unpack a message, call pwfl.training on this client's partition, reply.

Two things happen here besides training. Injected faults (``[faults]``) make
the app raise or hang (answer too late on the simulated clock), as a failing
device would. A client that keeps
state between rounds (``train.client_state``) holds it in Flower's
``Context.state`` and, when the app has a state folder, also writes it there
after each of its rounds, so a resumed run can give it back.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import torch
from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from pwfl import arithmetic, training
from pwfl.apps.settings import config_from_run_config, repeat_key, train_settings
from pwfl.checkpoint import load_client_state, prune_client_state, save_client_state
from pwfl.config import Config
from pwfl.data import client_data, client_holdout_data, client_size
from pwfl.faults import HANG, HANG_KEY, InjectedFault, fails_attempt, fault_for
from pwfl.training import PERSONAL
from pwfl.transport import (
    ARRAYS,
    CLIENT,
    CONFIG,
    METRICS,
    STATE,
    WEIGHT_KEY,
    arrays_of,
    as_int,
    config_of,
    each_client,
    encode_reply_arrays,
    to_torch,
    torch_record,
)

LOCAL = "pwfl-local"  # the Context.state key of what a client keeps

# Clients that are threads of one process (the inline backend) run their work one
# at a time: PyTorch's default generator and parts of Python's own machinery (3.11's
# AST state, which its tracebacks use) are one per process, and concurrent use was
# seen to fail. In a Ray actor it is never contended.
_ONE_CLIENT = threading.Lock()


def one_client_at_a_time() -> threading.Lock:
    """The lock above. The app's handlers reach it through this module-level function,
    which pickles by reference: a Ray actor receives the app, and a lock cannot be
    pickled."""
    return _ONE_CLIENT


_RECEIVED: dict[str, Any] = {}


def received_state(record: ArrayRecord) -> training.StateDict:
    """The received weights as a PyTorch state dict. The clients of a cohort message share
    one record (:func:`pwfl.transport.cohort_contents`), so it is decoded once for all of
    them; training and evaluation only read it (they load it into a model of their own).
    Called under :func:`one_client_at_a_time`."""
    if _RECEIVED.get("record") is not record:
        _RECEIVED.clear()  # hold one message's weights at a time
        _RECEIVED.update(record=record, state=to_torch(record))
    return dict(_RECEIVED["state"])


def make_client_app(cfg: Config | None = None, state_dir: str | Path | None = None) -> ClientApp:
    """A ClientApp for ``cfg``, or for the run config when ``cfg`` is None.

    The same app serves both bindings (``simulation.client_binding``). In pool
    binding a node runs whichever client a message names (``client-id``): it
    finds that client's data from its id, and what the client keeps between
    rounds comes with the message and goes back with the reply. In node
    binding the node is one client, its ``partition-id``, which keeps its state
    in Flower's ``Context.state`` and, given a state folder (``state_dir`` or a
    ``state-dir`` node config), in files there, so a resumed run can give it back.
    """
    app = ClientApp()

    def state_folder(config: Config, context: Context) -> str | Path | None:
        # Node binding only: in pool binding what a client keeps travels in its messages.
        if config.simulation.client_binding == "pool":
            return None
        node_dir = context.node_config.get("state-dir")
        return state_dir or (str(node_dir) if node_dir else None)

    def config_for(context: Context) -> Config:
        return cfg if cfg is not None else config_from_run_config(context.run_config)

    def setup(content: RecordDict, context: Context) -> tuple[Config, int]:
        config = config_for(context)
        arithmetic.ensure(config.reproducibility.arithmetic)
        sent = config_of(content) if CONFIG in content else ConfigRecord()
        if "client-id" in sent:
            return config, as_int(sent["client-id"])
        return config, as_int(context.node_config["partition-id"])

    @app.query()
    def describe(msg: Message, context: Context) -> Message:
        """Get ready: load the libraries and warm PyTorch up, so that this one-off work is
        start-up, not the first round's compute time. In node binding, also tell the
        server which partition this node holds and how many examples."""
        config = cfg if cfg is not None else config_from_run_config(context.run_config)
        pooled = CONFIG in msg.content and config_of(msg.content).get("binding") == "pool"
        with one_client_at_a_time():
            for ws in range(len(config.weight_set) or 1):
                warm_up_once(train_settings(config.for_set(ws)))
            if pooled:
                return Message(RecordDict({CLIENT: ConfigRecord({"ready": 1})}), reply_to=msg)
            pid = as_int(context.node_config["partition-id"])
            size = client_size(config.data, config.seed, pid)
            info = ConfigRecord({"partition-id": pid, "num-examples": size})
            return Message(RecordDict({CLIENT: info}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """Train the received weights on the named client's data (on each client's, one
        after another, for a cohort message)."""

        def compression() -> str:
            return config_for(context).comm.compression

        return Message(each_client(msg.content, context, train_one, compression), reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """Evaluate the received weights on the named client's held-out examples (each
        client's, for a cohort message)."""
        return Message(each_client(msg.content, context, evaluate_one), reply_to=msg)

    def train_one(content: RecordDict, context: Context) -> RecordDict:
        """One client's training, as the content of its reply."""
        config, client = setup(content, context)
        sent = config_of(content)
        server_round = as_int(sent["server-round"])
        if inject_fault(config, server_round, client, as_int(sent.get("attempt", 0)), dict(sent)):
            # A hang is simulated time: the reply says so and the server never counts it.
            return RecordDict({METRICS: MetricRecord({HANG_KEY: 1})})
        with one_client_at_a_time():
            settings = train_settings(config, server_round, client, dict(sent))
            weight_set = as_int(sent["weight-set"])
            data = client_data(*config.set_data(weight_set), client)
            received = arrays_of(content)
            keep = config.train.client_state
            pooled = config.simulation.client_binding == "pool"
            folder = state_folder(config, context)
            local = own_state(content, context, config, folder, client, weight_set)
            state, metrics, local = training.train_keeping(
                received_state(received), data, settings, keep, local
            )
            kept: dict[str, ArrayRecord] = {}
            if keep != "none" and pooled:
                kept[STATE] = torch_record(local)
            elif keep != "none":
                context.state[state_key(weight_set)] = torch_record(local)
                if folder:
                    arrays = {k: v.numpy() for k, v in local.items()}
                    save_client_state(folder, client, server_round, arrays, weight_set)
                    checkpoint_round = as_int(sent.get("checkpoint-round", 0))
                    prune_client_state(folder, client, checkpoint_round, weight_set)
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
                    CLIENT: ConfigRecord({"partition-id": client, "weight-set": weight_set}),
                    **kept,
                }
            )
            return reply

    def evaluate_one(content: RecordDict, context: Context) -> RecordDict:
        """One client's evaluation on the examples it held out of its training.

        Its model is the received weights, with its own personal layer in personal
        mode. A client with no held-out examples, or in personal mode no layer of its
        own for this weight set yet, has nothing to measure: it reports no examples.
        """
        config, client = setup(content, context)
        with one_client_at_a_time():
            sent = config_of(content)
            weight_set = as_int(sent["weight-set"])
            settings = train_settings(config, as_int(sent["server-round"]), client, dict(sent))
            data = client_holdout_data(*config.set_data(weight_set), client)
            state: training.StateDict = received_state(arrays_of(content))
            has_model = True
            if config.train.client_state == "personal":
                folder = state_folder(config, context)
                local = own_state(content, context, config, folder, client, weight_set)
                has_model = any(k.startswith(PERSONAL) for k in local)
                state = training.with_personal(state, local)
            counted = len(data) if has_model else 0
            metrics = (
                training.evaluate(state, data, settings)
                if counted
                else {"loss": math.nan, "accuracy": math.nan}
            )
            reply = RecordDict(
                {
                    METRICS: MetricRecord(
                        {
                            WEIGHT_KEY: counted,
                            "loss": metrics["loss"],
                            "accuracy": metrics["accuracy"],
                        }
                    ),
                    CLIENT: ConfigRecord(
                        {"partition-id": client, "weight-set": sent["weight-set"]}
                    ),
                }
            )
            return reply

    return app


_WARMED: set[tuple[str, tuple[int, ...]]] = set()


def warm_up_once(settings: training.TrainSettings) -> None:
    """Pay this process's one-off training costs before any client trains in it.

    A process's first forward and backward pass (allocator, autograd and kernel
    set-up) is slow; it runs once per process and model, on made-up examples of
    the model's input shape, so it needs no client's data.
    """
    key = (settings.model, settings.input_shape)
    if key not in _WARMED:
        training.warm_up(settings)
        _WARMED.add(key)


def inject_fault(
    cfg: Config, server_round: int, client: int, attempt: int, sent: dict | None = None
) -> bool:
    """Fail as ``[faults]`` says this client fails this round: raise, or return True
    when it hangs (it then trains nothing and its reply never arrives on the
    simulated clock; the host does not wait for it)."""
    kind = fault_for(cfg.faults, cfg.seed, server_round, client, repeat_key(sent or {}))
    if fails_attempt(kind, attempt):
        raise InjectedFault(f"injected {kind} fault (round {server_round}, try {attempt})")
    return kind == HANG


def state_key(weight_set: int) -> str:
    """The ``Context.state`` key of what a client keeps for one weight set."""
    return f"{LOCAL}/{weight_set}"


def own_state(
    content: RecordDict,
    context: Context,
    config: Config,
    folder: str | Path | None,
    client: int,
    weight_set: int,
) -> training.StateDict:
    """What the client kept from its last round with ``weight_set`` (empty when it keeps
    nothing): carried by the message in pool binding, kept by the node in node binding."""
    if config.train.client_state == "none":
        return {}
    if config.simulation.client_binding == "pool":
        return carried_state(content)
    return kept_state(context, folder, client, weight_set)


def carried_state(content: RecordDict) -> training.StateDict:
    """What the client kept, as its message carries it in pool binding (empty at first)."""
    if STATE not in content:
        return {}
    return to_torch(arrays_of(content, STATE))


def kept_state(
    context: Context, folder: str | Path | None, client: int, weight_set: int
) -> training.StateDict:
    """What this client kept from its last round with ``weight_set``: from memory, else
    from its saved file. Momentum or a personal layer trained on one weight set never
    reaches another set's model."""
    key = state_key(weight_set)
    if key in context.state:
        return to_torch(arrays_of(context.state, key))
    if folder:
        saved = load_client_state(folder, client, weight_set)
        if saved is not None:
            return {k: torch.from_numpy(v) for k, v in saved[1].items()}
    return {}


# Loaded by Flower's tooling (``flwr run .``): the config comes from the run config.
app = make_client_app()
