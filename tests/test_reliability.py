"""Reliability: a run writes and deletes only inside its own folders, checkpoints land whole,
signals and full disks stop a run with a resumable last.ckpt and one line saying so."""

from __future__ import annotations

import csv
import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import petseg.predict as predict_module
from conftest import RUN, train_args
from petseg.checkpoint_io import RunCheckpointIO, is_run_file, sanitise_callback_paths
from petseg.checkpoints import atomic_save
from petseg.cli import predict_main, train_main
from petseg.data.dataset import split_names
from petseg.errors import PetsegError
from petseg.files import TEMPORARY_MARK, remove_stale_temporaries
from petseg.interrupts import SignalGuard, TrainingInterrupted
from petseg.report import _fit
from petseg.segmenter import Segmenter

BIN = Path(sys.executable).parent


def _temporaries(folder: Path) -> list[Path]:
    return list(folder.rglob(f"*{TEMPORARY_MARK}*"))


@pytest.fixture
def run_copy(trained, tmp_path) -> Path:
    """A copy of the session's 2-epoch run (its saved_models/ and logs/) under tmp_path/copy."""
    shutil.copytree(trained[0], tmp_path / "copy")
    return tmp_path / "copy"


def test_resume_from_a_crafted_checkpoint_deletes_nothing_outside_the_run(
    run_copy, synthetic_root, tmp_path, capsys
):
    run = run_copy / RUN
    victims = [tmp_path / "victim.ckpt", tmp_path / "target.ckpt", tmp_path / "absolute.ckpt"]
    for victim in victims:
        victim.write_text("a file outside the run")
    (run / "link.ckpt").symlink_to(victims[1])
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    dotdot = f"{run}/../../../../victim.ckpt"  # lies under the run folder for Path.parents
    states = [s for k, s in ckpt["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert len(states) == 2
    for state in states:  # what a crafted or carried checkpoint may say
        state["best_model_path"] = dotdot
        state["last_model_path"] = str(victims[2])
        state["kth_best_model_path"] = str(run / "link.ckpt")
        state["best_k_models"] = {dotdot: torch.tensor(0.99), str(run / "link.ckpt"): 0.98}
    crafted = run / "crafted.ckpt"
    torch.save(ckpt, crafted)  # plain values only: it passes weights_only=True

    argv = train_args(synthetic_root, run_copy, "--trainer.max_epochs", "4",
                      "--ckpt_path", str(crafted))  # fmt: skip
    assert train_main(argv) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "outside the run folder" in line]
    assert len(warnings) == 1 and "ignored" in warnings[0] and "victim.ckpt" in warnings[0]
    for victim in victims:
        assert victim.read_text() == "a file outside the run", victim
    assert (run / "link.ckpt").is_symlink()  # not even the link inside the run was followed
    assert torch.load(run / "last.ckpt", weights_only=True)["epoch"] == 3


def test_only_plain_ckpt_names_directly_in_the_run_folder_are_run_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (run / "sub").mkdir()
    (run / "link.ckpt").symlink_to(tmp_path / "elsewhere")
    (run / "dirlink").symlink_to(tmp_path / "elsewhere")
    assert is_run_file(str(run / "epoch001.ckpt"), run)
    for bad in [f"{run}/../run/x.ckpt", f"{run}/sub/../../x.ckpt", str(tmp_path / "x.ckpt"),
                "x.ckpt", str(run / "sub" / "x.ckpt"), str(run / "link.ckpt"),
                str(run / "dirlink" / "x.ckpt"), str(run / "notes.txt"), "", 7, None]:  # fmt: skip
        assert not is_run_file(bad, run), bad
    state = {"best_model_path": str(run / "a.ckpt"), "best_model_score": torch.tensor(0.5),
             "best_k_models": {str(run / "a.ckpt"): torch.tensor(0.5), "/x.ckpt": 0.9},
             "dirpath": str(run)}  # fmt: skip
    ckpt = {"callbacks": {"ModelCheckpoint{}": state, "Timer": {"time_elapsed": {}},
                          "ModelCheckpoint{'x'}": {"best_model_score": "junk"}}}  # fmt: skip
    assert sanitise_callback_paths(ckpt, run) == [
        "/x.ckpt",
        "ModelCheckpoint{'x'}: malformed state",
    ]
    assert ckpt["callbacks"]["ModelCheckpoint{}"]["best_k_models"] == {
        str(run / "a.ckpt"): torch.tensor(0.5)
    }
    assert "ModelCheckpoint{'x'}" not in ckpt["callbacks"] and "Timer" in ckpt["callbacks"]


class _Interrupted(BaseException):
    """Stands for a kill arriving in the middle of a write."""


def _dying_save(obj, f, *args, **kwargs):
    Path(f).write_bytes(b"PK\x03\x04 the first bytes of a checkpoint")
    raise _Interrupted


@pytest.mark.parametrize("fault", ["kill", "full", "read_only"])
def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(
    tmp_path, monkeypatch, fault
):
    last = tmp_path / "run" / "last.ckpt"
    atomic_save({"epoch": 1}, last)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "elsewhere"))  # never used: may be another disk
    if fault == "kill":
        monkeypatch.setattr(torch, "save", _dying_save)
        with pytest.raises(_Interrupted):
            atomic_save({"epoch": 2}, last)
    else:
        code = errno.ENOSPC if fault == "full" else errno.EROFS

        def failing_fsync(fd):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(PetsegError) as err:
            atomic_save({"epoch": 2}, last)
        message = str(err.value)
        assert f"the folder {last.parent} " in message and "\n" not in message
        assert ("is full" if fault == "full" else "read-only") in message
    assert torch.load(last, weights_only=True) == {"epoch": 1}
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_checkpoints_are_staged_in_their_own_folder(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renames.append(Path(a)), real_replace(a, b)))
    RunCheckpointIO(tmp_path).save_checkpoint({"epoch": 3}, tmp_path / "last.ckpt")
    (staged,) = renames
    assert staged.parent == tmp_path and staged.name.startswith(".last.")
    assert torch.load(tmp_path / "last.ckpt", weights_only=True) == {"epoch": 3}
    # a temporary file of a killed process is removed, one of a live process kept
    dead = tmp_path / f".last.ckpt.999999999.abcd{TEMPORARY_MARK}"
    live = tmp_path / f".last.ckpt.{os.getppid()}.abcd{TEMPORARY_MARK}"
    dead.write_bytes(b"partial")
    live.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert live.exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["full", "read_only"])
