"""Trust: crafted checkpoints never run code, and every mistake a user can type is one line that
names the file or option, with a nonzero exit and every earlier file left as it was."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import RUN
from petseg.cli import compare_main, export_main, predict_main, train_main
from petseg.cli import test_main as petseg_test
from petseg.data.synthetic import main as synth_main
from petseg.errors import PetsegError
from petseg.segmenter import Segmenter

MAINS = {"train": train_main, "test": petseg_test, "predict": predict_main, "compare": compare_main,
         "export": export_main, "synth": synth_main}  # fmt: skip


class Payload:
    """Unpickling this runs ``touch MARKER``: what a crafted checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


NAMED = {"junk": "junk.ckpt", "truncated": "truncated.ckpt", "foreign": "foreign.ckpt",
         "malicious": "malicious.ckpt", "bad_yaml": "bad.yaml", "image": "image.png",
         "a_file": "a_file", "empty_folder": "empty_folder", "report": "report",
         "exported": "earlier.onnx"}  # fmt: skip


@pytest.fixture(scope="module")
def files(trained, synthetic_root, tmp_path_factory) -> dict[str, str]:
    """Bad and good inputs, written once; keys are the placeholders used in CASES."""
    tmp = tmp_path_factory.mktemp("bad")
    real = trained[0] / RUN / "last.ckpt"
    ckpt = torch.load(real, weights_only=True)
    (tmp / "junk.ckpt").write_bytes(b"not a checkpoint")
    (tmp / "truncated.ckpt").write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    torch.save({"state_dict": {}}, tmp / "foreign.ckpt")
    marker = tmp / "marker"
    torch.save({**ckpt, "callbacks": {"x": Payload(marker)}}, tmp / "malicious.ckpt")
    (tmp / "a_file").write_text("a file, not a folder")
    (tmp / "empty_folder").mkdir()
    (tmp / "report").mkdir()
    (tmp / "report" / "metrics.json").write_text("{}")
    (tmp / "earlier.onnx").write_bytes(b"an earlier export")
    (tmp / "bad.yaml").write_text(yaml.safe_dump({"model": {"no_such_option": 1}}))
    empty_test = tmp / "empty_test"
    shutil.copytree(synthetic_root, empty_test)
    (empty_test / "annotations" / "test.txt").write_text("\n")
    roots = {"empty_test": empty_test}
    for name, trainval in [("one_line", b"Synthetic_1 1 1 1\n"), ("stray_bytes", b"\xff\xfe\n")]:
        roots[name] = tmp / name
        shutil.copytree(synthetic_root, roots[name])
        (roots[name] / "annotations" / "trainval.txt").write_bytes(trainval)
    (tmp / "image.png").write_bytes(
        (synthetic_root / "images").glob("*.jpg").__next__().read_bytes()
    )
    (tmp / "events").mkdir()
    (tmp / "events" / "events.out.tfevents.1.host").write_bytes(os.urandom(64))
    edited = {}  # checkpoints whose metadata was edited: (section, field, value)
    for name, section, field, value in EDITED:
        edited[name] = tmp / f"{name}.ckpt"
        bad = copy.deepcopy(ckpt)
        bad[section][field] = value
        torch.save(bad, edited[name])
    weights = torch.load(trained[0] / RUN / "resnet34_unet.pth", weights_only=True)
    edited["pth_threshold"] = tmp / "pth_threshold.pth"
    torch.save({**weights, "threshold": 7.0}, edited["pth_threshold"])
    edited["pth_normalization"] = tmp / "pth_normalization.pth"
    torch.save({**weights, "normalization": {"mean": [0.5] * 3, "std": [0.5] * 3}},
               edited["pth_normalization"])  # fmt: skip
    edited["pth_options"] = tmp / "pth_options.pth"
    torch.save({**weights, "model_options": {"depth": 99}}, edited["pth_options"])
    wide = tmp / "wide.ckpt"
    ckpt["hyper_parameters"]["base_channels"] = 16
    torch.save(ckpt, wide)
    return {
        **{k: str(v) for k, v in edited.items()},
        "tmp": str(tmp), "root": str(synthetic_root), "ckpt": str(real),
        "marker": str(marker), "wide": str(wide), **{k: str(v) for k, v in roots.items()},
        **{key: str(tmp / name) for key, name in NAMED.items()},
    }  # fmt: skip


