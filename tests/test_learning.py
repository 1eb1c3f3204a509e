"""A real learning test: a reduced-width UNet learns the synthetic task on CPU."""

import pytest

from conftest import train_args
from petseg.cli import train_main
from petseg.data.synthetic import make_synthetic_dataset
from petseg.tensorboard import epoch_curves


@pytest.mark.slow
def test_small_unet_reaches_val_dice_090_on_synthetic_data(tmp_path):
    root = make_synthetic_dataset(tmp_path / "data", n_trainval=120, n_test=10, seed=1)
    argv = train_args(root, tmp_path, "--arch", "unet", "--trainer.max_epochs", "8",
                      "--model.lr", "3e-3", "--seed_everything", "0")  # fmt: skip
    assert train_main(argv) == 0
    (run,) = (tmp_path / "logs" / "unet").iterdir()
    val_dice = [value for _, value in epoch_curves(run)["val/dice"]]
    assert len(val_dice) == 8
    assert max(val_dice) >= 0.90, val_dice
    assert val_dice[-1] > val_dice[0]
