"""The cached data path, batched augmentation and the benchmark command."""

import json

import pytest
import torch

from conftest import train_args
from petseg.bench import main as bench_main
from petseg.cli import train_main
from petseg.data import OxfordPetDataset, PetDataModule, gpu_augment
from petseg.data.cache import CachedSplit, cache_key
from petseg.data.transforms import eval_transform


def test_cached_path_matches_the_standard_path_without_augmentation(synthetic_root, tmp_path):
    standard = OxfordPetDataset(synthetic_root, "train", eval_transform(48))
    cached = CachedSplit.load_or_build(OxfordPetDataset(synthetic_root, "train"), 48, tmp_path)
    for i in (0, 7, len(standard) - 1):
        image, mask = standard[i]
        c_image, c_mask = cached[i]
        torch.testing.assert_close(
            gpu_augment.normalize(c_image[None])[0], image, rtol=0, atol=1e-6
        )
        assert torch.equal(c_mask, mask)


def test_datamodule_cache_batches_equal_standard_batches(synthetic_root, tmp_path):
    def first_valid_batch(cache: bool):
        dm = PetDataModule(str(synthetic_root), image_size=40, batch_size=4, num_workers=0,
                           augment="none", cache=cache, cache_dir=str(tmp_path))  # fmt: skip
        dm.setup("fit")
        batch = next(iter(dm.val_dataloader()))
        return dm.on_after_batch_transfer(batch, 0)

    (a_img, a_mask), (b_img, b_mask) = first_valid_batch(False), first_valid_batch(True)
    torch.testing.assert_close(b_img, a_img, rtol=0, atol=1e-6)
    assert torch.equal(a_mask, b_mask)


def test_cache_is_reused_and_rebuilt_when_files_or_size_change(synthetic_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    dataset = OxfordPetDataset(root, "valid")
    CachedSplit.load_or_build(dataset, 32, tmp_path / "cache")
    files = sorted((tmp_path / "cache").glob("*.pt"))
    assert len(files) == 1
    CachedSplit.load_or_build(dataset, 32, tmp_path / "cache")
    assert sorted((tmp_path / "cache").glob("*.pt")) == files  # reused
    key = cache_key(dataset, 32)
    assert cache_key(dataset, 48) != key
    image = dataset.image_path(dataset.names[0])
    image.write_bytes(image.read_bytes())  # same bytes, new modification time
    assert cache_key(dataset, 32) != key
    CachedSplit.load_or_build(dataset, 32, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2


@pytest.mark.parametrize("strength", ["basic", "strong"])
def test_batched_augmentation_keeps_masks_on_their_pixels(strength):
    torch.manual_seed(0)
    masks = torch.zeros(16, 32, 32, dtype=torch.uint8)
    for i in range(16):
        masks[i, 4 + i % 5 : 20 + i % 7, 6 : 18 + i % 9] = 1
    images = (masks[:, None].repeat(1, 3, 1, 1) * 255).to(torch.uint8)  # the mask, as an image
    out_images, out_masks = gpu_augment.augment(images, masks, strength)
    assert out_images.shape == (16, 3, 32, 32) and out_masks.shape == (16, 32, 32)
    assert set(out_masks.unique().tolist()) <= {0, 1}
    agree = ((out_images[:, 0] > 127) == out_masks.bool()).float().mean()
    assert agree > 0.95
    assert not torch.equal(out_masks, masks)  # something moved


def test_training_on_the_cached_path(synthetic_root, tmp_path):
    argv = train_args(synthetic_root, tmp_path, "--arch", "unet", "--trainer.max_epochs", "1",
                      "--data.cache", "true", "--data.cache_dir", str(tmp_path / "cache"),
                      "--model.channels_last", "true")  # fmt: skip
    assert train_main(argv) == 0
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3


def test_bench_runs_on_tiny_sizes(synthetic_root, tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--image_size", "32", "--batch_size", "2", "--steps", "1",
            "--root", str(synthetic_root), "--data_batches", "1", "--output", str(out),
            "--cache_dir", str(tmp_path / "cache")]  # fmt: skip
    assert bench_main(argv) == 0
    result = json.loads(out.read_text())
    for arch in ("unet", "resnet34_unet"):
        stats = result["train"][arch]
        assert stats["images_per_s"] > 0 and stats["flops_per_step"] > 0
        assert stats["fraction_of_matmul"] > 0
    assert result["data"]["cached_images_per_s"] > 0
    assert "time to val Dice" in capsys.readouterr().out