# (name, section, field, value): a checkpoint whose metadata was edited, one field each
EDITED = [
    ("meta_threshold", "hyper_parameters", "threshold", 1.5),
    ("meta_threshold_str", "hyper_parameters", "threshold", "0.5"),
    ("meta_size", "datamodule_hyper_parameters", "image_size", 8),
    ("meta_huge", "datamodule_hyper_parameters", "image_size", 10**9),
    ("meta_arch", "hyper_parameters", "arch", "segformer"),
    ("meta_width", "hyper_parameters", "base_channels", 10**6),
    ("meta_bool", "hyper_parameters", "base_channels", True),
    ("meta_bilinear", "hyper_parameters", "bilinear", "yes"),
]

TRAIN = ("--data.root {root} --data.image_size 32 --data.batch_size 4 --data.num_workers 0 "
         "--model.base_channels 8 --trainer.accelerator cpu --trainer.max_epochs 1 "
         "--save_dir {tmp}/sm --log_dir {tmp}/logs")  # fmt: skip
TEST = "--ckpt {ckpt} --data.root {root} --data.num_workers 0 --device cpu"
PREDICT = "--ckpt {ckpt} {image} --device cpu --output {tmp}/out"
EXPORT = "--ckpt {ckpt} --output {tmp}/exported.pt2"

