import pytest
import torch

from petseg.errors import PetsegError
from petseg.losses import LOSSES, SegmentationLoss, lovasz_hinge_loss, soft_dice_loss
from petseg.metrics import BinarySegmentationScores

BIG = 20.0  # a logit whose sigmoid is 1 (or 0) to float precision


def logits_from(pred: torch.Tensor) -> torch.Tensor:
    return torch.where(pred.bool(), BIG, -BIG)


def test_dice_and_iou_against_hand_computed_counts():
    pred = torch.zeros(3, 1, 4, 4)
    mask = torch.zeros(3, 1, 4, 4)
    pred[0, 0, :2, :2] = 1  # |P| = 4
    mask[0, 0, :2, :] = 1  # |T| = 8, |P∩T| = 4: Dice 8/12, IoU 4/8
    pred[1, 0, 0, 0] = 1  # |P| = 1, |T| = 0: Dice 0, IoU 0
    # image 2: prediction and mask both empty: Dice 1, IoU 1
    metric = BinarySegmentationScores()
    metric.update(logits_from(pred), mask)
    per_image = metric.per_image()
    torch.testing.assert_close(per_image["dice"], torch.tensor([8 / 12, 0.0, 1.0]))
    torch.testing.assert_close(per_image["iou"], torch.tensor([0.5, 0.0, 1.0]))
    scores = metric.compute()
    torch.testing.assert_close(scores["dice"], torch.tensor((8 / 12 + 0 + 1) / 3))
    # pooled: |P∩T| = 4, |P| + |T| = 13
    torch.testing.assert_close(scores["dice_dataset"], torch.tensor(8 / 13))
    torch.testing.assert_close(scores["iou_dataset"], torch.tensor(4 / 9))
    torch.testing.assert_close(scores["iou"], torch.tensor((0.5 + 0 + 1) / 3))


def test_dice_accumulates_over_batches_and_resets():
    metric = BinarySegmentationScores()
    mask = torch.ones(1, 1, 2, 2)
    metric.update(logits_from(mask), mask)  # perfect
    metric.update(logits_from(torch.zeros_like(mask)), mask)  # all missed
    assert metric.compute()["dice"].item() == pytest.approx(0.5)
    metric.reset()
    metric.update(logits_from(mask), mask)
    assert metric.compute()["dice"].item() == pytest.approx(1.0)


def test_threshold_is_on_probabilities():
    mask = torch.ones(1, 1, 1, 2)
    logits = torch.tensor([[[[0.1, -0.1]]]])  # probabilities just above and below 0.5
    metric = BinarySegmentationScores(threshold=0.5)
    metric.update(logits, mask)
    assert metric.compute()["dice"].item() == pytest.approx(2 * 1 / 3)


def test_soft_dice_loss_is_zero_for_confident_correct_and_one_for_wrong():
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1
    assert soft_dice_loss(logits_from(mask), mask).item() == pytest.approx(0.0, abs=1e-4)
    assert soft_dice_loss(logits_from(1 - mask), mask).item() == pytest.approx(1.0, abs=0.02)


def _lovasz_hinge_one_image(logits, labels):
    # The authors' reference (Berman et al., lovasz_losses.py) for one flattened image.
    signs = 2 * labels - 1
    errors = 1 - logits * signs
    errors_sorted, perm = torch.sort(errors, descending=True)
    gt_sorted = labels[perm]
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return torch.dot(torch.relu(errors_sorted), jaccard)


def test_lovasz_hinge_matches_the_reference_per_image():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 6, 5) * 2
    mask = (torch.rand(3, 1, 6, 5) > 0.6).float()
    mask[2] = 0  # an empty mask: the loss still counts its false positives
    pairs = zip(logits, mask, strict=True)
    expected = torch.stack([_lovasz_hinge_one_image(lg.flatten(), m.flatten()) for lg, m in pairs])
    assert lovasz_hinge_loss(logits, mask).item() == pytest.approx(expected.mean().item(), rel=1e-6)


def test_lovasz_hinge_is_zero_with_margin_and_one_minus_iou_at_zero_logits():
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    assert lovasz_hinge_loss(logits_from(mask), mask).item() == pytest.approx(0.0)
    # All hinge errors equal 1, so the loss is the Jaccard loss of getting every pixel wrong.
    assert lovasz_hinge_loss(torch.zeros_like(mask), mask).item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", LOSSES)
def test_losses_rank_correct_below_wrong_and_backpropagate(name):
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4] = 1
    loss = SegmentationLoss(name)
    good = logits_from(mask) / 4
    bad = logits_from(1 - mask).requires_grad_()
    assert loss(good, mask) < loss(bad, mask)
    loss(bad, mask).backward()
    assert torch.isfinite(bad.grad).all() and bad.grad.abs().sum() > 0


def test_bce_is_computed_on_logits_in_half_precision():
    # Large logits overflow a sigmoid-then-log pipeline in float16; BCE-with-logits does not.
    logits = torch.full((1, 1, 4, 4), 30.0, dtype=torch.float16)
    loss = SegmentationLoss("bce_dice")(logits, torch.zeros(1, 1, 4, 4))
    assert torch.isfinite(loss)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(PetsegError, match="bce_dice"):
        SegmentationLoss("focal")
