import io

import pytest
import torch

from petseg.optim import BudgetedOneCycleLR


def _optimizer():
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)


def _trace(scheduler, optimizer, steps):
    group = optimizer.param_groups[0]
    points = []
    for _ in range(steps):
        points.append((group["lr"], group["betas"][0]))
        optimizer.step()
        scheduler.step()
    return points


def test_without_a_budget_it_is_torchs_one_cycle_step_for_step():
    opt_a, opt_b = _optimizer(), _optimizer()
    ours = BudgetedOneCycleLR(opt_a, 1e-3, total_steps=50)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt_b, 1e-3, total_steps=50)
    assert _trace(ours, opt_a, 50) == _trace(ref, opt_b, 50)


def test_the_cycle_keeps_pace_with_the_time_budget():
    spent = [0.0]
    opt = _optimizer()
    scheduler = BudgetedOneCycleLR(opt, 1e-3, total_steps=1000, budget_spent=lambda: spent[0])
    opt.step()
    scheduler.step()
    assert scheduler.last_epoch == 1  # the budget is untouched: the steps set the pace
    spent[0] = 0.3  # the time runs out faster than the steps: jump to 30 % of the cycle
    opt.step()
    scheduler.step()
    assert scheduler.last_epoch == 300
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3, rel=1e-4)  # the peak (pct_start 0.3)
    spent[0] = 1.0  # budget spent: the bottom of the cycle
    opt.step()
    scheduler.step()
    assert scheduler.last_epoch == 999
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 25 / 1e4)
    for _ in range(3):  # steps taken after that never go past the end (OneCycleLR would raise)
        opt.step()
        scheduler.step()
    assert scheduler.last_epoch == 1000


def test_its_state_is_plain_values_that_load_safely():
    opt = _optimizer()
    scheduler = BudgetedOneCycleLR(opt, 1e-3, total_steps=10, budget_spent=lambda: 0.5)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert "budget_spent" not in state and state["last_epoch"] == 5
    fresh = BudgetedOneCycleLR(_optimizer(), 1e-3, total_steps=10, budget_spent=lambda: 0.0)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 5 and fresh.budget_spent() == 0.0  # the function is kept


def test_a_time_budget_ends_the_run_at_the_bottom_of_the_cycle(synthetic_root, tmp_path):
    from conftest import train_args
    from petseg.checkpoints import read_file
    from petseg.cli import train_main

    extra = ("--arch", "unet", "--model.scheduler", "onecycle",
             "--trainer.max_epochs", "1000", "--trainer.max_time", "00:00:00:03")  # fmt: skip
    assert train_main(train_args(synthetic_root, tmp_path, *extra)) == 0
    last = read_file(tmp_path / "saved_models" / "unet" / "version_0" / "last.ckpt")
    scheduler = last["lr_schedulers"][0]
    assert last["epoch"] < 999  # stopped by the time, long before max_epochs
    assert scheduler["last_epoch"] >= scheduler["total_steps"] - 1  # ... at the cycle's end
    assert scheduler["_last_lr"][0] < 1e-3 / 25 / 1e3
