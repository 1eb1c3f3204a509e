import pytest
import torch

from petseg.errors import PetsegError
from petseg.inference import predicted_mask
from petseg.postprocess import postprocess_logits


def _logits() -> torch.Tensor:
    """A 12x12 map: a 6x6 pet with a one-pixel hole, and a 2x2 speck apart from it."""
    mask = torch.zeros(12, 12, dtype=torch.bool)
    mask[1:7, 1:7] = True
    mask[3, 3] = False  # the hole
    mask[9:11, 9:11] = True  # the speck
    return torch.where(mask, 2.0, -2.0)[None, None].clone()


@pytest.mark.parametrize("mode", ["none", "largest", "fill", "both"])
def test_postprocessing_keeps_the_largest_region_and_fills_its_holes(mode):
    logits = _logits()
    out = postprocess_logits(logits, 0.5, mode)
    mask = predicted_mask(out)[0, 0]
    assert bool(mask[3, 3]) is (mode in ("fill", "both"))  # the hole
    assert bool(mask[9, 9]) is (mode in ("none", "fill"))  # the speck
    assert bool(mask[1, 1]) and not bool(mask[0, 0])  # the pet, the background
    changed = out != logits
    assert int(changed.sum()) == (mode in ("fill", "both")) + 4 * (mode in ("largest", "both"))
    assert torch.equal(_logits(), logits)  # the input is left as it was


def test_postprocessing_follows_the_threshold():
    logits = _logits()
    logits[0, 0, 9:11, 9:11] = 0.5  # the speck is pet at 0.5 (sigmoid 0.62) but not at 0.7
    assert bool(predicted_mask(postprocess_logits(logits, 0.7, "none"), 0.7)[0, 0, 1, 1])
    out = postprocess_logits(logits, 0.7, "largest")
    assert torch.equal(out[0, 0, 9:11, 9:11], logits[0, 0, 9:11, 9:11])  # nothing to remove
    filled = postprocess_logits(logits, 0.7, "fill")
    assert torch.sigmoid(filled[0, 0, 3, 3]) > 0.7


def test_an_unknown_postprocessing_is_refused():
    with pytest.raises(PetsegError, match="largest, fill, both"):
        postprocess_logits(_logits(), 0.5, "erode")
