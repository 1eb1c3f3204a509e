"""Bad data and faults: clear errors naming files, skipping on request, resume, reproducibility."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import RUN, train_args
from petseg.cli import train_main
from petseg.data import OxfordPetDataset, PetDataModule
from petseg.errors import PetsegError
from petseg.module import SegmentationModule
from petseg.tensorboard import EPOCH_TAG, epoch_curves, event_files, read_hparams, read_scalars

BIN = Path(sys.executable).parent


@pytest.fixture
def data_copy(synthetic_root, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    return root


def _train_names(root: Path) -> list[str]:
    return OxfordPetDataset(root, "train").names


def test_missing_files_stop_with_the_list_or_are_skipped(data_copy):
    names = _train_names(data_copy)
    for name in names[:12]:
        (data_copy / "images" / f"{name}.jpg").unlink()
    with pytest.raises(PetsegError) as err:
        OxfordPetDataset(data_copy, "train")
    message = str(err.value)
    assert "12 of 36 train images or trimaps" in message and "and 2 more" in message
    assert names[0] in message and "--data.skip_missing true" in message
    with pytest.warns(UserWarning, match="skipping 12 train entries"):
        ds = OxfordPetDataset(data_copy, "train", skip_missing=True)
    assert len(ds) == 24


@pytest.mark.parametrize("fault", ["truncated", "size", "values", "not_an_image"])
def test_broken_files_fail_at_setup_naming_the_file(data_copy, fault):
    name = _train_names(data_copy)[3]
    image = data_copy / "images" / f"{name}.jpg"
    trimap = data_copy / "annotations" / "trimaps" / f"{name}.png"
    if fault == "truncated":
        image.write_bytes(image.read_bytes()[:600])
    elif fault == "size":
        Image.new("L", (9, 7), 2).save(trimap)
    elif fault == "values":
        Image.fromarray(np.full((20, 20), 7, np.uint8)).save(trimap)
        Image.new("RGB", (20, 20)).save(image, format="JPEG")
    else:
        image.write_text("<html>not found</html>")
    dm = PetDataModule(str(data_copy), image_size=32, num_workers=0, download=False)
    with pytest.raises(PetsegError, match=rf"1 bad train file\(s\): .*{name}"):
        dm.setup("fit")
    dm = PetDataModule(str(data_copy), 32, num_workers=0, download=False, skip_missing=True)
    with pytest.warns(UserWarning, match="skipping 1 unreadable train"):
        dm.setup("fit")
    assert name not in dm.datasets["train"].names and len(dm.datasets["train"]) == 35


def test_stray_non_image_files_are_ignored(data_copy):
    (data_copy / "images" / "Synthetic_1.mat").write_bytes(os.urandom(64))
    (data_copy / "images" / "README").write_text("stray")
    dm = PetDataModule(str(data_copy), image_size=32, num_workers=0, download=False)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 36


def test_truncated_and_foreign_checkpoints_are_one_line(trained, tmp_path, capsys):
    last = trained[0] / RUN / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert train_main(["--ckpt_path", str(truncated), "--trainer.accelerator", "cpu"]) == 2
    assert f"cannot read checkpoint {truncated}" in capsys.readouterr().err
    argv = ["--arch", "unet", "--ckpt_path", str(last), "--trainer.accelerator", "cpu"]
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert "is a resnet34_unet checkpoint but --arch is unet" in err and err.count("\n") == 1


def test_image_sizes_not_divisible_by_32_are_padded_inside_the_models(synthetic_root):
    dm = PetDataModule(str(synthetic_root), image_size=72, batch_size=2, num_workers=0)
    dm.setup("validate")
    images, _ = next(iter(dm.val_dataloader()))
    for arch in ("unet", "resnet34_unet"):
        module = SegmentationModule(arch, base_channels=8)
        assert module(images).shape == (2, 1, 72, 72)
    with pytest.raises(PetsegError, match=r"--data.image_size 16 is out of range .*v>=32"):
        PetDataModule(str(synthetic_root), image_size=16)


class NanLoss(torch.nn.Module):
    def forward(self, logits, target):
        return logits.mean() * float("nan")


def test_non_finite_loss_stops_naming_the_step(synthetic_root):
    module = SegmentationModule("unet", base_channels=8)
    module.criterion = NanLoss()
    dm = PetDataModule(str(synthetic_root), image_size=32, batch_size=4, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, num_sanity_val_steps=0)  # fmt: skip
    with pytest.raises(PetsegError, match=r"NaN or infinite at global step 0 \(epoch 0\)"):
        trainer.fit(module, datamodule=dm)


def _curves(log_dir: Path, arch: str = "resnet34_unet") -> dict:
    runs = sorted((log_dir / arch).iterdir())
    return epoch_curves(runs[-1])


def _data_path(cache: bool, tmp_path: Path) -> list[str]:
    """The standard path, or the cached one with its files under tmp_path."""
    if not cache:
        return []
    return ["--data.cache", "true", "--data.cache_dir", str(tmp_path / "cache")]


@pytest.mark.parametrize("cache", [False, True], ids=["standard", "cached"])
def test_same_seed_gives_identical_metrics(synthetic_root, tmp_path, cache):
    for name in ("a", "b"):
        argv = train_args(synthetic_root, tmp_path / name, "--trainer.max_epochs", "2",
                          "--data.augment", "strong", "--seed_everything", "7",
                          *_data_path(cache, tmp_path))  # fmt: skip
        assert train_main(argv) == 0
    a, b = _curves(tmp_path / "a" / "logs"), _curves(tmp_path / "b" / "logs")
    for tag in ("train/loss", "train/dice", "val/loss", "val/dice"):
        assert a[tag] == b[tag], tag


def _checkpoint_epoch(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


@pytest.mark.slow
@pytest.mark.parametrize("cache", [False, True], ids=["standard", "cached"])
def test_resume_after_sigkill_matches_an_uninterrupted_run(synthetic_root, tmp_path, cache):
    epochs = "8"
    data = _data_path(cache, tmp_path)
    argv = train_args(synthetic_root, tmp_path / "killed", "--trainer.max_epochs", epochs, *data)
    proc = subprocess.Popen([BIN / "petseg-train", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    last = tmp_path / "killed" / RUN / "last.ckpt"
    writes, seen = 0, None
    deadline = time.monotonic() + 120
    while writes < 2 and proc.poll() is None and time.monotonic() < deadline:
        stamp = last.stat().st_mtime_ns if last.exists() else None
        if stamp != seen and stamp is not None:
            writes, seen = writes + 1, stamp
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    ckpts = sorted(last.parent.glob("*.ckpt"))
    killed_at = [_checkpoint_epoch(p) for p in ckpts]  # every file left behind loads
    assert max(killed_at) < int(epochs) - 1

    resumed = train_args(synthetic_root, tmp_path / "killed", "--trainer.max_epochs", epochs,
                         "--ckpt_path", "last", *data)  # fmt: skip
    assert train_main(resumed) == 0
    whole = train_args(synthetic_root, tmp_path / "whole", "--trainer.max_epochs", epochs, *data)
    assert train_main(whole) == 0
    after, whole = _curves(tmp_path / "killed" / "logs"), _curves(tmp_path / "whole" / "logs")
    for tag in ("train/loss", "val/loss", "val/dice"):
        assert after[tag][-1][0] == whole[tag][-1][0], tag  # same epoch
        assert after[tag][-1][1] == pytest.approx(whole[tag][-1][1], abs=1e-5), tag
    scores = [read_hparams(next((d / "logs" / "resnet34_unet").iterdir()))["best_test_dice"]
              for d in (tmp_path / "killed", tmp_path / "whole")]  # fmt: skip
    assert scores[0] == pytest.approx(scores[1], abs=1e-5)
    # ... because it continued: the same run folder, its second event file starting at the
    # epoch after the last checkpoint, and the weights of the uninterrupted run at the end
    (run,) = (tmp_path / "killed" / "logs" / "resnet34_unet").iterdir()
    later = [read_scalars(f).get(EPOCH_TAG, []) for f in event_files(run)[1:]]  # the resume's
    resumed_epochs = [int(v) for points in later for _, v in points]
    assert min(resumed_epochs) == max(killed_at) + 1
    weights = [torch.load(d / RUN / "last.ckpt", weights_only=True)["state_dict"]
               for d in (tmp_path / "killed", tmp_path / "whole")]  # fmt: skip
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], msg=key)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_reduces_val_dice_like_one(synthetic_root, tmp_path):
    argv = train_args(synthetic_root, tmp_path, "--trainer.max_epochs", "1",
                      "--trainer.strategy", "ddp", "--trainer.devices", "2")  # fmt: skip
    done = subprocess.run([BIN / "petseg-train", *argv], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("best checkpoint") == 1  # only rank 0 reports
    ddp_val = _curves(tmp_path / "logs")["val/dice"]
    assert [epoch for epoch, _ in ddp_val] == [0]
    assert [p.name for p in (tmp_path / "saved_models" / "resnet34_unet").iterdir()] == [
        "version_0"
    ]  # one run folder, shared by both processes
    last = tmp_path / RUN / "last.ckpt"
    module = SegmentationModule.load_from_checkpoint(last, map_location="cpu", weights_only=True)
    dm = PetDataModule(str(synthetic_root), image_size=64, batch_size=8, num_workers=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    (single,) = trainer.validate(module, datamodule=dm, verbose=False)
    assert single["val/dice"] == pytest.approx(ddp_val[0][1], abs=1e-6)


def test_a_bad_test_file_stops_training_before_the_fit_or_is_skipped(data_copy, tmp_path, capsys):
    name = OxfordPetDataset(data_copy, "test").names[2]
    trimap = data_copy / "annotations" / "trimaps" / f"{name}.png"
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(trimap)  # a 0/255 mask, not a trimap
    Image.new("RGB", (20, 20)).save(data_copy / "images" / f"{name}.jpg", format="JPEG")
    argv = train_args(data_copy, tmp_path, "--arch", "unet", "--trainer.max_epochs", "1")
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    assert "1 bad test file(s)" in err and name in err and err.count("\n") == 1
    assert not list((tmp_path / "saved_models").rglob("*.ckpt"))  # stopped before any epoch
    with pytest.warns(UserWarning, match="skipping 1 unreadable test"):
        assert train_main([*argv, "--data.skip_missing", "true"]) == 0
    assert "test images        19" in capsys.readouterr().out
