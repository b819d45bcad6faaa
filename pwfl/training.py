"""Local training and evaluation in plain PyTorch: state dicts in, state dicts out.

This module never imports Flower, so it can be tested, profiled and reused alone::

    state, metrics = train(state, ClientData(x, y), TrainSettings(model="cnn"))
    evaluate(state, test_data, TrainSettings(model="cnn"))["accuracy"]

Each mini-batch's loss comes from a training step: the plain cross-entropy of
the model's outputs, or your function named by ``TrainSettings.step``
(``train.step``, :data:`StepFn`), for instance one that adds a proximal term
towards the weights the client was sent.

Why one module of about 420 lines: local training, its steps, the client
state kept between rounds and evaluation share one model-building path and one
lock on PyTorch's generator; cutting them apart would split that lock.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from pwfl import registry
from pwfl.extensions import load_callable
from pwfl.models import build_model

StateDict = dict[str, torch.Tensor]

# PyTorch's default generator is one per process: dropout, augmentation and the
# throw-away initial weights of a model being loaded all draw from it. When
# several clients run as threads of one process (the inline backend) or the
# server evaluates while a client trains beside it, their draws would interleave
# and seeded results would change from run to run. Every function below that
# touches that generator holds this lock; in a Ray actor it is never contended.
_TORCH_RNG = threading.RLock()


def _holding_rng(fn):
    @functools.wraps(fn)
    def locked(*args, **kwargs):
        with _TORCH_RNG:
            return fn(*args, **kwargs)

    return locked


CLIENT_STATES = registry.CLIENT_STATES
"""What a client may keep between its rounds (``train.client_state``); see
:func:`train_keeping`."""


@dataclass(frozen=True)
class ClientData:
    """Examples ``x`` of shape (N, *input_shape), normalised floats, and labels ``y`` (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class TrainSettings:
    """What one client needs to know to train or evaluate a model."""

    model: str = "cnn"
    input_shape: tuple[int, ...] = (1, 28, 28)
    """One example's shape, without the batch dimension."""
    num_classes: int = 10
    local_epochs: float = 1
    """Passes over the data; a fraction runs that share of an epoch's batches
    (load balancing gives slow clients less work)."""
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    augment: bool = False
    seed: int = 0
    """Seeds batch order, dropout and augmentation for this (round, client)."""
    device: str = "cpu"
    num_threads: int = 1
    """Torch intra-op threads: one per client, so concurrent clients share cores."""
    step: str = ""
    """Dotted path of the function that gives each mini-batch's loss (:data:`StepFn`);
    empty: the plain cross-entropy step."""
    step_options: tuple[tuple[str, Any], ...] = ()
    """The step's options as sorted (name, scalar) pairs: a tuple, so that settings
    stay hashable (``flops_per_example`` caches by them)."""


@dataclass(frozen=True)
class StepContext:
    """What a training step sees besides its batch."""

    received: StateDict
    """The weights the client was sent for this job that it trains as sent: its
    parameters only (no running statistics, and in personal mode not the personal layer,
    which the client replaces by its own and never sends back), on the training device;
    a step reads them and leaves them alone."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The step's options by name (the message's ``step.mu`` arrives as ``"mu"``)."""


StepFn = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, StepContext],
    "torch.Tensor | tuple[torch.Tensor, torch.Tensor]",
]
"""A training step: ``step(model, inputs, targets, context) -> loss``, called for every
mini-batch with the model in training mode; the scalar it returns is back-propagated
and its mean over an epoch reported as the client's loss. A step whose objective adds a
term to the task's loss (a proximal term) returns ``(objective, task_loss)``: the
objective is back-propagated, the task's loss reported, the quantity every strategy
reports."""


def cross_entropy_step(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, context: StepContext
) -> torch.Tensor:
    """The default step: the mean cross-entropy of the model's outputs."""
    return nn.functional.cross_entropy(model(inputs), targets)


def load_step(spec: str) -> StepFn:
    """The step function at dotted path ``spec`` (:mod:`pwfl.extensions`)."""
    return load_callable(spec, "train step")


