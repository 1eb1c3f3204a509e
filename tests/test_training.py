"""Training as a function: ``petseg.train`` is what ``petseg-train`` runs, from Python."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

import petseg
from conftest import train_args
from petseg.tensorboard import epoch_curves
from petseg.training import as_arguments

SRC = Path(petseg.__file__).parent


class EpochCounter(Callback):
    def __init__(self) -> None:
        self.epochs = 0

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.epochs += 1


def test_train_returns_the_run_and_its_scores(synthetic_root, tmp_path, capsys):
    counter = EpochCounter()
    argv = train_args(synthetic_root, tmp_path, "--arch", "unet", "--trainer.max_epochs", "2")
    result = petseg.train(argv, callbacks=[counter])
    assert counter.epochs == 2  # extra callbacks run
    assert result.run.ckpt_dir == tmp_path / "saved_models" / "unet" / "version_0"
    assert result.run.log_dir == tmp_path / "logs" / "unet" / "version_0"
    assert result.best_checkpoint.parent == result.run.ckpt_dir
    assert result.weights == result.run.ckpt_dir / "unet.pth" and result.weights.is_file()
    logged = [v for _, v in epoch_curves(result.run.log_dir)["val/dice"]]
    assert result.val_dice == pytest.approx(logged)
    assert result.best_val_dice == pytest.approx(max(logged))
    assert result.best_epoch == logged.index(max(logged))
    report = json.loads((result.run.ckpt_dir / "test" / "metrics.json").read_text())
    assert result.test["dice"] == pytest.approx(report["dice"])
    assert f"test/dice          {report['dice']:.4f}" in capsys.readouterr().out


def test_train_takes_a_mapping_like_the_command_line(synthetic_root, tmp_path):
    argv = train_args(synthetic_root, tmp_path, "--arch", "unet", "--trainer.max_epochs", "1")
    options = dict(zip((a.removeprefix("--") for a in argv[::2]), argv[1::2], strict=True))
    options["data.num_workers"] = 0
    options["trainer"] = {"limit_train_batches": 2, "enable_progress_bar": False}
    result = petseg.train(options, test=False)
    assert result.test == {} and not (result.run.ckpt_dir / "test").exists()
    assert result.best_checkpoint is not None and len(result.val_dice) == 1


def test_as_arguments_writes_yaml_values():
    assert as_arguments({"arch": "unet", "model": {"lr": 0.01, "bilinear": True}}) == [
        "--arch=unet",
        "--model.lr=0.01",
        "--model.bilinear=true",
    ]
    assert as_arguments({"trainer.max_time": None}) == ["--trainer.max_time=null"]


def test_bad_options_raise_before_a_run_folder_is_made(synthetic_root, tmp_path):
    from jsonargparse import ArgumentError

    with pytest.raises(ArgumentError):
        petseg.train(train_args(synthetic_root, tmp_path, "--model.no_such_option", "1"))
    assert not (tmp_path / "saved_models").exists()


def test_no_module_outside_cli_imports_cli():
    importers = []
    for path in SRC.rglob("*.py"):
        if path.parent.name == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if any(n == "petseg.cli" or n.startswith("petseg.cli.") for n in names):
                importers.append(str(path.relative_to(SRC)))
    assert importers == []
