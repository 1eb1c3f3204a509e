"""petseg-bench's parts that run without a GPU: the peer training run and the fast settings
of the time-to-Dice run (the benchmark's own CPU run is in test_fast.py)."""

import json
import math
import sys

import pytest
import torch
import yaml

from petseg.bench import FAST_CONFIG
from petseg.bench import main as bench_main
from petseg.bench.peer import main as peer_main


def test_peer_trains_and_writes_its_json(synthetic_root, tmp_path, capsys):
    pytest.importorskip("segmentation_models_pytorch")
    out = tmp_path / "peer.json"
    argv = ["--root", str(synthetic_root), "--size", "32", "--epochs", "1", "--seed", "0",
            "--output", str(out)]  # fmt: skip
    assert peer_main(argv) == 0
    result = json.loads(out.read_text())
    assert result["seed"] == 0 and result["best_epoch"] == 0 and len(result["history"]) == 1
    for key in ("best_val_dice", "test_dice", "test_dice_full_res"):
        assert 0.0 <= result[key] <= 1.0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == {k: v for k, v in result.items() if k != "history"}


def test_peer_without_smp_is_one_line(synthetic_root, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # import fails
    assert bench_main(["peer", "--root", str(synthetic_root), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "petseg-bench peer: error: segmentation-models-pytorch is not installed; "
        "pip install -e .[bench]"
    )


def test_time_to_dice_trains_with_configs_fast_yaml(synthetic_root, tmp_path):
    from petseg.bench.time_to_dice import fast_setup, read_config

    config = yaml.safe_load(FAST_CONFIG.read_text())
    module, dm, trainer = fast_setup(read_config(FAST_CONFIG), str(synthetic_root), "unet", 2,
                                     str(tmp_path))  # fmt: skip
    assert {k: module.hparams[k] for k in config["model"]} == config["model"]
    assert module.hparams.arch == "unet" and module.hparams.log_images == 0
    data = {k: v for k, v in config["data"].items() if k not in ("root", "cache_dir")}
    assert {k: dm.hparams[k] for k in data} == data
    assert dm.root == str(synthetic_root) and dm.cache_dir == str(tmp_path)
    kept = {k: v for k, v in config["trainer"].items() if k not in ("max_epochs", "precision")}
    assert {k: trainer[k] for k in kept} == kept
    assert trainer["max_epochs"] == 2 and trainer["logger"] is False
    assert config["trainer"]["precision"] is None and trainer["precision"]  # petseg-train's pick


def test_a_missing_config_is_named(tmp_path):
    from petseg.bench.time_to_dice import read_config
    from petseg.errors import PetsegError

    with pytest.raises(PetsegError, match=f"config not found: {tmp_path / 'nope.yaml'}"):
        read_config(tmp_path / "nope.yaml")


def test_time_to_dice_runs_on_the_cpu_with_a_shrunk_fast_config(synthetic_root, tmp_path):
    from petseg.bench.time_to_dice import read_config, time_to_dice

    config = read_config(FAST_CONFIG)
    config["model"] |= {"compile": False, "base_channels": 8}
    config["data"] |= {"image_size": 32, "batch_size": 8}
    config["trainer"] |= {"accelerator": "cpu"}
    result = time_to_dice(str(synthetic_root), "resnet34_unet", 1, config, str(tmp_path), (0.0,))
    assert result["epochs"] == 1 and result["train_images"] == 36
    assert set(result["seconds_to_val_dice"]) == {"0.0"} and 0.0 <= result["test_dice"] <= 1.0
    assert result["extrapolated_full_epoch_s (3312 images, an extrapolation)"] > 0


def test_bf16_training_step_runs_channels_last_under_autocast():
    from petseg.bench.throughput import train_step_bench
    from petseg.models import build_model

    for bf16, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        model = build_model("unet", base_channels=8)
        first_conv = model.inc.block[0]
        seen: list[torch.dtype] = []
        first_conv.register_forward_hook(lambda m, args, out, seen=seen: seen.append(out.dtype))
        stats = train_step_bench(model, torch.device("cpu"), 2, 32, 1, bf16=bf16)
        assert stats["images_per_s"] > 0 and set(seen) == {dtype}
        assert first_conv.weight.is_contiguous(memory_format=torch.channels_last) == bf16


def test_curves_plot_petseg_and_peer_runs_against_seconds(trained, tmp_path, capsys):
    from petseg.bench.curves import main as curves_main
    from petseg.bench.curves import petseg_curve

    run = trained[0] / "logs" / "resnet34_unet" / "version_0"
    curve = petseg_curve(run)
    assert len(curve) == 2 and all(t >= 0 and 0 <= d <= 1 for t, d in curve)
    assert curve[0][0] < curve[1][0]  # seconds grow with the epochs
    peer = tmp_path / "peer.json"
    peer.write_text(json.dumps({"history": [[10.0, 0.5], [20.0, 0.7]]}))
    out = tmp_path / "curves.png"
    argv = ["--run", str(run), "--peer", str(peer), "--output", str(out)]
    assert curves_main(argv) == 0 and out.read_bytes().startswith(b"\x89PNG")
    assert curves_main(argv) == 2  # never replaced
    assert "already exists" in capsys.readouterr().err


def test_learning_curve_recovers_a_power_law_and_projects(tmp_path, capsys):
    from petseg.bench.learning_curve import fit_power_law, project

    exact = [(n, 1 - 2.0 * n**-0.5) for n in (100, 200, 400, 800)]
    a, b = fit_power_law(exact)
    assert (a, b) == (pytest.approx(2.0), pytest.approx(0.5))
    p = project(exact, 3200)
    assert p["dice"] == pytest.approx(1 - 2.0 * 3200**-0.5)
    assert p["dice_low"] == pytest.approx(p["dice"]) == pytest.approx(p["dice_high"])
    assert math.isnan(project(exact[:2], 3200)["dice_low"])  # two runs: no interval
    points = tmp_path / "points.csv"
    rows = [f"unet,{n},0,{d}" for n, d in exact]
    points.write_text("arch,train_images,seed,test_dice\n" + "\n".join(rows) + "\n")
    out = tmp_path / "curve.png"
    assert bench_main(["learning-curve", str(points), "--output", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "projected to 3312 images: 0.965" in capsys.readouterr().out
    points.write_text("arch,images\nunet,3\n")
    assert bench_main(["learning-curve", str(points)]) == 2
    assert "needs the columns arch, train_images, seed, test_dice" in capsys.readouterr().err
