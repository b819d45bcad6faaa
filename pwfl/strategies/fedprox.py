"""FedProx: FedAvg whose clients add a proximal term to their local loss.

Li, Sahu, Zaheer, Sanjabi, Talwalkar and Smith, "Federated Optimization in
Heterogeneous Networks", MLSys 2020, Algorithm 2. In round t each sampled
client k starts from the global model w^t and approximately minimises

    h_k(w; w^t) = F_k(w) + (mu / 2) ||w - w^t||^2

(``F_k``: its mean cross-entropy; ``mu``: ``[strategy.fedprox] mu``) with the
local SGD every strategy uses; the server averages the replies as FedAvg does
(Flower's ``aggregate_arrayrecords``). The term pulls each client's model towards
the one it was sent, which keeps the updates of clients with unlike data closer
together. With ``mu = 0`` the term adds exactly zero to every loss and gradient,
so a run gives FedAvg's numbers bit for bit (``tests/test_fedprox.py``). The
term covers only the weights the server sent that the client trains from: with
``train.client_state = "personal"`` the client's own classifier layer is left out
(it is not the server's, and the client never sends it back). The train loss a
client reports is the plain cross-entropy ``F_k``, without the term, the quantity
every strategy reports.

The term lives in the client's training step (:data:`pwfl.training.StepFn`),
which the policy names in every training message (``train-step``, with
``step.mu``): the local-training hook a step of your own uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pwfl.config import Config, ranged
from pwfl.errors import ConfigError
from pwfl.strategies.fedavg import FedAvg

if TYPE_CHECKING:  # the step runs on the clients; the config loads no PyTorch
    import torch
    from torch import nn

    from pwfl.training import StepContext

STEP = "pwfl.strategies.fedprox:proximal_step"


@dataclass(frozen=True)
class FedProxSettings:
    """FedProx's own keys (Li et al., 2020), its table ``[strategy.fedprox]``."""

    mu: float = ranged(0.01, ge=0)
    """The proximal term's weight mu; 0 gives FedAvg. The paper tunes it from
    {0.001, 0.01, 0.1, 1}; 0.01 is in that grid."""


class FedProx(FedAvg):
    """FedAvg with the proximal term in every client's loss."""

    name = "fedprox"
    Settings = FedProxSettings

    def train_config(self, weight_set: int) -> dict[str, Any]:
        return {"train-step": STEP, "step.mu": float(self.settings.mu)}

    @classmethod
    def check_config(cls, cfg: Config) -> None:
        """FedAvg's rules, and the training step is the strategy's own."""
        super().check_config(cfg)
        if cfg.train.step:
            raise ConfigError(
                f"config key 'train.step' = {cfg.train.step!r} is invalid: fedprox trains with "
                "its own step (the proximal term); leave train.step empty"
            )


def proximal_step(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, context: StepContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's cross-entropy plus ``(mu / 2) ||w - w^t||^2`` over the parameters the
    server sent (``context.received``: in personal mode not the client's own layer), and
    the cross-entropy alone, the loss the client reports."""
    from torch.nn.functional import cross_entropy

    loss = cross_entropy(model(inputs), targets)
    mu = float(context.options.get("mu", 0.0))
    params = dict(model.named_parameters())
    drift = sum(((params[name] - sent) ** 2).sum() for name, sent in context.received.items())
    return loss + (mu / 2) * drift, loss