def _stepped(
    step: StepFn, spec: str, model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, ctx: StepContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's objective to back-propagate and the task loss to report."""
    out = step(model, xb, yb, ctx)
    loss, reported = out if isinstance(out, tuple) and len(out) == 2 else (out, out)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0 or not loss.requires_grad:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"train step '{spec}' returned {shape}, not a scalar tensor to back-propagate; "
            "return the batch's loss computed from model(inputs)"
        )
    return loss, reported


def train(
    state: StateDict, data: ClientData, settings: TrainSettings
) -> tuple[StateDict, dict[str, float]]:
    """Train a copy of ``state`` on ``data`` with SGD; return new state and metrics.

    Metrics: ``loss`` (mean over the last epoch), ``first_loss`` (mean over the
    first epoch), ``num_examples`` (the distinct examples the update was
    computed from), ``examples_run`` (the examples of every batch run: the
    modelled clock's work), ``steps`` and ``train_measured_s``, the time this
    host took (:func:`device_timer`).
    """
    new_state, metrics, _ = train_keeping(state, data, settings, "none", {})
    return new_state, metrics


@_holding_rng
def train_keeping(
    state: StateDict, data: ClientData, settings: TrainSettings, keep: str, local: StateDict
) -> tuple[StateDict, dict[str, float], StateDict]:
    """:func:`train` for a client that keeps ``local`` state between its rounds.

    ``keep`` is ``"none"``, ``"momentum"`` (the SGD momentum buffers carry over
    instead of starting at zero every round) or ``"personal"`` (the client's own
    classifier layer replaces the received one before training). ``local`` is
    what this client kept last time (empty on its first round); the third value
    returned is what it keeps now.
    """
    if keep not in CLIENT_STATES:
        raise ValueError(f"unknown client state '{keep}'; choose one of {', '.join(CLIENT_STATES)}")
    if len(data) == 0:
        raise ValueError("cannot train on an empty partition")
    torch.set_num_threads(settings.num_threads)
    clock = device_timer(settings.device)
    start = clock()
    sent = state
    if keep == "personal":
        state = with_personal(state, local)
    model = _model_from_state(state, settings)
    step = load_step(settings.step) if settings.step else None
    if step is not None:
        own = set(personal_keys(model)) if keep == "personal" else set()
        context = StepContext(
            {
                k: sent[k].detach().clone().to(settings.device)
                for k, _ in model.named_parameters()
                if k not in own
            },
            dict(settings.step_options),
        )
    optimiser = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    if keep == "momentum":
        _load_momentum(model, optimiser, local)
    augment = _augmentation(settings) if settings.augment else None
    loss_fn = nn.CrossEntropyLoss()
    epoch_losses = []
    with torch.random.fork_rng(devices=[]):
        # Dropout and augmentation draws. On the CPU only its generator is seeded:
        # torch.manual_seed also queues a seed for each accelerator library not yet
        # started, recording the caller's stack each time (half a millisecond a client).
        if settings.device == "cpu":
            torch.random.default_generator.manual_seed(settings.seed)
        else:
            torch.manual_seed(settings.seed)
        order = torch.Generator().manual_seed(settings.seed)
        model.train()
        steps_per_epoch = math.ceil(len(data) / settings.batch_size)
        budget = step_budget(settings.local_epochs, steps_per_epoch)
        steps_done = examples_run = 0
        while budget > 0:  # one pass per loop, cut short when the step budget ends
            total, seen = 0.0, 0
            for xb, yb in _batches(data, settings.batch_size, order):
                if augment is not None:
                    xb = torch.stack([augment(img) for img in xb])  # per-image draws
                xb, yb = xb.to(settings.device), yb.to(settings.device)
                optimiser.zero_grad()
                if step is None:
                    loss = reported = loss_fn(model(xb), yb)
                else:
                    loss, reported = _stepped(step, settings.step, model, xb, yb, context)
                loss.backward()
                optimiser.step()
                total += float(reported.detach()) * len(yb)
                seen += len(yb)
                budget -= 1
                steps_done += 1
                examples_run += len(yb)
                if budget == 0:
                    break
            epoch_losses.append(total / seen)
    new_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    measured = clock() - start
    metrics = {
        "loss": epoch_losses[-1],
        "first_loss": epoch_losses[0],
        # The examples the update was computed from: a fraction of an epoch's
        # batches weighs only what it saw, more than one epoch no more than once.
        "num_examples": float(min(examples_run, len(data))),
        "examples_run": float(examples_run),
        "steps": float(steps_done),
        "train_measured_s": measured,
    }
    kept: StateDict = {}
    if keep == "momentum":
        kept = _momentum_of(model, optimiser)
    elif keep == "personal":
        kept = {PERSONAL + k: new_state[k] for k in personal_keys(model)}
    return new_state, metrics, kept


