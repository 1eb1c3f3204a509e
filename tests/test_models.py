import pytest
import torch

from petseg.errors import PetsegError
from petseg.models import ARCHS, ResNet34UNet, UNet, build_model


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bilinear", [False, True])
@pytest.mark.parametrize("size", [(64, 64), (64, 96), (70, 90)])
def test_forward_backward_shapes(arch, bilinear, size):
    model = build_model(arch, base_channels=8, bilinear=bilinear)
    x = torch.randn(2, 3, *size)
    logits = model(x)
    assert logits.shape == (2, 1, *size)
    logits.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("arch", ARCHS)
def test_full_width_forward(arch):
    model = build_model(arch).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_unet_parameter_count():
    # The classic UNet with transposed convolutions and BatchNorm, one output channel.
    assert _count(UNet()) == 31_037_633
    assert _count(UNet(bilinear=True)) == 31_384_833  # no channel halving before the concat


def test_resnet34_unet_parameter_count():
    model = ResNet34UNet()
    assert _count(model.encoder) == 21_284_672  # torchvision's resnet34 minus its fc layer
    assert _count(model) == 24_349_441


def test_resnet34_encoder_matches_torchvision_one_to_one():
    from torchvision.models import resnet34  # reference only: petseg's encoder is its own

    ours = list(ResNet34UNet().encoder.state_dict().items())
    ref = resnet34(weights=None).state_dict().items()
    ref = [(k, v) for k, v in ref if not k.startswith("fc.")]
    assert [(k, tuple(v.shape)) for k, v in ours] == [(k, tuple(v.shape)) for k, v in ref]


def test_registry_error_lists_valid_names():
    with pytest.raises(PetsegError, match="unet, resnet34_unet"):
        build_model("segformer")
