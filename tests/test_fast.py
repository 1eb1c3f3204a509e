"""The cached data path, batched augmentation and the benchmark command."""

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

from conftest import train_args
from petseg.bench import main as bench_main
from petseg.cli import train_main
from petseg.data import OxfordPetDataset, PetDataModule, gpu_augment
from petseg.data import cache as cache_module
from petseg.data.cache import CachedSplit, cache_key
from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.data.sampler import SeededSampler
from petseg.data.transforms import AUGMENTS, eval_transform, train_transform
from petseg.errors import PetsegError


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


def test_presets_are_the_same_transforms_on_both_paths():
    import albumentations as A
    import cv2

    def standard(preset: str) -> list:
        steps = train_transform(48, preset).transforms
        return [(type(t).__name__, t.p) for t in steps if t.p < 1 or "Crop" in type(t).__name__]

    def batched(preset: str) -> list:
        return [(type(t).__name__, t.p) for t in gpu_augment.pipeline(preset, 48).children()]

    kornia_name = {"HorizontalFlip": "RandomHorizontalFlip", "Affine": "RandomAffine",
                   "RandomResizedCrop": "RandomResizedCrop", "ColorJitter": "ColorJitter",
                   "RandomGamma": "RandomGamma", "CLAHE": "_LightnessClahe",
                   "ChannelShuffle": "RandomChannelShuffle"}  # fmt: skip
    for preset in ("basic", "strong"):
        assert batched(preset) == [(kornia_name[name], p) for name, p in standard(preset)]
    assert len(standard("strong")) == 7 and gpu_augment.pipeline("none", 48) is None
    # outside the image, both paths fill image and mask with 0
    (affine,) = [t for t in train_transform(48, "basic").transforms if isinstance(t, A.Affine)]
    assert (affine.border_mode, affine.fill, affine.fill_mask) == (cv2.BORDER_CONSTANT, 0, 0)
    steps = gpu_augment.pipeline("basic", 48).children()
    (k_affine,) = [t for t in steps if type(t).__name__ == "RandomAffine"]
    assert k_affine.flags["padding_mode"].name == "ZEROS" and k_affine.flags["fill_value"] is None


def test_unknown_presets_are_refused_on_both_paths(synthetic_root):
    for make in (
        lambda: train_transform(48, "heavy"),
        lambda: gpu_augment.augment(torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
                                    torch.zeros(1, 32, 32, dtype=torch.uint8), "heavy"),
        lambda: PetDataModule(str(synthetic_root), augment="heavy", cache=True),
    ):  # fmt: skip
        with pytest.raises(PetsegError, match="augment 'heavy' is not one of: none, basic, strong"):
            make()
    assert AUGMENTS == ("none", "basic", "strong")