def test_a_disk_that_fills_mid_run_stops_in_one_line_with_last_ckpt_whole(
    synthetic_root, tmp_path, monkeypatch, capsys, code
):
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # epoch 0 wrote its two files; the disk fills in epoch 1
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError(code, os.strerror(code))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    argv = train_args(synthetic_root, tmp_path, "--arch", "unet", "--trainer.max_epochs", "3")
    assert train_main(argv) == 2
    err = capsys.readouterr().err
    run = tmp_path / "saved_models" / "unet" / "version_0"
    assert err.count("\n") == 1 and "petseg-train: error: cannot write " in err
    assert f"the folder {os.path.realpath(run)} " in err
    monkeypatch.setattr(torch, "save", real_save)
    assert not _temporaries(tmp_path)
    files = sorted(run.glob("*.ckpt"))
    assert len(files) == 3  # epoch 0's best (also as best.ckpt, the same file) and last, whole
    assert (run / "best.ckpt").samefile(next(run.glob("epoch000-*.ckpt")))
    for path in files:
        assert torch.load(path, weights_only=True)["epoch"] == 0


def test_the_signal_guard_stops_at_once_outside_training(tmp_path):
    guard = SignalGuard(tmp_path / "last.ckpt")
    with pytest.raises(TrainingInterrupted) as stop, guard:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert stop.value.exit_code == 128 + signal.SIGTERM and stop.value.last is None
    assert "nothing to resume" in stop.value.line("petseg-train")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are restored


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_leaves_a_resumable_last_ckpt_and_a_nonzero_status(
    synthetic_root, tmp_path, signum
):
    argv = train_args(synthetic_root, tmp_path, "--arch", "unet", "--trainer.max_epochs", "500")
    proc = subprocess.Popen([BIN / "petseg-train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    last = tmp_path / "saved_models" / "unet" / "version_0" / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("petseg-train: ")]
    assert len(lines) == 1 and signal.Signals(signum).name in lines[0], err[-2000:]
    assert f"--ckpt_path {last}" in lines[0] and "Traceback" not in err
    assert "best checkpoint" not in out  # nothing claims success
    assert not _temporaries(tmp_path)
    epoch = torch.load(last, weights_only=True)["epoch"]
    resumed = train_args(synthetic_root, tmp_path, "--arch", "unet", "--trainer.max_epochs",
                         str(epoch + 2), "--ckpt_path", str(last))  # fmt: skip
    assert train_main(resumed) == 0
    assert torch.load(last, weights_only=True)["epoch"] == epoch + 1


def test_segmenter_load_checks_its_threshold(trained):
    ckpt = trained[0] / RUN / "last.ckpt"
    for bad in (0, 1, 1.5, -0.1, float("nan"), "0.5", True):
        with pytest.raises(PetsegError, match="threshold"):
            Segmenter.load(ckpt, threshold=bad, device="cpu")
    assert Segmenter.load(ckpt, threshold=0.3, device="cpu").threshold == 0.3


@pytest.fixture
def data_copy(synthetic_root, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    return root


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("../../etc/passwd 1 1 1", "line 3: '../../etc/passwd' is not an image name"),
        ("/etc/passwd 1 1 1", "line 3: '/etc/passwd' is not an image name"),
        ("sub/Synthetic_1 1 1 1", "line 3: 'sub/Synthetic_1' is not an image name"),
        ("Synthetic_1 1 1 1", "lists 'Synthetic_1' twice (lines 1 and 3)"),
    ],
    ids=["parent", "absolute", "folder", "duplicate"],
)
def test_split_lists_name_images_in_images_only_once(data_copy, line, message):
    split = data_copy / "annotations" / "trainval.txt"
    lines = split.read_text().splitlines()
    assert lines[0].startswith("Synthetic_1 ")
    split.write_text("\n".join([*lines[:2], line, *lines[2:]]) + "\n")
    with pytest.raises(PetsegError) as err:
        split_names(data_copy, "train")
    assert f"split file {split} " in str(err.value) and message in str(err.value)


def test_images_in_both_trainval_and_test_are_counted_in_a_warning(data_copy):
    test_list = data_copy / "annotations" / "test.txt"
    trainval = (data_copy / "annotations" / "trainval.txt").read_text().splitlines()
    test_list.write_text(test_list.read_text() + "\n".join(trainval[:3]) + "\n")
    with pytest.warns(UserWarning, match=r"3 image\(s\) are listed in both .* test.txt"):
        split_names(data_copy, "test")


def _inputs(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(names):
        Image.fromarray(np.full((20 + i, 24, 3), 40 * i, np.uint8)).save(folder / name)
    return folder


def test_predict_refuses_names_the_output_cannot_hold_before_writing(trained, tmp_path, capsys):
    folder = _inputs(tmp_path, ["cat.png", "c" * 245 + ".png"])  # fits; "_overlay.png" does not
    out = tmp_path / "out"
    argv = ["--ckpt", str(trained[0] / RUN / "last.ckpt"), str(folder), "--output", str(out)]
    assert predict_main([*argv, "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "1 input name(s) are too long for --output" in line and "c" * 245 in line
    assert not out.exists()


def test_predict_stopped_midway_leaves_whole_files_and_an_index_of_every_input(
    trained, tmp_path, monkeypatch
):
    folder = _inputs(tmp_path, ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    real, calls = predict_module._save_png, []

    def save_png(image, path):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"\x89PNG half")  # a kill in the middle of the write
            raise KeyboardInterrupt
        real(image, path)

    monkeypatch.setattr(predict_module, "_save_png", save_png)
    argv = ["--ckpt", str(trained[0] / RUN / "last.ckpt"), str(folder), "--output", str(out)]
    with pytest.raises(KeyboardInterrupt):
        predict_main([*argv, "--device", "cpu"])
    with (out / "index.csv").open() as f:
        rows = {Path(r["input"]).name: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["a.png", "b.png", "c.png"]
    assert rows["a.png"]["overlay"] and not rows["b.png"]["overlay"]
    assert rows["c.png"]["error"] == "not written: the run stopped first"
    assert not (out / "b_overlay.png").exists()  # not half of one under the real name
    assert not list(out.rglob("*petseg-tmp*"))
    with Image.open(out / "a_overlay.png") as image:
        image.load()


def test_report_overlay_names_fit_the_folder():
    assert _fit("Abyssinian_1", 200) == "Abyssinian_1"
    cut = _fit("é" * 200, 101)  # two bytes each: cut between characters, never inside one
    assert cut == "é" * 50 and len(cut.encode()) <= 101


def test_a_yaml_config_that_expands_to_gigabytes_is_refused(synthetic_root, tmp_path, capsys):
    lines = ["a: &a [" + ", ".join(["x"] * 9) + "]"]
    for level in range(1, 10):  # 9 ** 10 values once expanded, from a file of under 1 kB
        prev, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1000
    argv = train_args(synthetic_root, tmp_path, "--config", str(bomb))
    assert train_main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert "a YAML config expands to more than 100000 values" in line
    assert not (tmp_path / "saved_models").exists()


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(trained, tmp_path, capsys):
    folder = _inputs(tmp_path, ["small.png"])
    Image.new("L", (8000, 7000)).save(folder / "huge.png")  # 56 MP in a few kB
    out = tmp_path / "out"
    argv = ["--ckpt", str(trained[0] / RUN / "last.ckpt"), str(folder), "--output", str(out)]
    assert predict_main([*argv, "--device", "cpu"]) == 1
    err = capsys.readouterr().err.splitlines()
    (line,) = [line for line in err if line.startswith("petseg-predict: ")]
    assert line.startswith("petseg-predict: skipped image ") and "8000x7000 (56 megapixels)" in line
    with (out / "index.csv").open() as f:
        rows = {Path(r["input"]).name: r for r in csv.DictReader(f)}
    assert rows["small.png"]["mask"] and "megapixels" in rows["huge.png"]["error"]
