"""petseg-test's report, petseg-predict, petseg-compare and the TensorBoard image grids."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import train_args
from petseg.cli import compare_main, predict_main, train_main
from petseg.cli import test_main as petseg_test
from petseg.inference import predict_logits


def _best_ckpt(stdout: str) -> str:
    return next(line.split()[-1] for line in stdout.splitlines() if line.startswith("best check"))


@pytest.fixture(scope="module")
def report(trained, synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    argv = ["--ckpt", _best_ckpt(trained[1]), "--data.root", str(synthetic_root),
            "--data.num_workers", "0", "--device", "cpu", "--output", str(out),
            "--full-res"]  # fmt: skip
    assert petseg_test(argv) == 0
    return out


def test_report_metrics_equal_the_per_image_mean(report):
    metrics = json.loads((report / "metrics.json").read_text())
    with (report / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert metrics["num_images"] == len(rows) == 20
    assert metrics["arch"] == "resnet34_unet" and metrics["image_size"] == 64
    assert metrics["dice"] == pytest.approx(np.mean([float(r["dice"]) for r in rows]), abs=1e-5)
    assert set(rows[0]) == {"name", "dice", "iou", "foreground", "dice_full_res", "iou_full_res"}
    full = metrics["full_res"]["dice"]
    assert full == pytest.approx(np.mean([float(r["dice_full_res"]) for r in rows]), abs=1e-5)


def test_report_matches_the_test_dice_of_training(trained, report):
    printed = dict(line.split()[:2] for line in trained[1].splitlines() if line.startswith("test/"))
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["dice"] == pytest.approx(float(printed["test/dice"]), abs=1e-4)
    assert metrics["iou"] == pytest.approx(float(printed["test/iou"]), abs=1e-4)


def test_report_overlays_best_and_worst(report):
    pngs = sorted((report / "overlays").glob("*.png"))
    assert len([p for p in pngs if p.name.startswith("best_")]) == 8
    assert len([p for p in pngs if p.name.startswith("worst_")]) == 8
    with Image.open(pngs[0]) as img:
        assert img.mode == "RGB" and img.width > 3 * img.height  # image | truth | prediction


def test_predict_masks_at_original_size_and_skips_non_images(trained, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 53), np.uint8), "L").save(inputs / "grey.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 4), np.uint8), "RGBA").save(inputs / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (81, 64, 3), np.uint8)).save(inputs / "photo.jpg")
    (inputs / "notes.txt").write_text("not an image")
    ckpt = trained[0] / "saved_models" / "resnet34_unet" / "last.ckpt"
    out = tmp_path / "out"
    code = predict_main(["--ckpt", str(ckpt), str(inputs), "--output", str(out), "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("petseg")]
    assert code == 1
    assert len(err) == 1 and "notes.txt" in err[0] and err[0].startswith("petseg-predict: skipped")
    for name, size in [("grey", (53, 37)), ("rgba", (30, 40)), ("photo", (64, 81))]:
        with Image.open(out / f"{name}_mask.png") as mask:
            assert mask.size == size and mask.mode == "L"
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
        with Image.open(out / f"{name}_overlay.png") as overlay:
            assert overlay.size == size and overlay.mode == "RGB"
    assert len(list(out.glob("*_mask.png"))) == 3


def test_predict_all_good_inputs_exit_zero(trained, quirks_root, tmp_path):
    ckpt = trained[0] / "saved_models" / "resnet34_unet" / "last.ckpt"
    images = quirks_root / "images"
    argv = ["--ckpt", str(ckpt), str(images), "--output", str(tmp_path), "--device", "cpu", "--tta"]
    assert predict_main(argv) == 0
    with Image.open(tmp_path / "Abyssinian_34_mask.png") as mask:  # the GIF named .jpg
        assert mask.size == (250, 202)


def test_tta_keeps_shape_and_is_exact_for_a_flip_equivariant_model():
    model = torch.nn.Conv2d(3, 1, kernel_size=1)  # pointwise: commutes with flips
    images = torch.randn(2, 3, 16, 24)
    plain, tta = predict_logits(model, images), predict_logits(model, images, tta=True)
    assert tta.shape == plain.shape == (2, 1, 16, 24)
    torch.testing.assert_close(tta, plain)
    asymmetric = torch.nn.Conv2d(3, 1, kernel_size=(1, 3), padding=(0, 1))
    with torch.no_grad():
        asymmetric.weight.copy_(torch.tensor([1.0, 0.0, -1.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3))
    assert not torch.allclose(
        predict_logits(asymmetric, images), predict_logits(asymmetric, images, tta=True)
    )


def test_validation_images_logged_every_epoch(trained):
    (run,) = (trained[0] / "logs" / "resnet34_unet").iterdir()
    events = [e for e in sorted(run.glob("events.*")) if "images" in _tags(e)]
    acc = EventAccumulator(str(events[0]), size_guidance={"images": 0})
    acc.Reload()
    grids = acc.Images("val/examples")
    assert [g.step for g in grids] == [0, 1]
    assert grids[0].width > 2 * grids[0].height / 4  # three tiles per row, four valid images


def _tags(path):
    acc = EventAccumulator(str(path))
    acc.Reload()
    return {kind for kind, tags in acc.Tags().items() if tags and kind == "images"}


def test_compare_two_architectures(trained, synthetic_root, tmp_path, capsys, monkeypatch):
    logs = tmp_path / "logs"
    shutil.copytree(trained[0] / "logs", logs)
    assert train_main(train_args(synthetic_root, tmp_path, "--arch", "unet",
                                 "--trainer.max_epochs", "2")) == 0  # fmt: skip
    capsys.readouterr()
    png = tmp_path / "docs" / "comparison.png"
    monkeypatch.chdir(tmp_path)  # relative paths, as users type them
    assert compare_main(["logs", "--output", "docs/comparison.png"]) == 0
    table = png.with_suffix(".md").read_text()
    assert capsys.readouterr().out.startswith(table)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "version_" in line]
    assert len(rows) == 2
    assert any(r.startswith("| resnet34_unet/") for r in rows)
    assert any(r.startswith("| unet/") for r in rows)
    assert all(r.split("|")[2].strip() == "2" for r in rows)  # epochs
    with Image.open(png) as img:
        assert img.width > 500 and img.height > 200


def test_compare_without_logs_is_one_line(tmp_path, capsys):
    assert compare_main([str(tmp_path / "nothing")]) == 2
    assert "no such log folder" in capsys.readouterr().err