# (command, arguments, what the one line must name)
CASES = [
    ("train", "--arch segformer", "arch"),
    ("train", "--data.root {tmp}/nowhere --data.download false", "/nowhere"),
    ("train", "--model.lr 0", 'key "model.lr"'),
    ("train", "--model.lr -0.1", 'key "model.lr"'),
    ("train", "--model.weight_decay -1", 'key "model.weight_decay"'),
    ("train", "--model.dice_weight -1", 'key "model.dice_weight"'),
    ("train", "--model.threshold 1.5", 'key "model.threshold"'),
    ("train", "--model.threshold 0", 'key "model.threshold"'),
    ("train", "--model.base_channels 0", 'key "model.base_channels"'),
    ("train", "--model.loss focal", "loss"),
    ("train", "--model.optimizer lbfgs", "optimizer"),
    ("train", "--model.scheduler step", "scheduler"),
    ("train", "--data.image_size 16", 'key "data.image_size"'),
    ("train", "--data.batch_size 0", 'key "data.batch_size"'),
    ("train", "--data.copy_paste 1.5", 'key "data.copy_paste"'),
    ("train", "--data.augment extreme", "augment"),
    ("train", "--trainer.max_epochs many", "max_epochs"),
    ("train", "--save_dir {a_file}", "a_file"),
    ("train", "--log_dir {a_file}", "a_file"),
    ("train", "--save_dir /proc/petseg-saved", "/proc/petseg-saved"),
    ("train", "--log_dir /proc/petseg-logs", "/proc/petseg-logs"),
    ("train", "--config {tmp}/missing.yaml", "missing.yaml"),
    ("train", "--config {bad_yaml}", "no_such_option"),
    ("train", "--ckpt_path {tmp}/missing.ckpt", "missing.ckpt"),
    ("train", "--ckpt_path {junk}", "cannot read checkpoint {junk}"),
    ("train", "--ckpt_path {truncated}", "truncated.ckpt"),
    ("train", "--ckpt_path {foreign}", "{foreign} is not a petseg checkpoint"),
    ("train", "--ckpt_path {malicious}", "refusing to load {malicious}"),
    ("train", "--ckpt_path last", "--ckpt_path last"),
    ("train", "--arch unet --ckpt_path {ckpt}", "--arch"),
    ("train", "--ckpt_path {wide}", "--model.base_channels"),
    ("train", "--model.bilinear true --ckpt_path {ckpt}", "--model.bilinear"),
    ("train", "--data.image_size 200000", 'key "data.image_size"'),
    ("train", "--data.root {one_line}", "the train split under {one_line} has no images"),
    ("train", "--data.root {stray_bytes}", "{stray_bytes}/annotations/trainval.txt is not UTF-8"),
    ("train", "--ckpt_path {meta_threshold}", "{meta_threshold}: metadata field threshold"),
    ("train", "--ckpt_path {meta_huge}", "{meta_huge}: metadata field image_size"),
    ("train", "--model.gamma 0", 'key "model.gamma"'),
    ("train", "--model.gamma -0.5", 'key "model.gamma"'),
    ("train", "--model.gamma 1.5", 'key "model.gamma"'),
    ("train", "--model.momentum -0.1", 'key "model.momentum"'),
    ("train", "--model.momentum 1", 'key "model.momentum"'),
    ("train", "--model.threshold 1", 'key "model.threshold"'),
    ("train", "--model.threshold nan", 'key "model.threshold"'),
    ("train", "--model.lr nan", 'key "model.lr"'),
    ("train", "--model.lr inf", "--model.lr inf is out of range"),
    ("train", "--model.log_images -1", 'key "model.log_images"'),
    ("train", "--model.base_channels 100000", 'key "model.base_channels"'),
    ("train", "--data.num_workers -1", 'key "data.num_workers"'),
    ("train", "--data.train_limit 0", 'key "data.train_limit"'),
    ("train", "--trainer.max_epochs -5", "--trainer.max_epochs -5 is out of range"),
    ("train", "--trainer.min_epochs -1", "--trainer.min_epochs"),
    ("train", "--trainer.max_steps -2", "--trainer.max_steps"),
    ("train", "--trainer.max_time 1:00", "--trainer.max_time '1:00' is out of range"),
    ("train", "--trainer.max_time 00:00:-5:00", "--trainer.max_time"),
    ("train", "--trainer.max_time 00:00:00:00", "--trainer.max_time"),
    ("train", "--trainer.limit_train_batches -1", "--trainer.limit_train_batches"),
    ("train", "--trainer.limit_val_batches 1.5", "--trainer.limit_val_batches"),
    ("train", "--trainer.accumulate_grad_batches 0", "--trainer.accumulate_grad_batches"),
    ("train", "--trainer.gradient_clip_val -1", "--trainer.gradient_clip_val"),
    ("train", "--trainer.check_val_every_n_epoch 0", "--trainer.check_val_every_n_epoch"),
    ("train", "--trainer.val_check_interval 0", "--trainer.val_check_interval"),
    ("train", "--trainer.log_every_n_steps 0", "--trainer.log_every_n_steps"),
    ("train", "--trainer.accelerator tpu", "the Trainer cannot start with these --trainer options"),
    ("test", "--ckpt {tmp}/missing.ckpt", "missing.ckpt"),
    ("test", "--ckpt {meta_threshold}", "{meta_threshold}: metadata field threshold"),
    ("test", "--ckpt {meta_threshold_str}", "{meta_threshold_str}: metadata field threshold"),
    ("test", "--ckpt {meta_size}", "{meta_size}: metadata field image_size"),
    ("test", "--ckpt {pth_threshold}", "{pth_threshold}: metadata field threshold"),
    ("test", "--ckpt {pth_normalization}", "{pth_normalization}: metadata field normalization"),
    ("test", "--ckpt {meta_arch} --output {tmp}/new_report", "{meta_arch}: metadata field arch"),
    ("test", "--data.num_workers -1", 'key "data.num_workers"'),
    ("test", "--device cpu:x --output {tmp}/new_report", "--device"),
    ("test", "--ckpt {junk}", "cannot read checkpoint {junk}"),
    ("test", "--ckpt {foreign}", "{foreign} is not a petseg checkpoint"),
    ("test", "--ckpt {malicious}", "refusing to load {malicious}"),
    ("test", "--data.batch_size 0", "batch_size"),
    ("test", "--device cuda", "--device cuda"),
    ("test", "--device tpu", "--device"),
    ("test", "--data.root {empty_test}", "test"),
    ("test", "--data.root {tmp}/nowhere", "/nowhere"),
    ("test", "--output {a_file}", "a_file"),
    ("test", "--output {report}", "already holds"),
    ("test", "--output /proc/petseg-report", "/proc/petseg-report"),
    ("test", "--no-such-option 1", "no-such-option"),
    ("test", "--postprocess erode", "postprocess"),
    ("predict", "--ckpt {tmp}/missing.ckpt", "missing.ckpt"),
    ("predict", "--ckpt {meta_huge}", "{meta_huge}: metadata field image_size"),
    ("predict", "--ckpt {meta_width}", "{meta_width}: metadata field base_channels"),
    ("predict", "--ckpt {meta_bool}", "{meta_bool}: metadata field base_channels"),
    ("predict", "--ckpt {pth_options}", "{pth_options}: metadata field model_options.depth"),
    ("predict", "--threshold 0", 'key "threshold"'),
    ("predict", "--threshold nan", 'key "threshold"'),
    ("predict", "--device tpu", "--device"),
    ("predict", "--ckpt {malicious}", "refusing to load {malicious}"),
    ("predict", "--ckpt {truncated}", "truncated.ckpt"),
    ("predict", "--batch_size 0", "batch_size"),
    ("predict", "--device cuda", "--device cuda"),
    ("predict", "--threshold 1.5", 'key "threshold"'),
    ("predict", "--postprocess erode", "postprocess"),
    ("predict", "{empty_folder}", "empty_folder"),
    ("predict", "--output {a_file}", "a_file"),
    ("predict", "--output /proc/petseg-out", "/proc/petseg-out"),
    ("compare", "{tmp}/nowhere", "/nowhere"),
    ("compare", "{empty_folder}", "empty_folder"),
    ("export", "--ckpt {tmp}/missing.ckpt", "missing.ckpt"),
    ("export", "--ckpt {junk}", "cannot read checkpoint {junk}"),
    ("export", "--ckpt {truncated}", "truncated.ckpt"),
    ("export", "--ckpt {foreign}", "{foreign} is not a petseg checkpoint"),
    ("export", "--ckpt {malicious}", "refusing to load {malicious}"),
    ("export", "--ckpt {meta_arch}", "{meta_arch}: metadata field arch"),
    ("export", "--ckpt {meta_bilinear}", "{meta_bilinear}: metadata field bilinear"),
    ("export", "--output {exported}", "already exists"),
    ("export", "--output {tmp}/model.zip", "'.zip'"),
    ("export", "--output {tmp}/model", "a name without a suffix"),
    ("export", "--output {empty_folder}", "empty_folder"),
    ("export", "--output /proc/petseg-model.pt2", "--output /proc"),
    ("export", "--images {tmp}/nowhere.jpg", "nowhere.jpg"),
    ("export", "--images {junk}", "junk.ckpt"),
    ("export", "--images {empty_folder}", "empty_folder"),
    ("synth", "{empty_test}", "{empty_test} already holds a dataset"),
    ("synth", "{a_file}", "a_file"),
    ("synth", "{tmp}/synth --trainval many", "trainval"),
    ("synth", "{tmp}/synth --test 0", "test"),
    ("synth", "--seed 1", "root"),
    ("synth", "{tmp}/synth --seed -1", 'key "seed"'),
]
BASE = {"train": TRAIN, "test": TEST, "predict": PREDICT, "compare": "", "export": EXPORT,
        "synth": ""}  # fmt: skip


