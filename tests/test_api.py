"""The Python API (``petseg.Segmenter``), quick commands, and the GPU code paths run on the CPU."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import petseg
from conftest import RUN, train_args
from petseg.cli import train_main
from petseg.errors import PetsegError
from petseg.models import ResNet34Encoder


@pytest.fixture(scope="module")
def seg(trained):
    return petseg.Segmenter.load(trained[0] / RUN / "resnet34_unet.pth", device="cpu")


def test_load_describes_the_model(seg, trained):
    assert (seg.arch, seg.image_size, seg.threshold) == ("resnet34_unet", 64, 0.5)
    assert isinstance(seg.model, torch.nn.Module) and not seg.model.training
    from_ckpt = petseg.Segmenter.load(next((trained[0] / RUN).glob("epoch*.ckpt")), device="cpu")
    for key, value in from_ckpt.model.state_dict().items():  # the .pth is the best checkpoint
        assert torch.equal(value, seg.model.state_dict()[key]), key


def test_predict_takes_paths_pil_images_arrays_and_lists(seg, quirks_root):
    path = quirks_root / "images" / "Abyssinian_5.jpg"  # an RGBA PNG named .jpg
    with Image.open(path) as img:
        pil = img.copy()
    array = np.asarray(pil.convert("RGB"))
    mask = seg.predict(path)
    assert mask.dtype == np.uint8 and mask.shape == array.shape[:2]
    assert set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(seg.predict(pil), mask)
    assert np.array_equal(seg.predict(array), mask)
    probs = seg.predict_proba(array)
    assert probs.dtype == np.float32 and probs.shape == mask.shape
    assert probs.min() >= 0 and probs.max() <= 1
    assert np.array_equal((probs > seg.threshold).astype(np.uint8), mask)
    grey = pil.convert("L")
    batch = seg.predict([path, grey, array, quirks_root / "images" / "Abyssinian_34.jpg"])
    assert len(batch) == 4 and np.array_equal(batch[0], mask)
    assert batch[1].shape == mask.shape and batch[3].shape == (202, 250)


def test_batches_give_the_same_masks_as_single_images(trained, quirks_root):
    images = sorted((quirks_root / "images").glob("*.jpg")) * 3
    one = petseg.Segmenter.load(trained[0] / RUN / "last.ckpt", device="cpu", batch_size=1)
    many = petseg.Segmenter.load(trained[0] / RUN / "last.ckpt", device="cpu", batch_size=4)
    for a, b in zip(one.predict_proba(images), many.predict_proba(images), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_pil_images_are_used_as_displayed(seg):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate to display
    image.info["exif"] = exif.tobytes()
    assert seg.predict(image).shape == (60, 40)


def test_bad_inputs_are_one_line_errors(seg):
    with pytest.raises(PetsegError, match="float64"):
        seg.predict(np.zeros((4, 4, 3)))
    with pytest.raises(PetsegError, match="cannot segment a dict"):
        seg.predict({})
    with pytest.raises(PetsegError, match="not found"):
        petseg.Segmenter.load("nowhere.pth")


def test_flip_tta_averages_the_mirror_image(trained, quirks_root):
    path = quirks_root / "images" / "Abyssinian_5.jpg"
    plain = petseg.Segmenter.load(trained[0] / RUN / "last.ckpt", device="cpu")
    tta = petseg.Segmenter.load(trained[0] / RUN / "last.ckpt", device="cpu", tta=True)
    array = np.asarray(Image.open(path).convert("RGB"))
    mirrored = np.ascontiguousarray(array[:, ::-1])
    expected = (plain.predict_proba(array) + plain.predict_proba(mirrored)[:, ::-1]) / 2
    # TTA averages logits, not probabilities: equal where the two agree, close elsewhere
    np.testing.assert_allclose(tta.predict_proba(array), expected, atol=0.05)
    assert not np.allclose(tta.predict_proba(array), plain.predict_proba(array))


def _imported_by_help(mains: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after each main's ``--help``."""
    code = (
        "import sys\n"
        "from petseg.cli import compare_main, export_main, predict_main, test_main, train_main\n"
        "from petseg.data.synthetic import main as synth_main\n"
        f"for main in ({mains},):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        f"print([m for m in {modules!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


EXPORT_MODULES = ("onnx", "onnxruntime", "onnxscript")


def test_help_of_every_command_starts_without_lightning_or_torch():
    mains = "train_main, predict_main, test_main, compare_main, export_main, synth_main"
    heavy = ("torch", "lightning", "tensorboard", "matplotlib", "albumentations", "kornia",
             "torchmetrics", *EXPORT_MODULES)  # fmt: skip
    assert _imported_by_help(mains, heavy) == []


def test_resnet_stem_keeps_its_max_pool_like_torchvision():
    torchvision = pytest.importorskip("torchvision")
    x = torch.randn(1, 3, 64, 96)
    ours = ResNet34Encoder()(x)
    ref = torchvision.models.resnet34()
    f1 = ref.relu(ref.bn1(ref.conv1(x)))
    stages, y = [f1], ref.maxpool(f1)
    for layer in (ref.layer1, ref.layer2, ref.layer3, ref.layer4):
        y = layer(y)
        stages.append(y)
    assert [tuple(f.shape) for f in ours] == [tuple(f.shape) for f in stages]


@pytest.mark.parametrize(
    "option", [("--trainer.precision", "bf16-mixed"), ("--model.compile", "true")]
)
def test_gpu_code_paths_train_an_epoch_on_the_cpu(option, synthetic_root, tmp_path):
    extra = ("--trainer.max_epochs", "1", "--data.image_size", "32", *option)
    assert train_main(train_args(synthetic_root, tmp_path, *extra)) == 0
    weights = torch.load(tmp_path / RUN / "resnet34_unet.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights["state_dict"].values())


class _Specks(torch.nn.Module):
    """A stand-in model: the same pet with a hole, and a speck beside it, for any image."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.full((len(images), 1, *images.shape[-2:]), -4.0)
        logits[..., 4:24, 4:24] = 4.0
        logits[..., 12:14, 12:14] = -4.0  # a hole
        logits[..., 27:30, 27:30] = 4.0  # a speck
        return logits


def test_the_segmenter_postprocesses_masks_into_one_region_without_holes(quirks_root):
    from scipy import ndimage

    from petseg.checkpoints import ModelSpec

    spec = ModelSpec("unet", {}, image_size=32)
    seg = petseg.Segmenter(_Specks(), spec, device="cpu", postprocess="both")
    plain = petseg.Segmenter(_Specks(), spec, device="cpu")
    image = quirks_root / "images" / "Abyssinian_5.jpg"
    mask, raw = seg.predict(image), plain.predict(image)
    assert ndimage.label(raw, structure=np.ones((3, 3), bool))[1] == 2
    assert ndimage.label(mask, structure=np.ones((3, 3), bool))[1] == 1  # at the image's size
    assert (ndimage.binary_fill_holes(raw) != raw).any()
    assert (ndimage.binary_fill_holes(mask) == mask).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "--batch_size 0 is out of range"),
        ({"batch_size": 2.5}, "--batch_size 2.5 is out of range"),
        ({"postprocess": "biggest"}, "--postprocess 'biggest' is not one of: none, largest"),
    ],
)
def test_the_segmenter_refuses_bad_options_from_python_as_the_parser_does(options, message):
    from petseg.checkpoints import ModelSpec

    with pytest.raises(PetsegError, match=message):
        petseg.Segmenter(_Specks(), ModelSpec("unet", {}, image_size=32), device="cpu", **options)
