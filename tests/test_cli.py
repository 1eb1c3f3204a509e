"""End to end, in-process: petseg-train on synthetic data, then petseg-test on its checkpoint."""

import shutil

import pytest
import torch

from conftest import train_args
from petseg.cli import test_main as petseg_test
from petseg.cli import train_main
from petseg.models import build_model
from petseg.tensorboard import epoch_curves


def test_train_leaves_checkpoints_pth_and_prints_results(trained):
    out, stdout = trained
    ckpts = sorted((out / "saved_models" / "resnet34_unet").glob("*.ckpt"))
    names = [c.name for c in ckpts]
    assert "last.ckpt" in names and any(n.startswith("epoch") for n in names)
    assert "best checkpoint" in stdout and "test/dice" in stdout
    best = next(line.split()[-1] for line in stdout.splitlines() if line.startswith("best check"))
    assert best.endswith(".ckpt") and "dice" in best
    state = torch.load(out / "saved_models" / "resnet34_unet.pth", weights_only=True)
    build_model("resnet34_unet", base_channels=8).load_state_dict(state)  # a plain state dict


def test_tensorboard_has_one_value_per_epoch(trained):
    out, _ = trained
    (run,) = (out / "logs" / "resnet34_unet").iterdir()
    curves = epoch_curves(run)
    for tag in ("train/loss", "train/dice", "val/loss", "val/dice"):
        assert [epoch for epoch, _ in curves[tag]] == [0, 1], tag
    assert len(curves["test/dice"]) == 1 and 0 <= curves["test/iou"][0][1] <= 1


def test_petseg_test_prints_dice_from_checkpoint_alone(trained, synthetic_root, capsys):
    out, _ = trained
    ckpt = out / "saved_models" / "resnet34_unet" / "last.ckpt"
    code = petseg_test(["--ckpt", str(ckpt), "--data.root", str(synthetic_root),
                      "--data.num_workers", "0", "--device", "cpu"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    values = {line.split()[0]: line.split()[1] for line in stdout.splitlines() if "/" in line[:6]}
    assert 0.0 <= float(values["test/dice"]) <= 1.0 and 0.0 <= float(values["test/iou"]) <= 1.0
    assert "64px" in stdout  # the image size came from the checkpoint
    assert "test images        20" in stdout


def test_resume_from_last_continues_the_run(trained, synthetic_root, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)  # the shared run stays as it was
    extra = ("--arch", "resnet34_unet", "--trainer.max_epochs", "3", "--ckpt_path", "last")
    code = train_main(train_args(synthetic_root, out, *extra))
    assert code == 0
    last = torch.load(out / "saved_models" / "resnet34_unet" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["hyper_parameters"]["arch"] == "resnet34_unet"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--arch", "segformer"], 'Parser key "arch"'),
        (["--data.root", "/no/root", "--data.download", "false"], "data root /no/root lacks"),
        (["--ckpt_path", "/no/such.ckpt"], "checkpoint not found: /no/such.ckpt"),
    ],
)
def test_train_bad_input_is_one_line(argv, message, tmp_path, capsys):
    code = train_main(["--trainer.accelerator", "cpu", "--save_dir", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("petseg-train: error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)


def test_test_bad_checkpoints_are_one_line(tmp_path, capsys):
    assert petseg_test(["--ckpt", str(tmp_path / "missing.ckpt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert petseg_test(["--ckpt", str(junk)]) == 2
    assert f"cannot read checkpoint {junk}" in capsys.readouterr().err
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    assert petseg_test(["--ckpt", str(foreign)]) == 2
    assert "is not a petseg checkpoint" in capsys.readouterr().err


def test_help_lists_every_option(capsys):
    for main, options in [
        (train_main, ["--arch", "--data.root", "--model.loss", "--trainer.max_epochs", "--config"]),
        (
            petseg_test,
            [
                "--ckpt",
                "--data.root",
                "--data.image_size",
                "--device",
                "--output",
                "--tta",
                "--full-res",
            ],
        ),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert all(option in text for option in options)
