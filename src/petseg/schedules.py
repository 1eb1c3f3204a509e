"""Learning-rate schedules that also follow a wall-time budget (``--trainer.max_time``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import OneCycleLR


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