def _shapes_on_grey(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images that carry their own mask: sharp-edged coloured shapes (the pet) on grey texture,
    one shape along the left border and one in a corner, so that padding shows. uint8
    ``(N, 3, S, S)`` and ``(N, S, S)``."""
    g = torch.Generator().manual_seed(0)

    def r(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=g))

    grey = torch.randint(20, 236, (n, 1, size // 4, size // 4), generator=g).float()
    images = F.interpolate(grey, scale_factor=4.0, mode="nearest").repeat(1, 3, 1, 1)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    colours = torch.tensor([[230, 30, 30], [30, 200, 40], [40, 60, 230], [220, 200, 20]])
    for i in range(n):
        cy, cx, radius = r(size // 3, 2 * size // 3), r(size // 3, 2 * size // 3), r(6, 10)
        shapes = [
            (y - cy) ** 2 + (x - cx) ** 2 <= radius**2,
            (x < r(3, size // 4)) & (y >= r(0, size // 3)) & (y < r(2 * size // 3, size)),
            (y >= size - r(4, size // 4)) & (x >= size - r(4, size // 4)),
        ]
        for k, shape in enumerate(shapes):
            images[i][:, shape] = colours[(i + k) % 4, :, None].float()
            masks[i] |= shape
    return images.to(torch.uint8), masks.to(torch.uint8)


def _off_edge_disagreements(images: torch.Tensor, masks: torch.Tensor) -> int:
    """Pixels (0-255 images) where the pet read from the image (coloured: no brightness,
    contrast, saturation, hue, gamma, CLAHE or channel shuffle turns grey into colour or back)
    is not the mask, more than 2 pixels from the mask's edges and the image's border."""
    pet = (images.amax(1) - images.amin(1)) > 48
    m = masks[:, None].float()
    near_edge = (F.max_pool2d(m, 5, 1, 2) != -F.max_pool2d(-m, 5, 1, 2))[:, 0]
    return int(((pet != masks.bool()) & ~near_edge)[:, 1:-1, 1:-1].sum())


def _standard_augment(images, masks, preset: str):
    """The standard path's train_transform on each image, seeded, back to 0-255."""
    transform = train_transform(images.shape[-1], preset)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    out_images, out_masks = [], []
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        transform.set_random_seed(i)
        out = transform(image=image.permute(1, 2, 0).numpy().copy(), mask=mask.numpy())
        out_images.append(out["image"] * std + mean)
        out_masks.append(out["mask"])
    return torch.stack(out_images), torch.stack(out_masks)


@pytest.mark.parametrize("path", ["standard", "batched"])
@pytest.mark.parametrize("preset", ["basic", "strong"])
def test_masks_stay_on_their_pixels_on_both_paths(path, preset):
    images, masks = _shapes_on_grey(32, 48)
    assert _off_edge_disagreements(images.float(), masks) == 0
    if path == "standard":
        out_images, out_masks = _standard_augment(images, masks, preset)
    else:
        out_images, out_masks = gpu_augment.augment(images, masks, preset, seed=0)
    assert out_images.shape == (32, 3, 48, 48) and out_masks.shape == (32, 48, 48)
    assert out_masks.dtype == torch.uint8 and set(out_masks.unique().tolist()) == {0, 1}
    assert (out_masks != masks).sum() > 10_000  # flips, affine moves and crops happened
    if preset == "basic":
        assert (out_images.amax(1) == 0).sum() > 1000  # and they padded (the texture is >= 20)
    assert _off_edge_disagreements(out_images, out_masks) == 0


def test_batched_augmentation_follows_its_seed_alone(synthetic_root, tmp_path):
    images, masks = _shapes_on_grey(8, 48)
    state = torch.get_rng_state()
    a, b = (gpu_augment.augment(images, masks, "strong", seed=3) for _ in range(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(gpu_augment.augment(images, masks, "strong", seed=4)[0], a[0])
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is untouched
    # a training batch of the cached path carries a seed drawn from its items' (seed, epoch)
    cached = CachedSplit.load_or_build(OxfordPetDataset(synthetic_root, "train"), 48, tmp_path)
    sampler = SeededSampler(len(cached), seed=7)

    def batch_seeds(epoch: int) -> list[int]:
        sampler.set_epoch(epoch)
        keys = list(sampler)
        return [cached.__getitems__(keys[i : i + 8])[2] for i in range(0, len(keys), 8)]

    assert batch_seeds(1) == batch_seeds(1) != batch_seeds(2)
    assert len(cached.__getitems__([0, 1])) == 2  # plain indices: no seed


def test_cached_training_batches_follow_seed_and_epoch_alone(synthetic_root, tmp_path):
    from types import SimpleNamespace

    dm = PetDataModule(str(synthetic_root), image_size=32, batch_size=8, num_workers=0,
                       augment="strong", cache=True, cache_dir=str(tmp_path))  # fmt: skip
    dm.setup("fit")
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(5)  # the run's seed (SeededSampler takes torch.initial_seed())
    loader = dm.train_dataloader()

    def epoch(number: int, noise: int) -> list:
        torch.rand(noise)  # whatever else drew from the global generator before
        loader.sampler.set_epoch(number)
        return [dm.on_after_batch_transfer(batch, 0) for batch in loader]

    first, again, other = epoch(1, 3), epoch(1, 11), epoch(2, 3)
    for (a_img, a_mask), (b_img, b_mask) in zip(first, again, strict=True):
        assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)
    assert not torch.equal(first[0][0], other[0][0])


def _count_decodes(monkeypatch) -> list:
    calls = []
    decode = cache_module.decode_split

    def counted(dataset, *args, **kwargs):
        calls.append(dataset.split)
        return decode(dataset, *args, **kwargs)

    monkeypatch.setattr(cache_module, "decode_split", counted)
    return calls


def test_prepare_data_builds_the_cache_and_setup_only_loads_it(synthetic_root, tmp_path,
                                                               monkeypatch):  # fmt: skip
    calls = _count_decodes(monkeypatch)

    def datamodule() -> PetDataModule:
        return PetDataModule(str(synthetic_root), image_size=32, batch_size=4, num_workers=0,
                             download=False, cache=True, cache_dir=str(tmp_path))  # fmt: skip

    first = datamodule()
    first.prepare_data()  # Lightning: once per node, before any process's setup
    assert sorted(calls) == ["test", "train", "valid"] and len(list(tmp_path.glob("*.pt"))) == 3
    first.setup("fit")  # the same process: what prepare_data read, not read again
    other = datamodule()  # another DDP process: loads the files
    other.setup("fit")
    assert len(calls) == 3 and sorted(other.datasets) == ["train", "valid"]
    for split in ("train", "valid"):
        assert torch.equal(other.datasets[split].images, first.datasets[split].images)


def test_two_builders_at_once_leave_one_good_file(synthetic_root, tmp_path, monkeypatch):
    import threading

    both = threading.Barrier(2, timeout=30)
    decode = cache_module.decode_split

    def decode_together(*args, **kwargs):  # both have found no file, and both build it
        both.wait()
        return decode(*args, **kwargs)

    monkeypatch.setattr(cache_module, "decode_split", decode_together)
    dataset = OxfordPetDataset(synthetic_root, "valid")
    results, errors = [], []

    def build() -> None:
        try:
            results.append(CachedSplit.load_or_build(dataset, 32, tmp_path))
        except Exception as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2
    assert [p.name for p in tmp_path.iterdir()] == [cache_module.cache_path(dataset, 32, "").name]
    monkeypatch.setattr(cache_module, "decode_split", None)  # must load, not rebuild
    loaded = CachedSplit.load_or_build(dataset, 32, tmp_path)
    assert torch.equal(loaded.images, results[0].images)


@pytest.mark.parametrize("fault", ["truncated", "foreign"])
def test_a_bad_cache_file_is_reported_by_name_and_rebuilt(synthetic_root, tmp_path, fault):
    dataset = OxfordPetDataset(synthetic_root, "valid")
    good = CachedSplit.load_or_build(dataset, 32, tmp_path)
    path = cache_module.cache_path(dataset, 32, tmp_path)
    if fault == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        torch.save({"weights": torch.zeros(3)}, path)
    with pytest.warns(UserWarning, match=f"cache file {path} is not a usable petseg cache"):
        rebuilt = CachedSplit.load_or_build(dataset, 32, tmp_path)
    assert torch.equal(rebuilt.images, good.images) and torch.equal(rebuilt.masks, good.masks)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CachedSplit.load_or_build(dataset, 32, tmp_path)  # whole again: read without a word


def test_training_on_the_cached_path(synthetic_root, tmp_path):
    argv = train_args(synthetic_root, tmp_path, "--arch", "unet", "--trainer.max_epochs", "1",
                      "--data.cache", "true", "--data.cache_dir", str(tmp_path / "cache"),
                      "--model.channels_last", "true")  # fmt: skip
    assert train_main(argv) == 0
    files = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("*.pt"))
    assert files == ["train", "valid"]  # the test split is scored by Segmenter, from the files


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
