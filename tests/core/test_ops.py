import pytest
import torch

from hinas_core.cells import MixedOp
from hinas_core.ops import OPS, DeformConv2d, check_op_names


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("channels", [1, 3, 8])
def test_every_op_keeps_shape(name, channels):
    op = OPS[name](channels)
    x = torch.randn(2, channels, 13, 17)
    assert op(x).shape == x.shape


@pytest.mark.parametrize("name", [n for n in OPS if n not in ("skip", "none")])
def test_conv_ops_are_activation_conv_bn(name):
    op = OPS[name](4)
    assert isinstance(op[0], torch.nn.ReLU)
    assert isinstance(op[-1], torch.nn.BatchNorm2d)
    assert isinstance(OPS[name](4, act="leaky_relu")[0], torch.nn.LeakyReLU)


def test_deformable_conv_starts_as_masked_regular_conv():
    # Zero-initialised offsets: DCNv2 samples the regular grid, every tap modulated by 0.5.
    dcn = DeformConv2d(3)
    x = torch.randn(2, 3, 9, 11)
    ref = torch.nn.functional.conv2d(x, dcn.weight, padding=1) * 0.5
    torch.testing.assert_close(dcn(x), ref, atol=1e-5, rtol=1e-4)
    dcn(x).sum().backward()
    assert dcn.offset_mask.weight.grad.abs().sum() > 0


def test_none_contributes_nothing_and_mixed_op_is_weighted_sum():
    torch.manual_seed(0)
    names = ("conv", "skip", "none")
    mixed = MixedOp(4, names).eval()
    x = torch.randn(1, 4, 8, 8)
    w = torch.tensor([0.2, 0.3, 0.5])
    expected = 0.2 * mixed.ops[0](x) + 0.3 * x
    torch.testing.assert_close(mixed(x, w), expected)


def test_unknown_op_names_are_rejected():
    with pytest.raises(ValueError, match="unknown op"):
        check_op_names(["conv", "pool"])
    with pytest.raises(ValueError, match="other than 'none'"):
        check_op_names(["none"])
    with pytest.raises(ValueError, match="duplicated"):
        check_op_names(["conv", "conv"])


@pytest.mark.parametrize("recompute", [False, True])
@pytest.mark.parametrize("align_corners", [False, True])
def test_sampled_deformable_conv_equals_torchvision_in_values_and_gradients(recompute, align_corners):
    from torchvision.ops import deform_conv2d

    from hinas_core.ops import deform_conv2d_sampled

    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    off = (2 * torch.randn(2, 18, 7, 9, dtype=torch.float64)).requires_grad_()  # reaches past borders
    mask = torch.rand(2, 9, 7, 9, dtype=torch.float64, requires_grad=True)
    ref = deform_conv2d(x, off, w, padding=1, mask=mask)
    out = deform_conv2d_sampled(x, off, w, mask, recompute=recompute, align_corners=align_corners)
    torch.testing.assert_close(out, ref)
    g_ref = torch.autograd.grad(ref.pow(2).sum(), (x, w, off, mask))
    g_out = torch.autograd.grad(out.pow(2).sum(), (x, w, off, mask))
    for a, b, name in zip(g_out, g_ref, ("x", "weight", "offset", "mask")):
        # Bilinear sampling has kinks at integer positions; random offsets avoid them.
        torch.testing.assert_close(a, b, msg=f"gradient of {name}")


@pytest.mark.parametrize("impl", ["torchvision", "sampled", "auto"])
def test_deformable_conv_implementations_agree_in_the_module(impl):
    torch.manual_seed(0)
    dcn = DeformConv2d(3, impl=impl)
    torch.nn.init.normal_(dcn.offset_mask.weight, std=0.3)
    ref = DeformConv2d(3, impl="torchvision")
    ref.load_state_dict(dcn.state_dict())
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(dcn(x), ref(x), atol=1e-5, rtol=1e-4)


def test_sampled_deformable_conv_samples_in_float32_under_bf16_autocast():
    """bf16 resolves a pixel coordinate of 63 only to 0.25: the sampling positions must stay
    float32 under autocast, so a bf16 run differs from float32 by bf16 rounding of the values only."""
    from hinas_core.ops import deform_conv2d_sampled

    torch.manual_seed(0)
    x = torch.rand(1, 4, 64, 64)
    w = torch.randn(4, 4, 3, 3) / 6
    off = 0.37 * torch.ones(1, 18, 64, 64)  # sub-pixel shift: bf16 positions would round it away near the far border
    mask = torch.ones(1, 9, 64, 64)
    ref = deform_conv2d_sampled(x, off, w, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = deform_conv2d_sampled(x.bfloat16(), off.bfloat16(), w, mask.bfloat16())
    err = (low.float() - ref).abs()[..., 48:62, 48:62].max()
    assert err < 0.02, err


def test_configure_dcn_sets_every_deformable_conv():
    from hinas_core.ops import configure_dcn

    net = torch.nn.Sequential(DeformConv2d(3), torch.nn.ReLU(), DeformConv2d(3))
    assert configure_dcn(net, impl="sampled", recompute=False) == 2
    assert all(m.impl == "sampled" and m.recompute is False for m in net if isinstance(m, DeformConv2d))
    with pytest.raises(ValueError, match="impl must be one of"):
        configure_dcn(net, impl="cuda")
