"""End to end, in-process: petseg-train on synthetic data, its run folders, resuming, and
petseg-test on its checkpoint through the same code path."""

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import RUN, train_args
from petseg.checkpoints import load_model
from petseg.cli import test_main as petseg_test
from petseg.cli import train_main
from petseg.errors import PetsegError
from petseg.models import build_model
from petseg.tensorboard import EPOCH_TAG, epoch_curves, event_files, read_hparams, read_scalars

BIN = Path(sys.executable).parent


def test_train_writes_one_run_folder_and_prints_a_summary(trained):
    out, stdout = trained
    run = out / RUN
    names = sorted(p.name for p in run.iterdir())
    assert "last.ckpt" in names and "resnet34_unet.pth" in names and "test" in names
    assert any(n.startswith("epoch") and n.endswith(".ckpt") for n in names)
    assert (out / "logs" / "resnet34_unet" / "version_0" / "config.yaml").is_file()
    lines = stdout.splitlines()
    assert lines[0].startswith("training resnet34_unet (") and "train 36 / valid 4" in lines[0]
    assert str(run) in lines[0] and "32-true on cpu" in lines[0]
    assert any(line.startswith("best epoch ") for line in lines)
    best = next(line.split()[2] for line in lines if line.startswith("best checkpoint"))
    assert best == str(run / "best.ckpt")
    assert f"test it            petseg-test --ckpt {run / 'best.ckpt'}" in lines
    assert f"see the curves     tensorboard --logdir {out / 'logs'}" in lines


