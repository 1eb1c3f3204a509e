"""petseg-test's report, petseg-predict, petseg-compare and the TensorBoard image grids."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import RUN, train_args
from petseg.cli import compare_main, predict_main, train_main
from petseg.cli import test_main as petseg_test
from petseg.data.dataset import OxfordPetDataset
from petseg.data.transforms import eval_transform
from petseg.evaluation import evaluate
from petseg.inference import predict_logits
from petseg.report import write_overlays
from petseg.segmenter import Segmenter


def _best_ckpt(stdout: str) -> str:
    return next(line.split()[2] for line in stdout.splitlines() if line.startswith("best check"))


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
    assert metrics["iou"] == pytest.approx(np.mean([float(r["iou"]) for r in rows]), abs=1e-5)
    assert {"dice_dataset", "iou_dataset"} <= set(metrics)  # pooled, named as such
    assert set(rows[0]) == {"name", "dice", "iou", "foreground", "dice_full_res", "iou_full_res"}
    full = metrics["full_res"]["dice"]
    assert full == pytest.approx(np.mean([float(r["dice_full_res"]) for r in rows]), abs=1e-5)


def test_report_matches_the_test_dice_of_training(trained, report):
    printed = dict(line.split()[:2] for line in trained[1].splitlines() if line.startswith("test/"))
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["dice"] == pytest.approx(float(printed["test/dice"]), abs=1e-4)
    assert metrics["iou"] == pytest.approx(float(printed["test/iou"]), abs=1e-4)


def test_overlays_are_drawn_from_the_evaluation_logits(trained, synthetic_root, tmp_path):
    seg = Segmenter.load(_best_ckpt(trained[1]), device="cpu")
    dataset = OxfordPetDataset(synthetic_root, "test", eval_transform(seg.image_size))
    evaluation = evaluate(seg, dataset, keep=3, progress=False)
    dice = evaluation.per_image["dice"]
    assert [dice[i] for i in evaluation.best] == sorted(dice, reverse=True)[:3]
    assert [dice[i] for i in evaluation.worst] == sorted(dice)[:3]

    def no_second_run(*args):
        raise AssertionError("the model ran again")

    seg.model.forward = no_second_run
    assert len(write_overlays(tmp_path, dataset, evaluation, seg)) == 6


def test_report_overlays_best_and_worst(report, synthetic_root):
    pngs = sorted((report / "overlays").glob("*.png"))
    assert len([p for p in pngs if p.name.startswith("best_")]) == 8
    assert len([p for p in pngs if p.name.startswith("worst_")]) == 8
    name = pngs[0].stem.split("_", 2)[2].rsplit("_dice", 1)[0]  # best_01_<name>_dice0.812
    with Image.open(synthetic_root / "images" / f"{name}.jpg") as source:
        width, height = source.size
    with Image.open(pngs[0]) as img:  # image | truth | prediction, at the image's own size
        assert img.mode == "RGB" and img.width >= 3 * width and img.height >= height


def test_predict_masks_at_original_size_and_skips_non_images(trained, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (37, 53), np.uint8), "L").save(inputs / "grey.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 4), np.uint8), "RGBA").save(inputs / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (81, 64, 3), np.uint8)).save(inputs / "photo.jpg")
    (inputs / "broken.jpg").write_text("not an image")
    (inputs / "notes.txt").write_text("not an image, and not named like one: ignored")
    out = tmp_path / "out"
    code = predict_main(["--ckpt", str(trained[0] / RUN / "last.ckpt"), str(inputs),
                         "--output", str(out), "--device", "cpu"])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("petseg")]
    assert code == 1
    assert len(err) == 1 and "broken.jpg" in err[0]
    assert err[0].startswith("petseg-predict: skipped")
    for name, size in [("grey", (53, 37)), ("rgba", (30, 40)), ("photo", (64, 81))]:
        with Image.open(out / f"{name}_mask.png") as mask:
            assert mask.size == size and mask.mode == "L"
            assert set(np.unique(np.asarray(mask))) <= {0, 255}
        with Image.open(out / f"{name}_overlay.png") as overlay:
            assert overlay.size == size and overlay.mode == "RGB"
    assert len(list(out.glob("*_mask.png"))) == 3
    with (out / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and sum(bool(r["mask"]) for r in rows) == 3  # every input is listed
    assert [r["error"] for r in rows if not r["mask"]] == [err[0].split("skipped ", 1)[1]]


def test_predict_never_maps_two_inputs_to_one_output(trained, tmp_path, capsys):
    rng = np.random.default_rng(1)
    sources = {}
    for rel in ("a/cat.jpg", "b/cat.jpg", "c/cat_2.jpg", "c/cat.png", "c/sub/cat.jpg"):
        path = tmp_path / "in" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        height = 20 + len(sources)  # a different size each, to tell the masks apart
        Image.fromarray(rng.integers(0, 255, (height, 30, 3), np.uint8)).save(path)
        sources[rel] = height
    out = tmp_path / "in" / "out"  # inside an input folder: never read back
    inputs = [str(tmp_path / "in" / d) for d in ("a", "b", "c")]
    argv = ["--ckpt", str(trained[0] / RUN / "last.ckpt"), *inputs, "--output", str(out)]
    assert predict_main([*argv, "--device", "cpu"]) == 0
    assert "wrote masks and overlays of 5 image(s)" in capsys.readouterr().out
    with (out / "index.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and len({r["mask"] for r in rows}) == 5
    for row in rows:
        rel = str(Path(row["input"]).relative_to(tmp_path / "in"))
        with Image.open(row["mask"]) as mask:
            assert mask.height == sources[rel], (rel, row["mask"])
    assert (out / "sub" / "cat_mask.png").is_file()  # folders are mirrored
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert predict_main([*argv, "--device", "cpu"]) == 2  # the same command again
    assert "already holds" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    whole = [*argv[:2], str(tmp_path / "in"), "--output", str(out)]  # out/ lies inside in/
    assert predict_main([*whole, "--device", "cpu"]) == 0
    assert "of 5 image(s)" in capsys.readouterr().out  # the masks in out/ were not read back
    assert (out / "a" / "cat_mask.png").is_file() and (out / "index-1.csv").is_file()


def test_predict_applies_exif_orientation(trained, tmp_path):
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 60, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    image.save(tmp_path / "phone.jpg", exif=exif)
    out = tmp_path / "out"
    argv = ["--ckpt", str(trained[0] / RUN / "last.ckpt"), str(tmp_path / "phone.jpg")]
    assert predict_main([*argv, "--output", str(out), "--device", "cpu"]) == 0
    with Image.open(out / "phone_mask.png") as mask:
        assert mask.size == (40, 60)  # as displayed: stored 60x40, turned upright


def test_predict_threshold_comes_from_the_checkpoint(trained, tmp_path, monkeypatch):
    from petseg.segmenter import Segmenter

    seen = []
    monkeypatch.setattr(Segmenter, "mask", lambda self, logits: seen.append(self.threshold)
                        or torch.zeros(logits.shape[-2:], dtype=torch.bool))  # fmt: skip
    ckpt = torch.load(trained[0] / RUN / "last.ckpt", weights_only=True)
    ckpt["hyper_parameters"]["threshold"] = 0.3
    torch.save(ckpt, tmp_path / "t.ckpt")
    image = tmp_path / "x.png"
    Image.new("RGB", (20, 20)).save(image)
    argv = ["--ckpt", str(tmp_path / "t.ckpt"), str(image), "--device", "cpu"]
    assert predict_main([*argv, "--output", str(tmp_path / "out")]) == 0
    assert seen == [0.3]


def test_predict_all_good_inputs_exit_zero(trained, quirks_root, tmp_path):
    images = quirks_root / "images"
    argv = ["--ckpt", str(trained[0] / RUN / "last.ckpt"), str(images), "--output",
            str(tmp_path), "--device", "cpu", "--tta"]  # fmt: skip
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


def test_validation_images_logged_every_epoch_on_the_scalar_axis(trained):
    run = trained[0] / "logs" / "resnet34_unet" / "version_0"
    events = [e for e in sorted(run.glob("events.*")) if "images" in _tags(e)]
    acc = EventAccumulator(str(events[0]), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    grids = acc.Images("val/examples")
    assert [g.step for g in grids] == [s.step for s in acc.Scalars("val/dice")]  # same axis
    assert len(grids) == 2 and grids[0].step > 0
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