def _snapshot(*folders: str) -> dict[Path, bytes]:
    return {p: p.read_bytes() for f in folders for p in Path(f).rglob("*") if p.is_file()}


@pytest.mark.parametrize(("command", "args", "named"), CASES)
def test_bad_input_is_one_line_and_changes_nothing(command, args, named, files, trained, capsys):
    argv = f"{BASE[command]} {args}".format(**files).split()
    if command == "predict" and not args.startswith("--"):  # the input replaces the image
        argv.remove(files["image"])
    before = _snapshot(files["tmp"], str(trained[0]))
    code = MAINS[command](argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"petseg-{command}: ")]
    assert code == 2, err
    assert len(lines) == 1 and "error: " in lines[0], err
    assert "Traceback" not in err
    assert named.format(**files) in lines[0], lines[0]
    after = _snapshot(files["tmp"], str(trained[0]))
    assert {p: b for p, b in after.items() if p in before} == before  # nothing earlier changed
    if command in ("train", "export", "synth"):
        assert after.keys() == before.keys()  # nor a file, partial one or run folder written
        assert not list(Path(files["tmp"]).glob("*/*/version_*"))
    for made in ("out", "new_report", "synth"):  # no output folder made for a failed command
        assert not (Path(files["tmp"]) / made).exists(), made
    assert not Path(files["marker"]).exists()