def device_timer(device: str) -> Callable[[], float]:
    """A clock for a client's training time on ``device``, read before and after.

    On the CPU: the calling thread's CPU time, which does not count the other
    clients sharing the host. On a CUDA device the work runs asynchronously, so
    the thread's CPU time would miss it: the device is synchronised and the
    host's wall clock read instead.
    """
    if device.startswith("cuda"):

        def synchronised() -> float:
            torch.cuda.synchronize(device)
            return time.perf_counter()

        return synchronised
    return time.thread_time


PERSONAL = "personal."
MOMENTUM = "momentum."


def with_personal(state: StateDict, local: StateDict) -> StateDict:
    """``state`` with the personal layer a client kept (``local``) in place of its own:
    the client's own model, which it trains and evaluates."""
    return {
        **state,
        **{k[len(PERSONAL) :]: v for k, v in local.items() if k.startswith(PERSONAL)},
    }


def personal_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the model's last linear layer (the classifier a client keeps)."""
    last = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][-1]
    return [f"{last}.{p}" for p, _ in model.get_submodule(last).named_parameters()]


def _load_momentum(model: nn.Module, optimiser: torch.optim.Optimizer, local: StateDict) -> None:
    # SGD reads a parameter's buffer from optimiser.state when one is there and
    # starts it from the first gradient otherwise, so a client with nothing kept
    # trains exactly like one that keeps nothing.
    for name, param in model.named_parameters():
        buffer = local.get(MOMENTUM + name)
        if buffer is not None:
            optimiser.state[param]["momentum_buffer"] = buffer.clone().to(param.device)


def _momentum_of(model: nn.Module, optimiser: torch.optim.Optimizer) -> StateDict:
    out = {}
    for name, param in model.named_parameters():
        buffer = optimiser.state.get(param, {}).get("momentum_buffer")
        if buffer is not None:
            out[MOMENTUM + name] = buffer.detach().cpu().clone()
    return out


@_holding_rng
@torch.no_grad()
def evaluate(
    state: StateDict, data: ClientData, settings: TrainSettings, batch_size: int = 512
) -> dict[str, float]:
    """Return ``loss``, ``accuracy`` and ``num_examples`` of ``state`` on ``data``."""
    if len(data) == 0:
        return {"loss": 0.0, "accuracy": 0.0, "num_examples": 0.0}
    torch.set_num_threads(settings.num_threads)
    model = _model_from_state(state, settings)
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        xb = data.x[start : start + batch_size].to(settings.device)
        yb = data.y[start : start + batch_size].to(settings.device)
        logits = model(xb)
        total_loss += float(loss_fn(logits, yb))
        correct += int((logits.argmax(dim=1) == yb).sum())
    n = len(data)
    return {"loss": total_loss / n, "accuracy": correct / n, "num_examples": float(n)}


def warm_up(settings: TrainSettings) -> None:
    """Run one training step of a fresh model on made-up examples and throw it away.

    A process's first forward and backward pass pays one-off costs (allocator,
    autograd and kernel set-up) that would otherwise be counted as the first
    round's compute time on the measured clock.
    """
    batch = settings.batch_size
    generator = torch.Generator().manual_seed(0)
    one_batch = ClientData(
        torch.randn(batch, *settings.input_shape, generator=generator),
        torch.randint(0, settings.num_classes, (batch,), generator=generator),
    )
    state = initial_state(settings, seed=0)
    train(state, one_batch, replace(settings, local_epochs=1, augment=False))


