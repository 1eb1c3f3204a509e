import shutil
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from petseg.data import OxfordPetDataset, PetDataModule, read_image, split_names, trimap_to_mask
from petseg.data import download as download_module
from petseg.data.dataset import OFFICIAL_SPLIT_SIZES
from petseg.data.normalization import IMAGENET_MEAN, IMAGENET_STD
from petseg.data.transforms import eval_transform, resize, train_transform
from petseg.errors import PetsegError


def test_trimap_mapping_pet_and_border_are_foreground():
    trimap = np.array([[1, 2, 3], [2, 2, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(trimap_to_mask(trimap), [[1, 0, 1], [0, 0, 1]])


def test_official_split_sizes(official_splits):
    sizes = {s: len(split_names(official_splits, s)) for s in ("train", "valid", "test")}
    assert sizes == OFFICIAL_SPLIT_SIZES == {"train": 3312, "valid": 368, "test": 3669}


def test_split_rule_every_tenth_trainval_line_is_valid(official_splits):
    lines = (official_splits / "annotations" / "trainval.txt").read_text().split("\n")
    names = [line.split()[0] for line in lines if line.strip()]
    valid, train = split_names(official_splits, "valid"), split_names(official_splits, "train")
    assert valid[:2] == [names[0], names[10]]
    assert set(valid).isdisjoint(train) and len(valid) + len(train) == len(names)


def test_quirky_real_files_load_as_rgb(quirks_root):
    gif = read_image(quirks_root / "images" / "Abyssinian_34.jpg")  # a GIF named .jpg
    rgba = read_image(quirks_root / "images" / "Abyssinian_5.jpg")  # an RGBA PNG named .jpg
    assert gif.shape == (202, 250, 3) and gif.dtype == np.uint8
    assert rgba.shape == (150, 200, 3) and rgba.dtype == np.uint8


def test_all_background_trimap_gives_empty_mask(quirks_root):
    from petseg.data import read_mask

    assert read_mask(quirks_root / "annotations" / "trimaps" / "Abyssinian_34.png").sum() == 0


def test_real_sample_every_listed_file_loads(sample_root):
    for split in ("train", "valid", "test"):
        ds = OxfordPetDataset(sample_root, split, eval_transform(64))
        image, mask = ds[len(ds) - 1]
        assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
    assert len(OxfordPetDataset(sample_root, "test")) == 298


@pytest.mark.parametrize("augment", ["none", "basic", "strong"])
def test_transforms_give_normalised_tensors_and_binary_masks(synthetic_root, augment):
    ds = OxfordPetDataset(synthetic_root, "train", train_transform(48, augment))
    image, mask = ds[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32
    assert mask.shape == (48, 48) and set(mask.unique().tolist()) <= {0, 1}
    assert -3 < image.mean() < 3  # ImageNet-normalised, not 0..255


def test_resize_keeps_masks_binary_and_aligned(synthetic_root):
    ds = OxfordPetDataset(synthetic_root, "valid", eval_transform(64))
    _, raw_mask = ds.load(0)
    _, mask = ds[0]
    assert set(mask.unique().tolist()) == {0, 1}
    assert abs(mask.float().mean().item() - raw_mask.mean()) < 0.05


def test_shrinking_averages_the_image_instead_of_aliasing_it():
    """Shrunk 4x, each output pixel is the mean of its 4x4 block (area averaging): bilinear
    interpolation would read only the 2x2 pixels at the block's centre and alias fine detail."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    mask = (rng.random((128, 128)) < 0.5).astype(np.uint8)
    blocks = image.reshape(32, 4, 32, 4, 3).astype(np.float32).mean((1, 3))
    out = resize(32)(image=image, mask=mask)
    assert out["image"].shape == (32, 32, 3) and out["mask"].shape == (32, 32)
    assert np.abs(out["image"] - blocks).max() <= 1  # uint8 rounding
    assert set(np.unique(out["mask"])) <= {0, 1}  # masks keep a label per pixel
    for pipeline in (eval_transform(32), train_transform(32, "none")):  # the same resize
        normalised = pipeline(image=image, mask=mask)["image"]  # (3, 32, 32)
        expected = (blocks / 255 - IMAGENET_MEAN) / IMAGENET_STD  # (32, 32, 3)
        assert np.abs(normalised.permute(1, 2, 0).numpy() - expected).max() < 0.02


def test_unknown_augment_lists_valid_names():
    with pytest.raises(PetsegError, match="none, basic, strong"):
        train_transform(64, "extreme")


def test_datamodule_batches(synthetic_root):
    dm = PetDataModule(str(synthetic_root), image_size=32, batch_size=4, num_workers=0)
    dm.prepare_data()
    dm.setup("fit")
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and masks.shape == (4, 32, 32)
    assert len(dm.datasets["train"]) == 36 and len(dm.datasets["valid"]) == 4


def test_missing_data_without_download_says_what_to_do(tmp_path):
    dm = PetDataModule(str(tmp_path / "nothing"), download=False)
    with pytest.raises(PetsegError, match=r"lacks images.*--data.download true"):
        dm.prepare_data()


def test_root_without_split_files_names_them(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "trimaps").mkdir(parents=True)
    with pytest.raises(PetsegError, match=r"annotations/trainval\.txt, annotations/test\.txt"):
        PetDataModule(str(tmp_path), download=True).prepare_data()


def test_failed_download_says_where_to_put_the_data(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    calls = []

    def offline(url, **kwargs):
        calls.append(url)
        raise URLError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(PetsegError, match=r"could not download .*unpack both into"):
        download_module.ensure_data(tmp_path / "pets", allow_download=True)
    assert calls and calls[0].endswith("images.tar.gz")


def test_image_and_trimap_of_different_sizes_names_both(synthetic_root, tmp_path):
    import shutil

    from PIL import Image

    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    ds = OxfordPetDataset(root, "train")
    Image.new("L", (7, 5), 2).save(ds.mask_path(ds.names[0]))
    with pytest.raises(PetsegError, match=rf"{ds.names[0]}\.jpg is .* but its trimap"):
        ds[0]


def test_file_check_reports_bad_files_in_split_order(synthetic_root, tmp_path):
    import shutil

    from PIL import Image

    root = tmp_path / "copy"
    shutil.copytree(synthetic_root, root)
    ds = OxfordPetDataset(root, "train")
    names = list(ds.names)
    bad = [names[i] for i in (1, 5, 20, 30)]
    for name in reversed(bad):  # written out of order; the check reads them in threads
        Image.fromarray(np.full((4, 4), 7, np.uint8)).save(ds.mask_path(name))
    with pytest.raises(PetsegError) as err:
        ds.check_files(progress=False)
    message = str(err.value)
    assert message.startswith("4 bad train file(s): trimap ") and "and 1 more" in message
    positions = [message.index(name + ".png") for name in bad[:3]]
    assert positions == sorted(positions) and bad[3] not in message
    skipping = OxfordPetDataset(root, "train", skip_missing=True)
    with pytest.warns(UserWarning, match="skipping 4 unreadable train samples"):
        problems = skipping.check_files(progress=False)
    assert [p.split()[1] for p in problems] == [str(ds.mask_path(n)) for n in bad]
    assert skipping.names == [n for n in names if n not in bad]


def test_a_byte_order_mark_in_a_split_file_is_dropped(synthetic_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    trainval = root / "annotations" / "trainval.txt"
    trainval.write_bytes(b"\xef\xbb\xbf" + trainval.read_bytes())  # as some editors save it
    assert split_names(root, "valid") == split_names(synthetic_root, "valid")


def test_a_split_left_without_images_is_an_error_not_an_empty_run(synthetic_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    for image in (root / "images").iterdir():
        image.unlink()
    warned = pytest.warns(UserWarning, match="skipping 20 test entries")
    with warned, pytest.raises(PetsegError, match=r"test split under .* has no images: all 20"):
        OxfordPetDataset(root, "test", skip_missing=True)


def test_16_bit_grey_images_are_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257, 32896, 65535]], np.uint16)  # black, 1/255, mid grey, white
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as img:
        assert img.mode == "I;16"
    rgb = read_image(tmp_path / "grey16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    np.testing.assert_array_equal(rgb[..., 0], [[0, 1, 128, 255]])
    assert (rgb == rgb[..., :1]).all()
