"""petseg-export: each format runs in its own runtime like PyTorch, on real images, any batch."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import DATA, RUN
from petseg import Segmenter
from petseg.checkpoints import ModelSpec, save_weights
from petseg.cli import export_main
from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.export import TOLERANCE, read_metadata
from petseg.models import build_model
from petseg.segmenter import as_rgb

REAL_IMAGES = DATA / "quirks" / "images"  # two real Oxford-IIIT Pet photos (a GIF, an RGBA PNG)


@pytest.fixture(scope="module")
def tiny_pth(tmp_path_factory) -> Path:
    """A self-describing .pth of an 8-wide UNet at 64 px, its BatchNorm statistics not the
    defaults (so an export that dropped them would show)."""
    torch.manual_seed(0)
    model = build_model("unet", base_channels=8).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64) * 2 + 0.5)
    spec = ModelSpec("unet", {"base_channels": 8}, 64, 0.4)
    return save_weights(model.eval(), spec, tmp_path_factory.mktemp("ckpt") / "unet.pth")


def real_batch(seg: Segmenter, n: int) -> torch.Tensor:
    """``n`` preprocessed real images: the photos, then their mirror images."""
    arrays = [as_rgb(p) for p in sorted(REAL_IMAGES.iterdir())]
    arrays += [np.ascontiguousarray(a[:, ::-1]) for a in arrays]
    return torch.stack([seg.preprocess(a) for a in arrays[:n]])


def runtime_logits(path: Path, images: torch.Tensor) -> np.ndarray:
    """Run an exported file in the runtime that deploys it, not through petseg."""
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["logits"], {"images": images.numpy()})[0]
    module = torch.jit.load(str(path)) if path.suffix == ".pt" else torch.export.load(path).module()
    with torch.no_grad():
        return module(images).numpy()


def printed_difference(out: str) -> float:
    return float(re.search(r"max relative diff\s+(\S+)", out).group(1))


@pytest.mark.parametrize("suffix", [".onnx", ".pt", ".pt2"])
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")
def test_export_matches_pytorch_on_real_images_at_any_batch(tiny_pth, tmp_path, capsys, suffix):
    if suffix == ".onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    output = tmp_path / f"model{suffix}"
    code = export_main(["--ckpt", str(tiny_pth), "--output", str(output), "--images",
                        str(REAL_IMAGES)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "on 2 images, batches of 1, 2" in out  # the real photos, batch 1 and all
    assert printed_difference(out) <= TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]  # no leftovers

    assert read_metadata(output) | {"petseg_version": None} == {
        "petseg_version": None,
        "arch": "unet",
        "model_options": {"base_channels": 8},
        "image_size": 64,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "threshold": 0.4,
        "input": "images: float32 (N, 3, 64, 64), RGB resized to 64x64, scaled to 0-1, minus "
        "mean, divided by std (per channel)",
        "output": "logits: float32 (N, 1, 64, 64); pet where sigmoid(logits) > threshold",
    }

    seg = Segmenter.load(tiny_pth, device="cpu")
    for n in (1, 3):  # the batch dimension is dynamic (the export's example batch is 2)
        images = real_batch(seg, n)
        expected = seg.logits(images)
        got = runtime_logits(output, images)
        assert got.shape == (n, 1, 64, 64)
        difference = np.abs(got - expected.numpy()).max() / expected.abs().max().item()
        assert difference <= TOLERANCE


@pytest.mark.slow
def test_export_of_a_trained_lightning_checkpoint(trained, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    ckpt = next((trained[0] / RUN).glob("epoch*.ckpt"))
    output = tmp_path / "resnet.onnx"
    code = export_main(["--ckpt", str(ckpt), "--output", str(output), "--images",
                        *map(str, sorted(REAL_IMAGES.iterdir()))])  # fmt: skip
    assert code == 0
    assert printed_difference(capsys.readouterr().out) <= TOLERANCE
    meta = read_metadata(output)
    assert (meta["arch"], meta["image_size"], meta["model_options"]) == (
        "resnet34_unet",
        64,
        {"base_channels": 8, "bilinear": False},
    )
    seg = Segmenter.load(ckpt, device="cpu")
    images = real_batch(seg, 3)
    expected = seg.logits(images).numpy()
    got = runtime_logits(output, images)
    assert np.abs(got - expected).max() / np.abs(expected).max() <= TOLERANCE


def test_generated_inputs_when_no_images_are_given(tiny_pth, tmp_path, capsys):
    output = tmp_path / "model.ts"  # .ts is TorchScript too
    assert export_main(["--ckpt", str(tiny_pth), "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "TorchScript" in out
    assert "on 3 generated inputs, batches of 1, 3" in out
    assert read_metadata(output)["arch"] == "unet"


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("petseg-export: error: ")
    assert "Traceback" not in captured.err
    return lines[0]


def test_an_existing_output_is_refused_and_kept(tiny_pth, tmp_path, capsys):
    output = tmp_path / "model.pt"
    output.write_bytes(b"an earlier export")
    assert export_main(["--ckpt", str(tiny_pth), "--output", str(output)]) == 2
    assert f"--output {output} already exists" in one_line_error(capsys)
    assert output.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_a_missing_checkpoint_is_one_line_and_writes_nothing(tmp_path, capsys):
    output = tmp_path / "new" / "model.pt2"
    assert export_main(["--ckpt", str(tmp_path / "nope.ckpt"), "--output", str(output)]) == 2
    assert f"checkpoint not found: {tmp_path / 'nope.ckpt'}" in one_line_error(capsys)
    assert not output.parent.exists()


def test_bad_output_names_and_images_are_one_line(tiny_pth, tmp_path, capsys):
    for argv, message in [
        (["--output", str(tmp_path / "model.onnx.zip")], "cannot tell the format from '.zip'"),
        (["--output", str(tmp_path)], "is a folder; pass a file name"),
        (["--output", str(tmp_path / "m.pt"), "--images", str(tmp_path / "no.jpg")],
         f"--images {tmp_path / 'no.jpg'}: no such file or folder"),
    ]:  # fmt: skip
        assert export_main(["--ckpt", str(tiny_pth), *argv]) == 2
        assert message in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["onnx", "onnxscript", "onnxruntime"])
def test_a_missing_export_extra_names_the_install(tiny_pth, tmp_path, capsys, monkeypatch, missing):
    # Whether or not the extra is installed: the other two modules present, this one not
    for name in ("onnx", "onnxscript", "onnxruntime"):
        present = sys.modules.get(name) or types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, None if name == missing else present)
    output = tmp_path / "model.onnx"
    assert export_main(["--ckpt", str(tiny_pth), "--output", str(output)]) == 2
    line = one_line_error(capsys)
    assert f"ONNX export needs {missing}, which is missing" in line
    assert line.endswith("install petseg[export] (pip install onnx onnxruntime onnxscript)")
    assert not output.exists()


@pytest.mark.parametrize(
    ("spoil", "figure"),
    [(lambda logits: logits * 1.01, r"1\.0\de-02"), (lambda logits: logits * torch.nan, "nan")],
)
def test_a_runtime_that_disagrees_is_an_error_and_nothing_is_written(
    tiny_pth, tmp_path, capsys, monkeypatch, spoil, figure
):
    import petseg.export

    runner = petseg.export._RUNNERS["TorchScript"]

    def spoiled(path):
        run, name = runner(path)
        return (lambda images: spoil(run(images))), name

    monkeypatch.setitem(petseg.export._RUNNERS, "TorchScript", spoiled)
    output = tmp_path / "model.pt"
    assert export_main(["--ckpt", str(tiny_pth), "--output", str(output)]) == 2
    line = one_line_error(capsys)
    assert re.search(f"logits differ from PyTorch's by {figure} relative \\(limit 0\\.001\\)", line)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a partial one


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(option in text for option in ["--ckpt", "--output", "--images", "--verbose"])
    assert all(word in text for word in [".onnx", ".pt2", "metadata", "1e-3", "dynamic"])