def check_step(settings: TrainSettings) -> None:
    """Run ``settings.step`` on one made-up batch of a fresh model (before any client
    does); raise ValueError, one line, when it does not load or fails."""
    generator = torch.Generator().manual_seed(0)
    batch = ClientData(
        torch.randn(2, *settings.input_shape, generator=generator),
        torch.randint(0, settings.num_classes, (2,), generator=generator),
    )
    load_step(settings.step)
    try:
        train(initial_state(settings, seed=0), batch, replace(settings, augment=False))
    except ValueError:
        raise
    except Exception as err:
        problem = " ".join(str(err).split())
        raise ValueError(
            f"train step '{settings.step}' raised {type(err).__name__} on a made-up batch: "
            f"{problem}"
        ) from err


@functools.lru_cache(maxsize=16)
def flops_per_example(settings: TrainSettings) -> float:
    """Training FLOPs per example of ``settings.model``: one forward and backward pass.

    Counted once per model by PyTorch's ``FlopCounterMode`` on a batch of
    ``settings.batch_size`` inputs. It counts matrix products and convolutions,
    forward and backward; it leaves out normalisation, activations, pooling,
    dropout, the loss and the optimiser step, and no estimate is added for them
    (``make bench`` prints the share they would add).
    """
    from torch.utils.flop_counter import FlopCounterMode

    batch = settings.batch_size
    with _TORCH_RNG, torch.random.fork_rng(devices=[]):
        model = build_model(settings.model, settings.input_shape, settings.num_classes)
        model.train()
        x = torch.zeros(batch, *settings.input_shape)
        y = torch.zeros(batch, dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            nn.functional.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / batch


def statistics_of(settings: TrainSettings) -> frozenset[str]:
    """State-dict names of the model's buffers: running statistics, not parameters."""
    with _TORCH_RNG, torch.random.fork_rng(devices=[]):
        model = build_model(settings.model, settings.input_shape, settings.num_classes)
    return frozenset(name for name, _ in model.named_buffers())


@_holding_rng
def initial_state(settings: TrainSettings, seed: int) -> StateDict:
    """The seeded initial weights every strategy of an experiment starts from."""
    model = build_model(settings.model, settings.input_shape, settings.num_classes, seed=seed)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _model_from_state(state: StateDict, settings: TrainSettings) -> nn.Module:
    # The throw-away initial weights are drawn from a forked generator, so that
    # loading a state leaves the caller's global torch RNG untouched.
    with torch.random.fork_rng(devices=[]):
        model = build_model(settings.model, settings.input_shape, settings.num_classes)
    model.load_state_dict(state)
    return model.to(settings.device)


def step_budget(local_epochs: float, steps_per_epoch: int) -> int:
    """Batches a client runs for ``local_epochs`` (whole batches, at least one).

    Load balancing computes epochs as ratios of times, so a client meant to run
    exactly one epoch can be asked for 1.0000000000000002; rounding the product to
    nine decimals first keeps that float noise from buying a whole extra batch.
    """
    return max(1, math.ceil(round(local_epochs * steps_per_epoch, 9)))


def _batches(data: ClientData, batch_size: int, generator: torch.Generator):
    order = torch.randperm(len(data), generator=generator)
    for start in range(0, len(data), batch_size):
        idx = order[start : start + batch_size]
        yield data.x[idx], data.y[idx]


def _augmentation(settings: TrainSettings):
    # Imported here: torchvision takes seconds to import and most runs do not augment.
    from torchvision.transforms import v2

    # Small rotations keep digits legible; horizontal flips only make sense for
    # natural images (a flipped 2 is not a 2), so they are used on 3-channel data.
    steps = [v2.RandomRotation(10)]
    if settings.input_shape[0] == 3:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps)
