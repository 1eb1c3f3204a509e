"""The recipes in configs/ parse and train: a regression guard for quick.yaml and long.yaml."""

from pathlib import Path

import pytest
import yaml

from petseg.cli import train_main
from petseg.models import ARCHS

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("config", ["quick.yaml", "long.yaml"])
@pytest.mark.parametrize("arch", ARCHS)  # one config for both
def test_recipe_config_parses_and_trains_one_step(arch, config, synthetic_root, tmp_path):
    recipe = yaml.safe_load((CONFIGS / config).read_text())
    argv = [
        "--config", str(CONFIGS / config),
        "--arch", arch,
        "--data.root", str(synthetic_root),
        "--data.cache_dir", str(tmp_path / "cache"),
        "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "1",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--save_dir", str(tmp_path / "saved_models"),
        "--log_dir", str(tmp_path / "logs"),
    ]  # fmt: skip
    assert train_main(argv) == 0
    saved = yaml.safe_load((tmp_path / "logs" / arch / "version_0" / "config.yaml").read_text())
    for section in ("model", "data"):
        for key, value in recipe[section].items():
            assert saved[section][key] == value, (section, key)
    for key in ("precision", "max_time"):
        assert saved["trainer"][key] == recipe["trainer"][key], key
    run = tmp_path / "saved_models" / arch / "version_0"
    assert (run / f"{arch}.pth").is_file()
    assert (run / "test" / "metrics.json").is_file()


def test_long_recipe_is_the_quick_recipe_with_its_budget_changes():
    """The docs describe long.yaml as quick.yaml with three values changed; keep it so."""
    quick = yaml.safe_load((CONFIGS / "quick.yaml").read_text())
    long = yaml.safe_load((CONFIGS / "long.yaml").read_text())
    changes = {
        ("trainer", "max_time"): "00:00:44:00",
        ("data", "image_size"): 256,
        ("data", "augment"): "strong",
    }
    for (section, key), value in changes.items():
        assert long[section][key] == value, (section, key)
        quick[section][key] = value
    assert long == quick
