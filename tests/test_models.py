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


def test_full_res_skip_feeds_the_last_decoder_stage():
    model = ResNet34UNet(base_channels=8, full_res_skip=True)
    plain = ResNet34UNet(base_channels=8)
    assert plain.stem is None
    # The last Up block takes the stem's 2 channels besides the upsampled ones.
    last_in = model.ups[-1].conv.block[0].in_channels
    assert last_in == plain.ups[-1].conv.block[0].in_channels + 2
    # A change of one pixel reaches its own output pixel through the stem; without the skip the
    # ResNet stem's stride-2 7x7 convolution is the only way in.
    model.eval()
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    model(x)[0, 0, 31, 31].backward()
    stem_grad = model.stem.block[0].weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0


def test_model_options_keep_what_the_architecture_takes():
    from petseg.models import model_options

    options = {"base_channels": 8, "bilinear": False, "full_res_skip": True}
    assert model_options("resnet34_unet", options) == options
    assert model_options("unet", options) == {"base_channels": 8, "bilinear": False}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("full_res_skip", [False, True, None])  # None: a checkpoint from before
def test_checkpoint_hyperparameters_rebuild_the_same_network(arch, full_res_skip):
    from petseg.checkpoints import checkpoint_spec, checkpoint_weights
    from petseg.module import SegmentationModule

    hparams = {"arch": arch, "base_channels": 8, "bilinear": False}
    if full_res_skip is not None:
        hparams["full_res_skip"] = full_res_skip
    module = SegmentationModule(**hparams)
    ckpt = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}
    if full_res_skip is None:
        del ckpt["hyper_parameters"]["full_res_skip"]
    model = checkpoint_spec(ckpt).build()
    model.load_state_dict(checkpoint_weights(ckpt))  # strict: every tensor has its place
    has_stem = getattr(model, "stem", None) is not None
    assert has_stem == (arch == "resnet34_unet" and bool(full_res_skip))
