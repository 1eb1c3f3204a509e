"""Optimizers and learning-rate schedules by name, and the one-cycle schedule that also follows
a wall-time budget (``--trainer.max_time``). The LightningModule asks here for both."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_warn
from torch.optim.lr_scheduler import OneCycleLR

from petseg.errors import PetsegError

OptimizerName = Literal["adamw", "adam", "radam", "sgd"]
SchedulerName = Literal["cosine", "onecycle", "exponential", "none"]
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "radam": torch.optim.RAdam,
    "sgd": torch.optim.SGD,
}
assert set(OPTIMIZERS) == set(get_args(OptimizerName))  # one list of names, checked here
# One-cycle steps when only --trainer.max_time bounds the run: the time budget sets the pace.
UNBOUNDED_STEPS = 1_000_000


def build_optimizer(
    name: OptimizerName,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (SGD with Nesterov momentum when ``momentum`` > 0)."""
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
    if name == "sgd":
        kwargs.update(momentum=momentum, nesterov=momentum > 0)
    return OPTIMIZERS[name](params, **kwargs)


def lr_scheduler_config(
    name: SchedulerName,
    optimizer: torch.optim.Optimizer,
    trainer: L.Trainer,
    max_lr: float,
    gamma: float = 0.95,
) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` entry for the schedule ``name`` over ``trainer``'s run.

    ``cosine`` and ``onecycle`` step per optimizer step over the run's length
    (``trainer.estimated_stepping_batches``); ``onecycle`` also keeps pace with
    ``--trainer.max_time``, which alone may bound it. ``exponential`` steps once per epoch;
    ``none`` returns None (a constant rate).
    """
    if name == "none":
        return None
    if name == "exponential":
        return {"scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)}
    budget_spent = time_budget_spent(trainer)
    steps = trainer.estimated_stepping_batches
    if math.isinf(steps) and not (name == "onecycle" and budget_spent):
        raise PetsegError(
            f"--model.scheduler {name} needs a length: set --trainer.max_epochs or "
            "--trainer.max_steps (or use --model.scheduler onecycle with --trainer.max_time)"
        )
    if budget_spent is not None and name == "cosine":
        rank_zero_warn(
            "--trainer.max_time stops the cosine schedule wherever the time runs out; "
            "--model.scheduler onecycle follows the time budget to the end of its cycle"
        )
    steps = UNBOUNDED_STEPS if math.isinf(steps) else max(1, int(steps))
    if name == "onecycle":
        scheduler = BudgetedOneCycleLR(optimizer, max_lr, steps, budget_spent)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return {"scheduler": scheduler, "interval": "step"}


def time_budget_spent(trainer: L.Trainer) -> Callable[[], float] | None:
    """With ``--trainer.max_time``, a function returning the fraction of it spent so far."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is None or timer.time_remaining() is None:
        return None

    def spent() -> float:
        elapsed, remaining = timer.time_elapsed(), timer.time_remaining()
        return min(1.0, elapsed / max(elapsed + remaining, 1e-9))

    return spent


class BudgetedOneCycleLR(OneCycleLR):
    """torch's ``OneCycleLR`` (warm-up, then cosine annealing; momentum or Adam's beta1 cycled
    the other way) that keeps pace with a wall-time budget as well as with its steps.

    At each step its position in the cycle is the larger of the steps taken and the fraction of
    the budget spent, times ``total_steps``. A run stopped by ``--trainer.max_time`` therefore
    ends at the bottom of the cycle rather than at a high learning rate halfway up it; with no
    budget (``budget_spent`` None) it is ``OneCycleLR`` step for step.

    Args:
        optimizer: The optimizer whose learning rate (and momentum) it sets.
        max_lr: The peak learning rate.
        total_steps: Steps in the cycle when the budget does not run out first.
        budget_spent: Returns the fraction of the time budget spent so far (0 to 1).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_lr: float,
        total_steps: int,
        budget_spent: Callable[[], float] | None = None,
    ) -> None:
        self.budget_spent = budget_spent  # before OneCycleLR's __init__, which calls get_lr
        super().__init__(optimizer, max_lr, total_steps=total_steps)

    def get_lr(self) -> list[float]:
        if self.budget_spent is not None:
            # The cycle's last step is total_steps - 1; past it OneCycleLR rises again (and
            # refuses to go beyond total_steps), so a spent budget stays at its end.
            by_time = min(int(self.budget_spent() * self.total_steps), self.total_steps - 1)
            self.last_epoch = min(self.total_steps, max(self.last_epoch, by_time))
        return super().get_lr()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.pop("budget_spent", None)  # a function: checkpoints hold plain values only
        return state