def test_a_plain_run_prints_only_what_matters(synthetic_root, tmp_path):
    extra = ("--trainer.max_epochs", "1", "--data.image_size", "32")
    done = subprocess.run(
        [str(BIN / "petseg-train"), *train_args(synthetic_root, tmp_path, *extra)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    for noise in ("litlogger", "LeafSpec", "log_every_n_steps", "Restoring states", "Seed set"):
        assert noise not in printed, noise
    lines = [line for line in printed.splitlines() if line.strip()]
    assert lines[0].startswith("training resnet34_unet") and len(lines) <= 14, printed


def test_pth_describes_itself(trained):
    out, _ = trained
    payload = torch.load(out / RUN / "resnet34_unet.pth", weights_only=True)
    assert payload["arch"] == "resnet34_unet" and payload["image_size"] == 64
    assert payload["model_options"] == {"base_channels": 8, "bilinear": False}
    assert payload["threshold"] == 0.5
    model = build_model(payload["arch"], **payload["model_options"])
    model.load_state_dict(payload["state_dict"])  # rebuilt without knowing the width
    loaded, spec = load_model(out / RUN / "resnet34_unet.pth")
    assert spec.model_options["base_channels"] == 8
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_a_second_run_gets_its_own_folders(trained, synthetic_root, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    before = {p: p.read_bytes() for p in (out / RUN).rglob("*") if p.is_file()}
    extra = ("--arch", "resnet34_unet", "--trainer.max_epochs", "1")
    assert train_main(train_args(synthetic_root, out, *extra)) == 0
    second = out / "saved_models" / "resnet34_unet" / "version_1"
    assert (second / "resnet34_unet.pth").is_file()
    assert (out / "logs" / "resnet34_unet" / "version_1").is_dir()
    assert {p: p.read_bytes() for p in (out / RUN).rglob("*") if p.is_file()} == before


def test_tensorboard_scalars_are_per_epoch_curves_and_summaries_are_hparams(trained):
    out, _ = trained
    run = out / "logs" / "resnet34_unet" / "version_0"
    curves = epoch_curves(run)
    for tag in ("train/loss", "train/dice", "val/loss", "val/dice", "val/iou", "val/iou_dataset"):
        assert [epoch for epoch, _ in curves[tag]] == [0, 1], tag
    # the Scalars tab: curves with a point per epoch, grouped so that TensorBoard, which opens
    # its first two groups (sorted by name), opens train and val; no one-point summaries
    scalars = {}
    for events in event_files(run):
        for tag, points in read_scalars(events).items():
            scalars.setdefault(tag, []).extend(points)
    assert {tag.split("/")[0] for tag in scalars} == {"train", "val"}, sorted(scalars)
    assert "train/lr" in scalars and EPOCH_TAG in scalars
    for tag, points in scalars.items():
        assert len(points) >= 2, f"{tag} is a one-point chart"
    # the HParams tab: settings beside the summary numbers, which equal the report's
    hparams = read_hparams(run)
    report = json.loads((out / RUN / "test" / "metrics.json").read_text())
    for key in ("dice", "iou"):
        assert hparams[f"best_test_{key}"] == pytest.approx(report[key], abs=1e-6)
    shown = sorted(hparams)[:5]  # what the HParams table shows without asking
    assert shown == ["arch", "best_epoch", "best_test_dice", "best_test_iou", "best_val_dice"]
    best = max(curves["val/dice"], key=lambda point: point[1])
    assert hparams["best_val_dice"] == pytest.approx(best[1], abs=1e-6)
    assert hparams["best_epoch"] == best[0]
    assert hparams["arch"] == "resnet34_unet" and hparams["model.base_channels"] == 8
    assert not any(name.startswith("_") for name in hparams)  # no _instantiator
    assert (run / "hparams.yaml").read_text()


def test_petseg_test_is_the_same_path_as_training_test(trained, synthetic_root, tmp_path, capsys):
    out, _ = trained
    best = next(p for p in (out / RUN).glob("epoch*.ckpt"))
    report = tmp_path / "report"
    argv = ["--ckpt", str(best), "--data.root", str(synthetic_root), "--data.num_workers", "0",
            "--device", "cpu", "--output", str(report)]  # fmt: skip
    assert petseg_test(argv) == 0
    stdout = capsys.readouterr().out
    assert "64px" in stdout and "test images        20" in stdout  # size from the checkpoint
    after_training = json.loads((out / RUN / "test" / "metrics.json").read_text())
    standalone = json.loads((report / "metrics.json").read_text())
    for key in ("dice", "iou", "dice_dataset", "iou_dataset"):
        assert standalone[key] == pytest.approx(after_training[key], abs=1e-6), key
    assert (report / "per_image.csv").read_text() == (out / RUN / "test/per_image.csv").read_text()


def test_resume_last_continues_the_same_run(trained, synthetic_root, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    extra = ("--arch", "resnet34_unet", "--trainer.max_epochs", "3", "--ckpt_path", "last")
    before = event_files(out / "logs" / "resnet34_unet" / "version_0")
    assert train_main(train_args(synthetic_root, out, *extra)) == 0
    last = torch.load(out / RUN / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert not (out / "saved_models" / "resnet34_unet" / "version_1").exists()
    logs = out / "logs" / "resnet34_unet"
    assert sorted(p.name for p in logs.iterdir()) == ["version_0"]
    curves = epoch_curves(logs / "version_0")
    assert [epoch for epoch, _ in curves["val/dice"]] == [0, 1, 2]  # one continuous run
    new_files = [f for f in event_files(logs / "version_0") if f not in before]
    resumed = [int(v) for f in new_files for _, v in read_scalars(f).get(EPOCH_TAG, [])]
    assert min(resumed) == 2  # what the resume logged: it continued, it did not start over
    assert (logs / "version_0" / "config.yaml").is_file()
    assert (logs / "version_0" / "config-resume1.yaml").is_file()  # the first one is kept


# Options each --help must show; for the commands without Lightning, every option they have.
HELP = {
    "train": ["--arch", "--data.root", "--model.loss", "--trainer.max_epochs", "--config",
              "--save_dir", "--log_dir", "--ckpt_path", "--seed_everything", "--verbose"],
    "test": ["--ckpt", "--save_dir", "--arch", "--data.root", "--data.batch_size",
             "--data.num_workers", "--data.download", "--device", "--output", "--tta",
             "--postprocess", "--full_res", "--verbose"],
    "predict": ["--ckpt", "--save_dir", "--arch", "inputs", "--output", "--threshold", "--tta",
                "--postprocess", "--batch_size", "--device", "--verbose"],
    "compare": ["runs", "--output", "--title", "--verbose"],
    "export": ["--ckpt", "--save_dir", "--arch", "--output", "--images", "--verbose"],
    "synth": ["root", "--trainval", "--test", "--seed", "--verbose"],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(HELP))
def test_help_lists_every_option(command, capsys):
    module = "petseg.data.synthetic" if command == "synth" else f"petseg.cli.{command}"
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert [option for option in HELP[command] if option not in text] == []
    if command != "train":  # the list above is complete: a new option must be added to it
        parser = importlib.import_module(module).parser()
        listed = {option.lstrip("-").replace("-", "_") for option in HELP[command]}
        assert set(parser.get_defaults().keys()) == listed


@pytest.mark.parametrize("command", ["train", "test"])
def test_verbose_is_a_flag_so_verbose_false_is_a_one_line_error(command, capsys):
    main, extra = (train_main, []) if command == "train" else (petseg_test, ["--ckpt", "x.ckpt"])
    assert main([*extra, "--verbose", "false"]) == 2  # not a traceback: verbose stays off
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unrecognized arguments: false" in err


def test_verbose_true_in_a_config_file_works_like_the_flag(tmp_path, monkeypatch, capsys):
    quieted = []
    monkeypatch.setattr("petseg.training.quiet_lightning", lambda: quieted.append(True))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    argv = ["--save_dir", str(a_file), "--trainer.accelerator", "cpu"]
    assert train_main(argv) == 2 and quieted == [True]  # one line, Lightning's noise hidden
    assert "is a file, not a folder" in capsys.readouterr().err
    config = tmp_path / "verbose.yaml"
    config.write_text("verbose: true\n")
    quieted.clear()
    with pytest.raises(PetsegError, match="is a file, not a folder"):  # the traceback
        train_main(["--config", str(config), *argv])
    assert quieted == []  # and every message of Lightning's


CPU_FLAGS = [("avx512f avx512_bf16 amx_bf16 amx_tile", True), ("avx512f avx512_bf16", False)]


@pytest.mark.parametrize(("flags", "amx"), [*CPU_FLAGS, (None, False)])
def test_cpu_bf16_only_where_it_has_amx(flags, amx, tmp_path, monkeypatch):
    from petseg import precision as train_cli

    cpuinfo = tmp_path / "cpuinfo"
    if flags is not None:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu sse {flags}\n")
    assert train_cli.cpu_has_amx(cpuinfo) is amx
    monkeypatch.setattr(train_cli, "cpu_has_amx", lambda: amx)
    assert train_cli.auto_precision("cpu") == ("bf16-mixed" if amx else "32-true")
