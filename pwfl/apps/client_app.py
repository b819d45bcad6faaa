"""The ClientApp: unpack a message, call pwfl.training on this client's partition, reply."""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from pwfl import training
from pwfl.apps.settings import config_from_run_config, train_settings
from pwfl.config import Config
from pwfl.data import client_data
from pwfl.strategies.common import (
    ARRAYS,
    CLIENT,
    CONFIG,
    METRICS,
    WEIGHT_KEY,
    encode_reply_arrays,
)


def make_client_app(cfg: Config | None = None) -> ClientApp:
    """A ClientApp for ``cfg``, or for the run config when ``cfg`` is None."""
    app = ClientApp()

    def setup(context: Context) -> tuple[Config, int]:
        config = cfg if cfg is not None else config_from_run_config(context.run_config)
        return config, int(context.node_config["partition-id"])

    @app.query()
    def describe(msg: Message, context: Context) -> Message:
        """Tell the server which partition this node holds and how many examples.

        Also warms this process up, so that the first round's measured compute
        time is not inflated by one-off start-up work.
        """
        config, pid = setup(context)
        data = client_data(config.data, config.seed, pid)
        training.warm_up(train_settings(config), data)
        info = ConfigRecord({"partition-id": pid, "num-examples": len(data)})
        return Message(RecordDict({CLIENT: info}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """Train the received weights on the local partition."""
        config, pid = setup(context)
        sent = msg.content[CONFIG]
        settings = train_settings(config, int(sent["server-round"]), pid, dict(sent))
        data = client_data(config.data, config.seed, pid)
        received = msg.content[ARRAYS]
        state, metrics = training.train(received.to_torch_state_dict(), data, settings)
        reply = RecordDict(
            {
                ARRAYS: encode_reply_arrays(state, received, config.comm.compression),
                METRICS: MetricRecord(
                    {
                        WEIGHT_KEY: len(data),
                        "loss": metrics["loss"],
                        "train-time-s": metrics["train_time_s"],
                    }
                ),
                CLIENT: ConfigRecord({"partition-id": pid, "weight-set": sent["weight-set"]}),
            }
        )
        return Message(reply, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """Evaluate the received weights on the local partition."""
        config, pid = setup(context)
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


# Loaded by Flower's tooling (``flwr run .``): the config comes from the run config.
app = make_client_app()
