import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from hinas_core.loss import HiNASLoss
from hinas_core.metrics import psnr, ssim, ssim_map_mean


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shape", [(11, 11), (40, 64), (81, 53)])
def test_psnr_and_ssim_agree_with_scikit_image(seed, shape):
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, shape).astype(np.float64)
    noisy = clean + rng.normal(0, 25, shape)  # unclipped: the metrics clip the estimate
    clipped = np.clip(noisy, 0, 255)
    ref_ssim = structural_similarity(clipped, clean, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255)
    ref_psnr = peak_signal_noise_ratio(clean, clipped, data_range=255)
    assert abs(ssim(torch.tensor(noisy), torch.tensor(clean)).item() - ref_ssim) < 1e-4
    assert abs(psnr(torch.tensor(noisy), torch.tensor(clean)).item() - ref_psnr) < 1e-4


def test_metrics_are_per_image_on_batches():
    x = torch.rand(3, 1, 20, 20) * 200  # +10 stays below 255, so clipping does not interfere
    y = x.clone()
    y[1] += 10
    p = psnr(y, x)
    assert p.shape == (3,) and torch.isinf(p[0]) and p[1].item() == pytest.approx(28.13, abs=0.01)
    s = ssim(y, x)
    assert s[0].item() == pytest.approx(1.0) and s[1] < 1


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="11x11"):
        ssim_map_mean(torch.rand(1, 1, 8, 30), torch.rand(1, 1, 8, 30))
    with pytest.raises(ValueError, match="equal shapes"):
        ssim_map_mean(torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 21))


def test_loss_is_mse_plus_lambda_log_inverse_ssim_and_differentiable():
    torch.manual_seed(0)
    y = torch.rand(2, 1, 24, 24)
    x = (y + 0.1 * torch.randn_like(y)).requires_grad_()
    loss = HiNASLoss(0.5)(x, y)
    mse = (x - y).pow(2).mean()
    s = ssim_map_mean(x, y).mean()
    torch.testing.assert_close(loss, mse - 0.5 * torch.log10(s))
    loss.backward()
    assert x.grad.abs().sum() > 0
    assert HiNASLoss(0.0)(x, y).item() == pytest.approx(mse.item())
    assert HiNASLoss(0.5, average=True)(x, y).item() == pytest.approx(loss.item() / 2)
    assert HiNASLoss()(y, y).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="lambda"):
        HiNASLoss(-1)
