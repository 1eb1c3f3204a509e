"""petseg-bench device: the one-call GPU check, run here as its CPU dry run."""

import json
import math

import pytest

from petseg.bench import main as bench_main
from petseg.bench.device import loss_checks


def test_loss_checks_catch_nan_and_loss_that_does_not_fall():
    assert loss_checks([1.0, 0.9, 0.8, 0.7]) == {"finite": True, "falls": True}
    assert loss_checks([0.7, 0.8, 0.9, 1.0]) == {"finite": True, "falls": False}
    assert loss_checks([1.0, math.nan, 0.5, 0.4]) == {"finite": False, "falls": False}
    assert loss_checks([1.0, math.inf]) == {"finite": False, "falls": False}
    assert loss_checks([]) == {"finite": False, "falls": False}


@pytest.mark.slow
def test_dry_run_trains_every_path_and_writes_one_json(tmp_path, capsys):
    out = tmp_path / "out" / "device.json"
    argv = ["device", "--dry-run", "--work_dir", str(tmp_path / "work"), "--output", str(out)]
    code = bench_main(argv)
    result = json.loads(out.read_text())
    assert result["errors"] == {} and result["skipped"] == []
    assert result["dry_run"] is True and result["compile_backend"] == "eager"
    # both architectures, both precisions (16-mixed is 32-true on a CPU), both data paths
    assert set(result["throughput"]) == {
        f"{arch}/{precision}/{path}"
        for arch in ("unet", "resnet34_unet")
        for precision in ("bf16-mixed", "32-true")
        for path in ("standard", "cached")
    }
    for run in result["throughput"].values():
        assert run["steps"] == 6 and run["timed_steps"] == 4 and run["images_per_s"] > 0
        assert run["finite"] and run["falls"], run["losses"]
    dice = result["time_to_dice"]
    assert dice["epochs_run"] == 2 and len(dice["val_dice"]) == 2
    assert 0 <= dice["test_dice"] <= 1 and dice["finite"]
    # a target counts as reached exactly when an epoch's validation Dice reached it
    reached = {str(t) for t in (0.85, 0.90, 0.95) if max(dice["val_dice"]) >= t}
    assert set(dice["seconds_to_val_dice"]) == reached
    assert result["ok"] is (code == 0) and code == 0
    assert "all checks passed: True" in capsys.readouterr().out
    # the data travelled with the check: generated in the work folder
    assert (tmp_path / "work" / "data" / "annotations" / "trainval.txt").is_file()


def test_dry_run_refuses_an_existing_output_and_a_used_work_dir(tmp_path, capsys):
    out = tmp_path / "device.json"
    out.write_text("earlier results\n")
    assert bench_main(["device", "--dry-run", "--output", str(out)]) == 2
    assert out.read_text() == "earlier results\n"
    assert "already exists" in capsys.readouterr().err
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("x")
    argv = ["device", "--dry-run", "--work_dir", str(work), "--output", str(tmp_path / "d.json")]
    assert bench_main(argv) == 2
    assert "is not empty" in capsys.readouterr().err and not (tmp_path / "d.json").exists()


def test_without_a_gpu_the_real_check_says_so_in_one_line(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert bench_main(["device", "--output", str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "petseg-bench device: error: no CUDA device here; "
        "petseg-bench device --dry-run runs on the CPU"
    )


@pytest.mark.slow
def test_dice_s_keeps_the_budget_for_the_time_to_dice_run(tmp_path):
    # every throughput run would start with less than reserve_s + dice_s left, so all are
    # skipped and named, and the time-to-Dice run still gets its time
    out = tmp_path / "device.json"
    argv = ["device", "--dry-run", "--work_dir", str(tmp_path / "work"), "--output", str(out)]
    assert bench_main([*argv, "--budget_s", "500", "--dice_s", "450"]) == 0
    result = json.loads(out.read_text())
    assert result["throughput"] == {} and len(result["skipped"]) == 8
    assert result["time_to_dice"]["epochs_run"] == 2


def test_device_data_reduces_images_and_keeps_trimap_labels(tmp_path):
    """scripts/device_data.py: the copy that travels to the device keeps the layout, the lists
    and the trimaps' three labels (nearest-neighbour), with the longest side reduced."""
    import importlib.util
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from petseg.data.synthetic import make_synthetic_dataset

    script = Path(__file__).parents[1] / "scripts" / "device_data.py"
    spec = importlib.util.spec_from_file_location("device_data", script)
    device_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device_data)
    source = make_synthetic_dataset(tmp_path / "source", 4, 2, size_range=(60, 90))
    target = tmp_path / "reduced"
    assert device_data.main([str(source), str(target), "--side", "40"]) == 0
    for name in ("trainval.txt", "test.txt"):
        lists = (target / "annotations" / name).read_text()
        assert lists == (source / "annotations" / name).read_text()
    trimaps = sorted((target / "annotations" / "trimaps").glob("*.png"))
    assert len(trimaps) == len(list((source / "images").glob("*.jpg"))) == 6
    for trimap in trimaps:
        reduced = np.asarray(Image.open(trimap))
        original = Image.open(source / "annotations" / "trimaps" / trimap.name)
        assert max(reduced.shape) == 40
        nearest = original.resize(reduced.shape[::-1], Image.Resampling.NEAREST)
        assert (reduced == np.asarray(nearest)).all()  # labels stay labels, none blended
        with Image.open(target / "images" / f"{trimap.stem}.jpg") as image:
            assert image.size == reduced.shape[::-1]
    assert "Not the original resolution" in (target / "REDUCED.md").read_text()
    with pytest.raises(SystemExit):  # an existing folder is never written into
        device_data.main([str(source), str(target)])