def test_the_crafted_checkpoint_is_live(files, tmp_path):
    """The payload does run when unpickled unsafely: the tests above would see it."""
    marker = Path(files["marker"])
    torch.load(files["malicious"], weights_only=False)
    assert marker.exists()
    marker.unlink()


@pytest.mark.parametrize("load", ["segmenter", "train_resume", "test", "predict", "export"])
def test_crafted_checkpoint_never_runs(load, files, tmp_path, capsys):
    path = files["malicious"]
    if load == "segmenter":
        with pytest.raises(PetsegError, match=r"refusing to load .*malicious\.ckpt"):
            Segmenter.load(path)
    else:
        argv = {
            "train_resume": [*TRAIN.format(**files).split(), "--ckpt_path", path],
            "test": ["--ckpt", path, "--data.root", files["root"]],
            "predict": ["--ckpt", path, files["image"], "--output", str(tmp_path / "o")],
            "export": ["--ckpt", path, "--output", str(tmp_path / "model.pt2")],
        }[load]
        main = {"train_resume": train_main, "test": petseg_test, "predict": predict_main,
                "export": export_main}[load]  # fmt: skip
        assert main(argv) == 2
        assert "refusing to load" in capsys.readouterr().err
    assert not Path(files["marker"]).exists()


def test_compare_warns_about_a_corrupt_event_file_and_goes_on(files, trained, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained[0] / "logs" / "resnet34_unet" / "version_0", run)
    junk = run / "events.out.tfevents.9999999999.host.1.0"
    junk.write_bytes(os.urandom(200))
    with pytest.warns(UserWarning, match=f"skipped {junk}"):
        assert compare_main([str(run), "--output", str(tmp_path / "c.png")]) == 0
    assert "| run |" in capsys.readouterr().out


@pytest.mark.parametrize("wrote", ["nothing", "a scalar", "a checkpoint"])
def test_a_failed_run_leaves_its_folders_only_if_they_hold_something(wrote, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from petseg.runs import discard_if_unused, new_run

    run = new_run(tmp_path / "sm", tmp_path / "logs", "unet")
    run.log_dir.mkdir(parents=True)
    (run.log_dir / "config.yaml").write_text("seed_everything: 0\n")
    with SummaryWriter(run.log_dir) as writer:  # an event file, with a scalar or without
        if wrote == "a scalar":
            writer.add_scalar("train/loss", 0.5, 1)
    if wrote == "a checkpoint":
        (run.ckpt_dir / "last.ckpt").write_bytes(b"x")
    assert discard_if_unused(run) is (wrote == "nothing")
    assert run.log_dir.exists() is run.ckpt_dir.exists() is (wrote != "nothing")
