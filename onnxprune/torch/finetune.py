"""A plain retraining loop with a per-epoch learning-rate schedule, reported the fair way.

Wang et al. ("Why is the State of Neural Network Pruning so Confusing?", arXiv 2301.05219)
show that a larger retraining learning rate looks better only because pruning damages
trainability: comparisons must hold the base model and the whole retraining schedule fixed, and
report it. So the result records the full schedule and optimizer settings next to the history,
and the "trainability accuracy": the validation accuracy averaged over the epochs of the first
learning-rate stage.

The loop is optional: masks applied with ``apply_masks`` hold in any training loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from numbers import Integral, Real

import torch
from torch import nn

from onnxprune import progress
from onnxprune.errors import InvalidOptionError

logger = logging.getLogger(__name__)

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One epoch: its index, learning rate, mean training loss, and validation accuracy."""

    epoch: int
    lr: float
    train_loss: float
    val_accuracy: float

    def to_dict(self) -> dict:
        """Plain-data form for JSON."""
        return {
            "epoch": self.epoch,
            "lr": self.lr,
            "train_loss": self.train_loss,
            "val_accuracy": self.val_accuracy,
        }


@dataclass(frozen=True, slots=True)
class FinetuneResult:
    """The history of a ``finetune`` run and everything needed to repeat it.

    Attributes:
        history: one record per epoch.
        schedule: ``(first epoch, learning rate)`` of every stage, in order.
        epochs: number of epochs.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        nesterov: whether Nesterov momentum was used.
        initial_accuracy: validation accuracy before the first epoch.
    """

    history: tuple[EpochRecord, ...]
    schedule: tuple[tuple[int, float], ...]
    epochs: int
    momentum: float
    weight_decay: float
    nesterov: bool
    initial_accuracy: float

    @property
    def trainability_accuracy(self) -> float:
        """Mean validation accuracy over the first learning-rate stage (Wang et al.)."""
        end = self.schedule[1][0] if len(self.schedule) > 1 else self.epochs
        first = [r.val_accuracy for r in self.history if r.epoch < end]
        return sum(first) / len(first)

    @property
    def final_accuracy(self) -> float:
        """Validation accuracy after the last epoch."""
        return self.history[-1].val_accuracy

    def to_dict(self) -> dict:
        """Plain-data form for JSON, with the derived accuracies."""
        return {
            "optimizer": "SGD",
            "schedule": {str(e): lr for e, lr in self.schedule},
            "epochs": self.epochs,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "nesterov": self.nesterov,
            "initial_accuracy": self.initial_accuracy,
            "trainability_accuracy": self.trainability_accuracy,
            "final_accuracy": self.final_accuracy,
            "history": [r.to_dict() for r in self.history],
        }


