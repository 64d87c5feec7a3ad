"""GradStep: the training step's forward + backward, eager and as a CUDA graph."""
import dataclasses

import numpy as np
import pytest
import torch

from hinas_core import preset
from hinas_core.loss import HiNASLoss
from hinas_core.network import Supernet
from hinas_core.ops import DeformConv2d
from hinas_core.search import SearchConfig, Searcher
from hinas_core.steps import GradStep

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class NoiseSampler:
    def __init__(self, size=16):
        self.size = size

    def sample(self, rng, batch_size):
        clean = torch.from_numpy(rng.random((batch_size, 1, self.size, self.size), dtype=np.float32))
        return clean + 0.1 * torch.from_numpy(rng.standard_normal(clean.shape, dtype=np.float32)), clean


def _tiny(device="cpu"):
    torch.manual_seed(0)
    return Supernet(preset("tiny")).to(device)


def _same_kernels(net):
    """Eager and graph mode would otherwise differ in DCNv2 kernel (torchvision vs sampled)."""
    for m in net.modules():
        if isinstance(m, DeformConv2d):
            m.impl = "sampled"
    return net


def _batch(device="cpu", seed=0):
    return NoiseSampler().sample(np.random.default_rng(seed), 3) if device == "cpu" else \
        tuple(t.to(device) for t in NoiseSampler().sample(np.random.default_rng(seed), 3))


def test_eager_step_fills_exactly_the_requested_gradients():
    net = _tiny()
    crit = HiNASLoss()
    noisy, clean = _batch()
    arch = GradStep(net, crit, net.arch_parameters())
    loss = arch(noisy, clean)
    assert loss.ndim == 0 and not loss.requires_grad
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.arch_parameters())
    assert all(p.grad is None for p in net.weight_parameters())
    weights = GradStep(net, crit, net.weight_parameters())
    before = [p.grad.clone() for p in net.arch_parameters()]
    weights(noisy, clean)
    assert sum(p.grad is not None for p in net.weight_parameters()) > 0.9 * len(net.weight_parameters())
    # the arch gradients were left alone, and a second call replaces (does not add to) gradients
    assert all(torch.equal(b, p.grad) for b, p in zip(before, net.arch_parameters()))
    arch(noisy, clean)
    assert all(torch.allclose(b, p.grad) for b, p in zip(before, net.arch_parameters()))


def test_eager_step_gradient_equals_autograd_reference():
    net = _tiny()
    crit = HiNASLoss()
    noisy, clean = _batch()
    ref = torch.autograd.grad(crit(net(noisy), clean), net.arch_parameters())
    GradStep(net, crit, net.arch_parameters())(noisy, clean)
    for r, p in zip(ref, net.arch_parameters()):
        torch.testing.assert_close(p.grad, r)


def test_search_without_graphs_is_the_same_on_cpu_whatever_the_switch():
    """cuda_graph only acts on CUDA: on CPU both settings give identical searches."""
    results = []
    for graph in (False, True):
        cfg = SearchConfig(max_epochs=2, warmup_epochs=1, batch_size=2, cuda_graph=graph, seed=3)
        s = Searcher(preset("tiny"), cfg, NoiseSampler(), NoiseSampler(), lambda d: {"psnr": 20.0, "ssim": 0.5}, 2)
        s.run_epoch(), s.run_epoch()
        results.append((s.model.alpha.detach().clone(), [h["train_loss"] for h in s.history]))
    assert torch.equal(results[0][0], results[1][0]) and results[0][1] == results[1][1]


@cuda
@pytest.mark.parametrize("sharing", [True, False])
def test_graph_step_matches_eager_step_on_cuda(sharing):
    space = dataclasses.replace(preset("tiny"), cell_sharing=sharing)
    nets = []
    for graph in (False, True):
        torch.manual_seed(0)
        net = _same_kernels(Supernet(space).cuda())
        crit = HiNASLoss()
        step = GradStep(net, crit, net.weight_parameters(), cuda_graph=graph)
        opt = torch.optim.SGD(net.weight_parameters(), lr=0.01, momentum=0.9)
        losses = []
        for i in range(4):
            losses.append(step(*_batch("cuda", seed=i)).item())
            opt.step()
        nets.append((net, losses))
    (eager, le), (graphed, lg) = nets
    np.testing.assert_allclose(lg, le, rtol=1e-4)
    for a, b in zip(eager.state_dict().values(), graphed.state_dict().values()):
        torch.testing.assert_close(b.float(), a.float(), rtol=1e-3, atol=1e-4)


@cuda
def test_graph_search_follows_the_eager_search_on_cuda():
    out = []
    for graph in (False, True):
        cfg = SearchConfig(max_epochs=3, warmup_epochs=1, batch_size=4, cuda_graph=graph, seed=1)
        s = Searcher(preset("tiny"), cfg, NoiseSampler(), NoiseSampler(), lambda d: {"psnr": 20.0, "ssim": 0.5}, 3, "cuda")
        _same_kernels(s.model)
        for _ in range(3):
            s.run_epoch()
        out.append(s)
    eager, graphed = out
    np.testing.assert_allclose([h["train_loss"] for h in graphed.history], [h["train_loss"] for h in eager.history],
                               rtol=1e-3)
    # Adam turns float-rounding differences of tiny gradients into steps of ~lr; a wrong step is ~1e-3
    torch.testing.assert_close(graphed.model.alpha, eager.model.alpha, rtol=0, atol=2e-4)
    # resuming a graph-mode search from its state continues it (the graph is captured again)
    state = graphed.state_dict()
    cfg = SearchConfig(max_epochs=4, warmup_epochs=1, batch_size=4, cuda_graph=True, seed=1)
    again = Searcher(preset("tiny"), cfg, NoiseSampler(), NoiseSampler(), lambda d: {"psnr": 20.0, "ssim": 0.5}, 3, "cuda")
    again.load_state_dict(state)
    assert np.isfinite(again.run_epoch()["train_loss"])


