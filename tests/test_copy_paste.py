"""Copy-paste augmentation: pets pasted from other images of the batch, on both data paths."""

from types import SimpleNamespace

import pytest
import torch

from petseg.data import PetDataModule
from petseg.data.copy_paste import copy_paste, shift
from petseg.errors import PetsegError


def _batch(n=4, size=16):
    """Images whose every pixel says which image it came from; a square pet in each."""
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    masks[:, 4:9, 5:11] = 1
    return images.clone() + 100, masks


def test_shift_moves_with_zero_fill():
    x = torch.arange(16.0).view(4, 4)
    assert torch.equal(shift(x, 1, -1)[1:, :3], x[:3, 1:])
    assert shift(x, 1, -1)[0].abs().sum() == 0 and shift(x, 1, -1)[:, 3].abs().sum() == 0
    assert torch.equal(shift(x, 0, 0), x)


def test_each_chosen_image_gets_another_images_pet_and_the_union_mask():
    images, masks = _batch()
    before = images.clone(), masks.clone()
    out_images, out_masks = copy_paste(images, masks, p=1.0, seed=3)
    assert torch.equal(images, before[0]) and torch.equal(masks, before[1])  # inputs kept
    for i in range(len(images)):
        own = out_images[i, 0] == 100 + i
        pasted = ~own
        assert pasted.any(), i  # every image received a pet (p=1)
        sources = out_images[i, 0][pasted].unique()
        assert len(sources) == 1 and sources.item() != 100 + i  # from one other image
        assert out_masks[i][pasted].eq(1).all()  # the pasted pixels are pet
        assert out_masks[i][own].equal(masks[i][own])  # elsewhere the labels stay
        assert torch.equal(out_masks[i].bool(), masks[i].bool() | pasted)  # the union


def test_copy_paste_follows_its_seed_and_p_zero_changes_nothing():
    images, masks = _batch(8)
    a, b = copy_paste(images, masks, 0.5, seed=1), copy_paste(images, masks, 0.5, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = copy_paste(images, masks, 0.5, seed=2)
    assert not torch.equal(a[0], c[0])
    assert copy_paste(images, masks, 0.0, seed=1)[0] is images
    one = images[:1]
    assert copy_paste(one, masks[:1], 1.0, seed=1)[0] is one  # no other image to take from


@pytest.mark.parametrize("cache", [False, True])
def test_training_batches_get_pets_pasted_and_validation_batches_do_not(
    synthetic_root, tmp_path, cache
):
    def batches(copy_paste_p: float):
        dm = PetDataModule(str(synthetic_root), image_size=32, batch_size=8, num_workers=0,
                           augment="none", cache=cache, cache_dir=str(tmp_path),
                           copy_paste=copy_paste_p)  # fmt: skip

        dm.trainer = SimpleNamespace(  # the public Trainer state the batch seed reads
            training=True,
            current_epoch=0,
            global_step=0,
            strategy=SimpleNamespace(root_device=torch.device("cpu")),
        )
        dm.setup("fit")
        torch.manual_seed(0)
        train = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
        dm.trainer.training = False
        val = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
        return train, val

    (plain_x, plain_y), plain_val = batches(0.0)
    (mixed_x, mixed_y), mixed_val = batches(1.0)
    assert plain_y.shape == mixed_y.shape and plain_x.shape == mixed_x.shape
    assert (mixed_y >= plain_y).all() and mixed_y.sum() > plain_y.sum()
    assert not torch.equal(mixed_x, plain_x)
    assert torch.equal(plain_val[0], mixed_val[0]) and torch.equal(plain_val[1], mixed_val[1])


def test_copy_paste_probability_is_checked():
    with pytest.raises(PetsegError, match="copy_paste"):
        PetDataModule("x", copy_paste=1.5)
