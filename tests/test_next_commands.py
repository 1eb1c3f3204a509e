"""The design card's commands, literally: ``petseg-test --ckpt best.ckpt`` after a run, the best
checkpoint under a stable name, the data root a checkpoint remembers, the workers a pinned
process gets, and ``petseg-train --help`` that starts with petseg's own options."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import RUN, train_args
from petseg.cli import compare_main, export_main, predict_main
from petseg.cli import test_main as petseg_test
from petseg.errors import PetsegError
from petseg.runs import BEST, LAST, replace_with_link, resolve_checkpoint
from petseg.segmenter import Segmenter

BIN = Path(sys.executable).parent


def test_a_run_keeps_best_ckpt_as_the_best_epoch_file_weights_only(trained):
    run = trained[0] / RUN
    (epoch_file,) = run.glob("epoch*.ckpt")
    assert (run / BEST).is_file() and not (run / BEST).is_symlink()
    assert os.path.samefile(run / BEST, epoch_file)  # a hard link: no second copy on disk
    best = torch.load(run / BEST, map_location="cpu", weights_only=True)
    assert "optimizer_states" not in best and best["state_dict"]  # last.ckpt is the full one
    assert "optimizer_states" in torch.load(run / LAST, map_location="cpu", weights_only=True)
    assert not list(run.glob(".*"))  # no temporary file left behind


def test_replace_with_link_swaps_the_file_whole(tmp_path, monkeypatch):
    first, second, target = tmp_path / "a.ckpt", tmp_path / "b.ckpt", tmp_path / BEST
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    replace_with_link(first, target)
    replace_with_link(second, target)
    first.unlink()  # the best before is removed, as ModelCheckpoint does
    assert target.read_bytes() == b"second" and os.path.samefile(target, second)

    def no_links(*args):
        raise OSError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)  # a file system without hard links: a copy
    third = tmp_path / "c.ckpt"
    third.write_bytes(b"third")
    replace_with_link(third, target)
    assert target.read_bytes() == b"third" and not os.path.samefile(target, third)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.ckpt", BEST, "c.ckpt"]


def _fake_run(save_dir: Path, arch: str, version: int, mtime: float) -> Path:
    folder = save_dir / arch / f"version_{version}"
    folder.mkdir(parents=True)
    for name in (BEST, LAST):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (mtime, mtime))
    return folder


def test_best_ckpt_alone_means_the_newest_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saved = Path("saved_models")
    _fake_run(saved, "unet", 0, 1000)
    newest_unet = _fake_run(saved, "unet", 1, 3000)
    resnet = _fake_run(saved, "resnet34_unet", 0, 2000)
    path, reason = resolve_checkpoint(BEST)
    assert path == newest_unet / BEST and "not in the working directory" in reason
    assert resolve_checkpoint(LAST, arch="resnet34_unet")[0] == resnet / LAST
    assert resolve_checkpoint("other.ckpt") == (Path("other.ckpt"), "")  # taken as given
    Path(BEST).write_bytes(b"here")  # a best.ckpt in the working directory wins
    assert resolve_checkpoint(BEST) == (Path(BEST), "")
    with pytest.raises(PetsegError, match="no run under elsewhere has one"):
        resolve_checkpoint(LAST, save_dir="elsewhere")


def test_petseg_test_best_ckpt_from_the_project_root_needs_no_options(
    trained, tmp_path, monkeypatch, capsys
):
    project = tmp_path / "project"
    shutil.copytree(trained[0] / "saved_models", project / "saved_models")
    monkeypatch.chdir(project)
    assert petseg_test(["--ckpt", "best.ckpt", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"checkpoint         {RUN / BEST} (resnet34_unet, 64px; best.ckpt is not in the "
        "working directory: the newest run's under saved_models)"
    )
    assert lines[1].startswith("data               ") and "the checkpoint's training" in lines[1]
    assert any(line.startswith("test/dice ") for line in lines)
    # the same rule in the other commands and the Python API
    assert Segmenter.load("last.ckpt", device="cpu").checkpoint == RUN / LAST
    assert predict_main(["--ckpt", "best.ckpt", "--device", "cpu", "--output", "masks",
                         str(Path(__file__).parent / "data" / "quirks")]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(f"checkpoint         {RUN / BEST} (")
    assert export_main(["--ckpt", "best.ckpt", "--output", "model.pt2"]) == 0
    assert capsys.readouterr().out.startswith(f"checkpoint         {RUN / BEST} (")
    assert petseg_test(["--ckpt", "best.ckpt", "--arch", "unet"]) == 2
    assert "no run under saved_models/unet has one" in capsys.readouterr().err


def test_the_recorded_data_root_is_used_overridden_and_checked(
    trained, synthetic_root, tmp_path, capsys
):
    best = trained[0] / RUN / BEST
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    assert ckpt["data_root"] == str(synthetic_root.resolve())
    pth = torch.load(trained[0] / RUN / "resnet34_unet.pth", weights_only=True)
    assert pth["data_root"] == str(synthetic_root.resolve())
    moved = tmp_path / "moved.ckpt"
    torch.save({**ckpt, "data_root": str(tmp_path / "gone")}, moved)
    assert petseg_test(["--ckpt", str(moved), "--device", "cpu"]) == 2
    assert f"trained on {tmp_path / 'gone'}, which is not a folder" in capsys.readouterr().err
    argv = ["--ckpt", str(moved), "--device", "cpu", "--data.root", str(synthetic_root)]
    assert petseg_test(argv) == 0
    assert "(--data.root)" in capsys.readouterr().out


def test_training_cannot_resume_from_the_weights_only_best(trained, synthetic_root, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    argv = train_args(synthetic_root, out, "--trainer.max_epochs", "3", "--ckpt_path",
                      str(out / RUN / BEST))  # fmt: skip
    with pytest.raises(PetsegError, match=r"holds the weights only .* resume from its run"):
        import petseg

        petseg.train(argv)


def test_default_workers_follow_the_cpu_affinity(tmp_path):
    code = (
        "import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); "
        "from petseg.data.defaults import default_workers; print(default_workers(None))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"  # pinned to one core: one worker, whatever the machine


def test_train_help_starts_with_petsegs_options_without_lightning():
    code = (
        "import contextlib, sys, time\nfrom petseg.cli import train_main\n"
        "start = time.perf_counter()\n"
        "with contextlib.suppress(SystemExit): train_main(['--help'])\n"
        "print('seconds', time.perf_counter() - start)\n"
        "print('lightning' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    quick = done.stdout
    assert quick.rstrip().endswith("False False")  # neither Lightning nor torch imported
    assert quick.index("  --arch") < quick.index("  --model.lr") < quick.index("trainer options")
    full = subprocess.run([str(BIN / "petseg-train"), "--help-all"], capture_output=True,
                          text=True)  # fmt: skip
    assert full.returncode == 0, full.stderr
    assert full.stdout.index("--model.lr") < full.stdout.index("--trainer.accelerator")
    # the quick help shows every petseg, model and data option of the full one, no other
    flags = re.compile(r"^  (?:-c CONFIG, )?(--(?:model\.|data\.)?\w+)", re.MULTILINE)
    ours = set(flags.findall(full.stdout)) - {"--help", "--trainer", "--model", "--data"}
    ours -= {"--model.arch"}  # set by --arch
    assert ours == set(flags.findall(quick)) - {"--trainer"}
    for default in ("resnet34_unet", "saved_models", "dataset/oxford-iiit-pet"):
        assert default in quick


def test_compare_writes_under_an_output_folder(trained, tmp_path, monkeypatch, capsys):
    shutil.copytree(trained[0] / "logs", tmp_path / "logs")
    monkeypatch.chdir(tmp_path)
    assert compare_main([]) == 0
    assert (tmp_path / "comparisons" / "comparison.png").is_file()
    assert not list(tmp_path.glob("comparison.*"))  # nothing in the project root
    table = (tmp_path / "comparisons" / "comparison.md").read_text()
    row = next(line for line in table.splitlines() if "version_0" in line)
    report = (trained[0] / RUN / "test" / "metrics.json").read_text()
    import json

    assert row.split("|")[6].strip() == f"{json.loads(report)['dice']:.4f}"  # from HParams
    capsys.readouterr()


def test_train_prints_the_next_commands_ready_to_paste(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = train_args(synthetic_root, tmp_path, "--arch", "unet", "--trainer.max_epochs", "1")
    argv[argv.index("--save_dir") + 1] = "saved_models"  # relative, as a user types them
    argv[argv.index("--log_dir") + 1] = "logs"
    done = subprocess.run([str(BIN / "petseg-train"), *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    command = next(line for line in lines if line.startswith("test it")).split(maxsplit=2)[2]
    assert command == "petseg-test --ckpt saved_models/unet/version_0/best.ckpt"
    assert "see the curves     tensorboard --logdir logs" in lines
    pasted = subprocess.run([*command.split(), "--device", "cpu"], capture_output=True, text=True)
    assert pasted.returncode == 0, pasted.stderr  # no --data.root: the checkpoint knows it
    assert "test/dice" in pasted.stdout


def test_best_checkpoint_keeps_the_state_key_of_earlier_runs(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from petseg.callbacks import BestCheckpoint

    earlier = ModelCheckpoint(dirpath=tmp_path, monitor="val/dice", mode="max")
    assert BestCheckpoint(tmp_path).state_key == earlier.state_key  # resuming restores the best