@cuda
@pytest.mark.parametrize("align_corners", [False, True])
def test_sampled_deformable_conv_equals_torchvision_on_cuda(align_corners):
    """The sampled kernel on CUDA (PyTorch's grid_sample or cuDNN's sampler) against
    torchvision's CUDA kernel, values and gradients, float32 at the training shape."""
    from torchvision.ops import deform_conv2d

    from hinas_core.ops import deform_conv2d_sampled

    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(12, 24, 64, 64, generator=g), torch.randn(24, 24, 3, 3, generator=g) / 15
    off, mask = 2 * torch.randn(12, 18, 64, 64, generator=g), torch.rand(12, 9, 64, 64, generator=g)
    leaves = [t.cuda().requires_grad_() for t in (x, off, w, mask)]
    x, off, w, mask = leaves
    ref = deform_conv2d(x, off, w, padding=1, mask=mask)
    out = deform_conv2d_sampled(x, off, w, mask, align_corners=align_corners)
    # cuDNN runs the 1x1 contraction in TF32 (10-bit mantissa): compare relative norms.
    assert ((out - ref).norm() / ref.norm()).item() < 1e-3
    for a, b, name in zip(torch.autograd.grad(out.square().sum(), leaves), torch.autograd.grad(ref.square().sum(), leaves),
                          ("x", "offset", "weight", "mask")):
        # cuDNN's sampler computes the grid (offset) gradient less precisely: 2.9e-3 measured
        # on an H200 with TF32 off as well (PyTorch's own kernel: 1e-6).
        limit = 5e-3 if align_corners and name == "offset" else 1e-3
        assert ((a - b).norm() / b.norm()).item() < limit, name


@cuda
def test_compiled_bf16_channels_last_retraining_follows_fp32_on_cuda():
    """The fast retraining step (CUDA graph of the compiled model, bf16 autocast, NHWC) learns
    what the plain fp32 graph step learns: the same seed and batches give close losses."""
    from hinas_core.genotype import Genotype
    from hinas_core.models import hinas_spec
    from hinas_core.retrain import RetrainConfig, Trainer

    spec = hinas_spec(Genotype.load("example_denoise"), width=8)
    base = RetrainConfig(iterations=30, batch_size=12, report_every=30, lr=1e-3)
    ref = Trainer(spec, base, NoiseSampler(64), "cuda")
    fast = Trainer(spec, dataclasses.replace(base, precision="bf16", channels_last=True, compile=True), NoiseSampler(64), "cuda")
    m_ref, m_fast = ref.run(), fast.run()
    assert np.isfinite(m_fast["train_loss"])
    assert abs(m_fast["train_loss"] - m_ref["train_loss"]) < 0.05 * m_ref["train_loss"]
    x = NoiseSampler(64).sample(np.random.default_rng(9), 4)[0].cuda()
    with torch.no_grad():
        a, b = ref.denoiser()(x), fast.denoiser()(x)
    assert (a - b).abs().mean().item() < 0.02


@cuda
def test_search_and_retraining_resume_from_checkpoint_files_loaded_onto_the_gpu(tmp_path):
    """The trainables load checkpoints with map_location = their GPU, which moves the saved RNG
    states there too; resuming must still set the generators (it raised TypeError on an H200)."""
    from hinas_core.genotype import Genotype
    from hinas_core.models import hinas_spec, load_tensors
    from hinas_core.retrain import RetrainConfig, Trainer

    cfg = SearchConfig(max_epochs=3, warmup_epochs=1, batch_size=4, seed=1)
    evaluate = lambda d: {"psnr": 20.0, "ssim": 0.5}  # noqa: E731
    s = Searcher(preset("tiny"), cfg, NoiseSampler(), NoiseSampler(), evaluate, 2, "cuda")
    s.run_epoch()
    torch.save(s.state_dict(), tmp_path / "search.pt")
    rng = torch.get_rng_state()
    state = load_tensors(tmp_path / "search.pt", "search checkpoint", "cuda")
    assert state["torch_rng"].is_cuda
    again = Searcher(preset("tiny"), cfg, NoiseSampler(), NoiseSampler(), evaluate, 2, "cuda")
    torch.manual_seed(123)
    again.load_state_dict(state)
    assert torch.equal(torch.get_rng_state(), rng) and again.epoch == 1
    assert np.isfinite(again.run_epoch()["train_loss"])

    spec = hinas_spec(Genotype.load("example_denoise"), width=8)
    t = Trainer(spec, RetrainConfig(iterations=4, batch_size=2, report_every=2), NoiseSampler(64), "cuda")
    t.run()
    torch.save(t.state_dict(), tmp_path / "retrain.pt")
    rng = torch.get_rng_state()
    u = Trainer(spec, RetrainConfig(iterations=4, batch_size=2, report_every=2), NoiseSampler(64), "cuda")
    torch.manual_seed(123)
    u.load_state_dict(load_tensors(tmp_path / "retrain.pt", "retrain checkpoint", "cuda"))
    assert torch.equal(torch.get_rng_state(), rng) and u.iteration == 2
    assert np.isfinite(u.run()["train_loss"])