def finetune(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    schedule: Mapping[int, float],
    epochs: int,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
    loss_fn: Loss | None = None,
) -> FinetuneResult:
    """Retrain ``model`` with SGD and a per-epoch learning-rate schedule.

    Batches are ``(inputs, labels)`` pairs (``inputs`` may be a tuple of tensors) and are moved
    to the device of the model's parameters. Validation accuracy is top-1: the argmax of the
    model's output against the labels. The model is left in the mode it came in.

    Args:
        model: the model (trained in place); masks from ``apply_masks`` hold throughout.
        train_loader: iterable of training batches, iterated once per epoch.
        val_loader: iterable of validation batches.
        schedule: ``{first epoch: learning rate}`` per stage; must contain epoch 0, e.g.
            ``{0: 1e-2, 3: 1e-3}``.
        epochs: number of epochs.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (L2).
        nesterov: use Nesterov momentum.
        loss_fn: ``loss_fn(outputs, labels)``; default cross-entropy.

    Returns:
        A ``FinetuneResult`` (history, schedule, trainability accuracy).

    Raises:
        InvalidOptionError: a schedule without epoch 0, a stage at or after ``epochs``, a
            learning rate that is not positive, or ``epochs`` < 1.

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> data = [(x, y)]
        >>> net = torch.nn.Linear(4, 2)
        >>> result = finetune(net, data, data, schedule={0: 0.1, 2: 0.01}, epochs=3)
        >>> [r.lr for r in result.history]
        [0.1, 0.1, 0.01]
    """
    stages = check_schedule(schedule, epochs)
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = _device(model)
    was_training = model.training
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=stages[0][1],
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
    )
    try:
        initial = evaluate(model, val_loader)
        history = []
        for epoch in range(epochs):
            lr = learning_rate(stages, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = _train_epoch(model, train_loader, optimizer, loss_fn, device)
            record = EpochRecord(epoch, lr, loss, evaluate(model, val_loader))
            logger.info("epoch %d lr %g loss %.4f val %.4f", epoch, lr, loss, record.val_accuracy)
            history.append(record)
            progress.report(
                "finetune", epoch + 1, epochs, f"loss {loss:.4f}, val {record.val_accuracy:.4f}"
            )
    finally:
        model.train(was_training)
    return FinetuneResult(tuple(history), stages, epochs, momentum, weight_decay, nesterov, initial)


def evaluate(model: nn.Module, loader: Iterable) -> float:
    """Top-1 accuracy of ``model`` on ``(inputs, labels)`` batches, in eval mode, no gradients.

    The model is left in the mode it came in.
    """
    device = _device(model)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    try:
        with torch.no_grad():
            for inputs, labels in _batches(loader, device):
                out = _forward(model, inputs)
                correct += (out.argmax(dim=1) == labels).sum()
                total += labels.shape[0]
    finally:
        model.train(was_training)
    if total == 0:
        raise InvalidOptionError("the validation loader gave no samples")
    return int(correct.item()) / total


def check_schedule(schedule: Mapping[int, float], epochs: int) -> tuple[tuple[int, float], ...]:
    """``schedule`` as sorted ``(first epoch, lr)`` stages, checked against ``epochs``."""
    if isinstance(epochs, bool) or not isinstance(epochs, Integral) or epochs < 1:
        raise InvalidOptionError(f"epochs={epochs!r} must be an integer >= 1")
    stages = []
    for start, lr in schedule.items():
        if isinstance(start, bool) or not isinstance(start, Integral) or not 0 <= start < epochs:
            raise InvalidOptionError(
                f"schedule epoch {start!r} must be an integer in [0, {epochs}) (epochs={epochs})"
            )
        if isinstance(lr, bool) or not isinstance(lr, Real) or not (math.isfinite(lr) and lr > 0):
            raise InvalidOptionError(f"schedule learning rate {lr!r} must be a number > 0")
        stages.append((int(start), float(lr)))
    stages.sort()
    if not stages or stages[0][0] != 0:
        raise InvalidOptionError(
            f"schedule {dict(schedule)!r} must give the learning rate of epoch 0"
        )
    return tuple(stages)


def learning_rate(stages: tuple[tuple[int, float], ...], epoch: int) -> float:
    """The learning rate of ``epoch``: that of the last stage starting at or before it."""
    return [lr for start, lr in stages if start <= epoch][-1]


def _train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Loss,
    device: torch.device,
) -> float:
    model.train()
    total = torch.zeros((), dtype=torch.float32, device=device)  # (MPS has no float64)
    samples = 0
    for inputs, labels in _batches(loader, device):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(_forward(model, inputs), labels)
        loss.backward()
        optimizer.step()
        total += loss.detach().float() * labels.shape[0]
        samples += labels.shape[0]
    if samples == 0:
        raise InvalidOptionError("the training loader gave no samples")
    return float(total.item()) / samples


def _batches(loader: Iterable, device: torch.device):
    for batch in loader:
        inputs, labels = batch[0], batch[1]
        if isinstance(inputs, (tuple, list)):
            inputs = tuple(t.to(device) for t in inputs)
        else:
            inputs = inputs.to(device)
        yield inputs, labels.to(device)


def _forward(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
