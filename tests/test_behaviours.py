"""Behaviours of the design card, each tested so that a small planted bug fails its test.

Every test here fails on at least one mutant of ``tools/mutants.py`` (named in its docstring)
that the rest of the suite let through; run ``python tools/mutants.py`` to check.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from PIL import Image
from test_fast import _off_edge_disagreements, _shapes_on_grey

import petseg
from conftest import LEARNING_LR, RUN, train_args
from petseg.cli import predict_main
from petseg.data import OxfordPetDataset, PetDataModule
from petseg.data.dataset import read_mask
from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.data.transforms import eval_transform, train_transform
from petseg.evaluation import evaluate
from petseg.losses import SegmentationLoss, soft_dice_loss
from petseg.runs import new_run
from petseg.tensorboard import epoch_curves, event_files, read_scalars


def _quick(root: Path, tmp_path: Path, *extra: str) -> list[str]:
    """A UNet run at 32 px that learns the synthetic task in a few seconds."""
    return train_args(root, tmp_path, "--arch", "unet", "--data.image_size", "32",
                      "--model.lr", LEARNING_LR, *extra)  # fmt: skip


# -- checkpoint selection ---------------------------------------------------------------------


class SpoilLastValidation(Callback):
    """Makes the last epoch's validation predict no pet at all (Dice 0, a large loss), so that
    the best epoch is not the last one. Training itself is left alone."""

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == trainer.max_epochs - 1:
            self.hook = pl_module.net.register_forward_hook(lambda m, i, out: out - 1e3)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if getattr(self, "hook", None) is not None:
            self.hook.remove()
            self.hook = None


def test_the_checkpoint_kept_is_the_best_validation_dice(synthetic_root, tmp_path):
    """Mutants: mode="min", monitor="val/loss", the last checkpoint taken as the best, the
    .pth exported from the last checkpoint."""
    result = petseg.train(_quick(synthetic_root, tmp_path, "--trainer.max_epochs", "3"),
                          callbacks=[SpoilLastValidation()], test=False)  # fmt: skip
    logged = [v for _, v in epoch_curves(result.run.log_dir)["val/dice"]]
    assert len(logged) == 3 and logged[2] == 0.0  # the spoilt epoch
    assert max(logged) > 0.3 and logged[0] != logged[1], logged  # it learnt: epochs differ
    best = int(np.argmax(logged))
    assert result.best_epoch == best != 2
    assert result.best_val_dice == pytest.approx(logged[best])
    assert result.best_checkpoint.name == f"epoch{best:03d}-dice{logged[best]:.4f}.ckpt"
    ckpt = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == best
    weights = torch.load(result.weights, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in weights.items():  # the .pth holds the best epoch's weights
        torch.testing.assert_close(value, ckpt["state_dict"][f"net.{key}"])
    last = torch.load(result.run.ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 2
    assert any(not torch.equal(w, last["state_dict"][f"net.{k}"]) for k, w in weights.items())


# -- run folders -------------------------------------------------------------------------------


def test_two_runs_never_share_a_folder(tmp_path):
    """Mutant: new_run takes max(N) instead of max(N) + 1 and reuses an existing folder."""
    save, logs = tmp_path / "saved", tmp_path / "logs"
    first = new_run(save, logs, "unet")
    (first.ckpt_dir / "unet.pth").write_text("the first run's weights")
    second = new_run(save, logs, "unet")
    assert (first.version, second.version) == (0, 1)
    assert second.ckpt_dir != first.ckpt_dir and second.log_dir != first.log_dir
    assert second.ckpt_dir.is_dir() and not any(second.ckpt_dir.iterdir())
    (logs / "unet" / "version_2").mkdir(parents=True)  # logs of a run saved elsewhere
    third = new_run(save, logs, "unet")
    assert third.version == 3
    versions = sorted(p.name for p in (save / "unet").iterdir())
    assert versions == ["version_0", "version_1", "version_3"]
    assert (first.ckpt_dir / "unet.pth").read_text() == "the first run's weights"


# -- data --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    """Coloured shapes on a grey texture in the official layout (trimaps: 1 pet, 2 else)."""
    root = tmp_path_factory.mktemp("shapes")
    (root / "images").mkdir()
    (root / "annotations" / "trimaps").mkdir(parents=True)
    images, masks = _shapes_on_grey(20, 48)
    names = [f"shape_{i}" for i in range(len(images))]
    for name, image, mask in zip(names, images, masks, strict=True):
        # PNG bytes under a .jpg name (as some official files are): no JPEG colour bleeding
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "images" / f"{name}.jpg",
                                                             format="PNG")  # fmt: skip
        Image.fromarray((2 - mask.numpy()).astype(np.uint8)).save(
            root / "annotations" / "trimaps" / f"{name}.png"
        )
    (root / "annotations" / "trainval.txt").write_text("".join(f"{n} 1 1 1\n" for n in names))
    (root / "annotations" / "test.txt").write_text(f"{names[0]} 1 1 1\n")
    return root


def _to_255(images: torch.Tensor) -> torch.Tensor:
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
    return images * std + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255


@pytest.mark.parametrize("preset", ["basic", "strong"])
def test_image_and_mask_share_their_geometry_on_the_standard_path(shapes_root, preset):
    """Mutant: OxfordPetDataset transforms the mask with a second, independent random draw."""
    dataset = OxfordPetDataset(shapes_root, "train", train_transform(48, preset))
    items = [dataset[(seed, seed % len(dataset))] for seed in range(40)]
    images = _to_255(torch.stack([image for image, _ in items]))
    masks = torch.stack([mask for _, mask in items])
    raw = torch.stack([torch.from_numpy(dataset.load(i % len(dataset))[1]) for i in range(40)])
    assert (masks != raw).sum() > 5_000  # the geometry did change
    assert _off_edge_disagreements(images, masks) == 0


def test_validation_images_are_not_augmented(synthetic_root):
    """Mutant: the valid split gets the training transform."""
    data = PetDataModule(str(synthetic_root), image_size=64, batch_size=4, num_workers=0,
                         augment="strong")  # fmt: skip
    data.setup("fit")
    valid = data.datasets["valid"]
    plain = OxfordPetDataset(synthetic_root, "valid")
    transform = eval_transform(64)
    for epoch in range(2):
        for i in range(len(valid)):
            image, mask = valid[(epoch * 1000 + i, i)]  # seeded as the training sampler does
            expected = transform(image=plain.load(i)[0], mask=plain.load(i)[1])
            torch.testing.assert_close(image, expected["image"])
            assert torch.equal(mask, expected["mask"])
    images, _ = next(iter(data.val_dataloader()))
    first = torch.stack([transform(image=plain.load(i)[0])["image"] for i in range(len(images))])
    torch.testing.assert_close(images, first)


def test_a_cache_file_is_never_unpickled(synthetic_root, tmp_path):
    """Mutant: the cache read with weights_only=False (arbitrary code runs on load)."""
    from petseg.data import cache as cache_module
    from petseg.data.cache import CachedSplit

    dataset = OxfordPetDataset(synthetic_root, "valid")
    good = CachedSplit.load_or_build(dataset, 32, tmp_path)
    path = cache_module.cache_path(dataset, 32, tmp_path)
    marker = tmp_path / "code-ran"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))  # a pickle that runs code when loaded
    with pytest.warns(UserWarning, match=f"cache file {path} is not a usable petseg cache"):
        rebuilt = CachedSplit.load_or_build(dataset, 32, tmp_path)
    assert not marker.exists()
    assert torch.equal(rebuilt.images, good.images)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


# -- losses ------------------------------------------------------------------------------------


def _two_images() -> tuple[torch.Tensor, torch.Tensor]:
    """A large mask predicted well and a small one missed: per-image and pooled Dice
    differ a lot."""
    target = torch.zeros(2, 1, 16, 16)
    target[0, :, 2:14, 2:14] = 1
    target[1, :, 0:2, 0:2] = 1
    logits = torch.where(target > 0, 4.0, -4.0)
    logits[1] = -4.0  # the second image: its pet missed
    return logits, target


def test_soft_dice_loss_is_per_image():
    """Mutant: the soft Dice pooled over the batch."""
    logits, target = _two_images()
    probs = torch.sigmoid(logits)
    per_image = [
        1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
        for p, t in zip(probs, target, strict=True)
    ]
    expected = torch.stack(per_image).mean()
    pooled = 1 - (2 * (probs * target).sum() + 1) / (probs.sum() + target.sum() + 1)
    assert abs(float(expected - pooled)) > 0.2  # the case tells the two apart
    torch.testing.assert_close(soft_dice_loss(logits, target), expected)


@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_bce_dice_is_bce_plus_weighted_soft_dice(weight):
    """Mutant: bce_dice returns the BCE term alone."""
    logits, target = _two_images()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    expected = bce + weight * soft_dice_loss(logits, target)
    torch.testing.assert_close(SegmentationLoss("bce_dice", weight)(logits, target), expected)
    lovasz = SegmentationLoss("bce_lovasz", weight)(logits, target)
    assert float(lovasz) > float(bce) and float(expected) > float(bce)


# -- thresholds, TTA, full resolution (on the shared run, which learns) ------------------------


@pytest.fixture(scope="module")
def best_pth(trained) -> Path:
    return trained[0] / RUN / "resnet34_unet.pth"


def _test_images(root: Path, n: int = 6) -> list[Path]:
    ds = OxfordPetDataset(root, "test")
    return [ds.image_path(name) for name in ds.names[:n]]


def test_the_shared_run_learns(trained, synthetic_root):
    """The fixture that the tests below stand on predicts pets, better each epoch."""
    val = [v for _, v in epoch_curves(trained[0] / "logs" / "resnet34_unet" / "version_0")[
        "val/dice"]]  # fmt: skip
    assert val[0] < val[1] and val[1] > 0.25, val
    seg = petseg.Segmenter.load(trained[0] / RUN / "resnet34_unet.pth", device="cpu")
    masks = seg.predict(_test_images(synthetic_root))
    assert all(0 < m.sum() < m.size for m in masks)  # some pet, not all pet, in every image


def test_segmenter_load_threshold_sets_the_cut(best_pth, synthetic_root):
    """Mutant: Segmenter.load ignores its threshold."""
    images = _test_images(synthetic_root)
    plain = petseg.Segmenter.load(best_pth, device="cpu")
    probs = plain.predict_proba(images)
    for threshold in (0.2, 0.8):
        seg = petseg.Segmenter.load(best_pth, device="cpu", threshold=threshold)
        assert seg.threshold == threshold
        for mask, prob in zip(seg.predict(images), probs, strict=True):
            np.testing.assert_array_equal(mask, (prob > threshold).astype(np.uint8))
    low = petseg.Segmenter.load(best_pth, device="cpu", threshold=0.2).predict(images)
    high = petseg.Segmenter.load(best_pth, device="cpu", threshold=0.8).predict(images)
    assert sum(int(m.sum()) for m in low) > sum(int(m.sum()) for m in high)


def _predicted(pth: Path, images: list[Path], out: Path, *extra: str) -> dict[str, np.ndarray]:
    inputs = out.with_name(out.name + "-in")
    inputs.mkdir()
    for image in images:
        shutil.copy(image, inputs)
    argv = ["--ckpt", str(pth), str(inputs), "--output", str(out), "--device", "cpu", *extra]
    assert predict_main(argv) == 0
    return {p.name: np.asarray(Image.open(p)) > 0 for p in sorted(out.glob("*_mask.png"))}


def test_predict_threshold_and_tta_change_the_masks(best_pth, synthetic_root, tmp_path):
    """Mutants: petseg-predict ignores --threshold; petseg-predict ignores --tta."""
    images = _test_images(synthetic_root)
    plain = _predicted(best_pth, images, tmp_path / "plain")
    low = _predicted(best_pth, images, tmp_path / "low", "--threshold", "0.2")
    tta = _predicted(best_pth, images, tmp_path / "tta", "--tta")
    assert len(plain) == len(images)
    expected_low = petseg.Segmenter.load(best_pth, device="cpu", threshold=0.2).predict(images)
    expected_tta = petseg.Segmenter.load(best_pth, device="cpu", tta=True).predict(images)
    for name, exp_low, exp_tta in zip(plain, expected_low, expected_tta, strict=True):
        np.testing.assert_array_equal(low[name], exp_low.astype(bool))
        np.testing.assert_array_equal(tta[name], exp_tta.astype(bool))
    assert sum(int(m.sum()) for m in low.values()) > sum(int(m.sum()) for m in plain.values())
    assert any((tta[n] != plain[n]).any() for n in plain)


def test_validation_dice_uses_the_model_threshold(trained, synthetic_root):
    """Mutant: the training metrics ignore --model.threshold (always 0.5)."""
    import lightning as L

    from petseg.module import SegmentationModule

    last = trained[0] / RUN / "last.ckpt"
    valid = OxfordPetDataset(synthetic_root, "valid")
    scores = {}
    for threshold in (0.2, 0.8):
        module = SegmentationModule.load_from_checkpoint(
            last, map_location="cpu", weights_only=True, threshold=threshold, log_images=0
        )
        data = PetDataModule(str(synthetic_root), image_size=64, batch_size=8, num_workers=0)
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_model_summary=False)  # fmt: skip
        (logged,) = trainer.validate(module, datamodule=data, verbose=False)
        seg = petseg.Segmenter.load(last, device="cpu", threshold=threshold)
        expected = evaluate(seg, valid, progress=False).summary["dice"]
        assert logged["val/dice"] == pytest.approx(expected, abs=1e-5)
        scores[threshold] = logged["val/dice"]
    assert scores[0.2] != pytest.approx(scores[0.8], abs=1e-3)


def test_full_res_scores_the_original_size_mask(best_pth, synthetic_root):
    """Mutant: --full-res scores the upsampled prediction against the model-size mask."""
    seg = petseg.Segmenter.load(best_pth, device="cpu")
    test = OxfordPetDataset(synthetic_root, "test")
    evaluation = evaluate(seg, test, full_res=True, progress=False)
    expected = []
    for name in test.names:
        pred = seg.predict(test.image_path(name)).astype(bool)
        truth = read_mask(test.mask_path(name)).astype(bool)
        expected.append(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
    np.testing.assert_allclose(evaluation.per_image["dice_full_res"], expected, atol=1e-6)
    assert evaluation.full_res["dice"] == pytest.approx(np.mean(expected), abs=1e-6)
    assert evaluation.full_res["dice"] != pytest.approx(evaluation.summary["dice"], abs=1e-4)


# -- precision ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_the_gpu_precision_pick(monkeypatch, bf16, expected):
    """Mutant: the GPU branch swapped (bf16 where unsupported, 16-mixed where bf16 works)."""
    from petseg import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    for accelerator in (None, "auto", "gpu", "cuda"):
        assert precision.auto_precision(accelerator) == expected
    monkeypatch.setattr(precision, "cpu_has_amx", lambda *a: False)
    assert precision.auto_precision("cpu") == "32-true"  # a GPU present, the CPU asked for


@pytest.mark.gpu
def test_training_on_the_gpu_with_the_precision_pick(synthetic_root, tmp_path):
    """On a real CUDA device: petseg's pick is what the device supports, and a short run on it
    learns (its test Dice is scored on the same device)."""
    from petseg.precision import auto_precision

    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert auto_precision("gpu") == expected
    argv = _quick(synthetic_root, tmp_path, "--trainer.max_epochs", "4")
    argv = [a for a in argv if a not in ("--trainer.precision", "32-true")]
    argv[argv.index("--trainer.accelerator") + 1] = "gpu"
    result = petseg.train(argv)
    ckpt = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["arch"] == "unet"
    assert result.best_val_dice > 0.3 and result.test["dice"] > 0.3, result


# -- options that no config trains with --------------------------------------------------------


def _lr_per_epoch(log_dir: Path) -> list[float]:
    scalars = {}
    for events in event_files(log_dir):
        scalars |= {t: v for t, v in read_scalars(events).items() if t == "train/lr"}
    assert len(scalars) == 1, scalars
    return [value for _, value in next(iter(scalars.values()))]


def test_the_exponential_schedule_steps_once_per_epoch(synthetic_root, tmp_path):
    """Mutant: the exponential scheduler steps after every batch."""
    argv = _quick(synthetic_root, tmp_path, "--trainer.max_epochs", "3",
                  "--model.scheduler", "exponential", "--model.gamma", "0.5")  # fmt: skip
    result = petseg.train(argv, test=False)
    lr = float(LEARNING_LR)
    assert _lr_per_epoch(result.run.log_dir) == pytest.approx([lr, lr / 2, lr / 4])
    assert result.best_val_dice > 0.2


@pytest.mark.parametrize(
    ("options", "min_dice"),
    [
        (("--model.optimizer", "sgd", "--model.lr", "0.05"), 0.2),
        # RAdam's rectified warm-up takes small steps at first: after 15 steps its loss has
        # fallen but it predicts no pet pixel yet
        (("--model.optimizer", "radam"), 0.0),
        (("--model.loss", "lovasz"), 0.2),
        (("--model.loss", "mse"), 0.2),
    ],
    ids=["sgd", "radam", "lovasz", "mse"],
)
def test_every_optimizer_and_loss_trains(synthetic_root, tmp_path, options, min_dice):
    """Options no config or other test trains with: a short run's loss falls with each, and
    the validation Dice rises above ``min_dice``."""
    argv = _quick(synthetic_root, tmp_path, "--trainer.max_epochs", "3", *options)
    result = petseg.train(argv, test=False)
    ckpt = torch.load(result.run.ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    hparams = ckpt["hyper_parameters"]
    for option, value in zip(options[::2], options[1::2], strict=True):
        assert str(hparams[option.removeprefix("--model.")]) == value
    state = ckpt["optimizer_states"][0]["state"][0]
    if "sgd" in options:
        assert set(state) == {"momentum_buffer"}
    elif "radam" in options:
        assert {"exp_avg", "exp_avg_sq"} <= set(state)
    curves = epoch_curves(result.run.log_dir)
    train_loss = [v for _, v in curves["train/loss"]]
    assert all(np.isfinite(train_loss)) and train_loss[-1] < train_loss[0], train_loss
    assert max(result.val_dice) >= min_dice, result.val_dice
