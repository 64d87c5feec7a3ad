import pytest
import torch

from hinas_core import Genotype, SpaceConfig, Supernet, build_network, count_parameters, num_edges, preset

TINY = dict(layers=3, nodes=2, base_width=2)


@pytest.mark.parametrize("sharing", [True, False])
@pytest.mark.parametrize("tied", [True, False])
def test_gradients_reach_every_weight_alpha_and_beta(sharing, tied):
    torch.manual_seed(0)
    net = Supernet(SpaceConfig(cell_sharing=sharing, tied_cells=tied, **TINY))
    x = torch.rand(2, 1, 12, 12)
    (net(x) - x).pow(2).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"
    assert net.alpha.grad.shape == net.alpha.shape
    assert net.beta is not None and torch.all(net.beta.grad != 0), "a beta entry got no gradient"
    assert torch.all(net.alpha.grad != 0), "an alpha entry got no gradient"


def test_arch_and_weight_parameters_are_disjoint_and_complete():
    net = Supernet(SpaceConfig(**TINY))
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert not arch & weights
    assert arch | weights == {id(p) for p in net.parameters()}
    assert len(net.arch_parameters()) == 2


@pytest.mark.parametrize("sharing", [True, False])
def test_shared_and_unshared_supernets_give_the_same_shapes(sharing):
    cfg = SpaceConfig(cell_sharing=sharing, **TINY)
    net = Supernet(cfg)
    x = torch.rand(3, 1, 16, 20)
    assert net(x).shape == x.shape
    # Eq. 6 holds one cell per incoming level: more cells, more parameters than Eq. 5.
    cells = len(net.net.cells)
    # 3 layers with levels (0,1), (0,1,2), (0,1,2); Eq. 6 counts one cell per incoming edge.
    assert cells == (8 if sharing else 2 + 5 + 7)


def test_transition_probabilities_are_masked_softmaxes():
    net = Supernet(SpaceConfig(**TINY))
    t = net.transition_probs()
    assert t.shape == (3, 3, 3)
    assert t[:, 0, 0].abs().sum() == 0 and t[:, 2, 2].abs().sum() == 0  # leaving the lattice
    assert t[0, 1:].abs().sum() == 0  # before layer 0 only level 0 (the stem) exists
    sums = t.sum(-1)
    for layer, s in [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]:
        assert sums[layer, s].item() == pytest.approx(1.0)


def test_supernet_derives_a_valid_genotype_that_builds():
    torch.manual_seed(1)
    cfg = SpaceConfig(**TINY)
    net = Supernet(cfg)
    with torch.no_grad():
        net.alpha.copy_(torch.randn_like(net.alpha))
        net.beta.copy_(torch.randn_like(net.beta))
    g = net.genotype()
    assert g.num_layers == 3 and g.num_nodes == 2 and g.widths == cfg.widths
    assert Genotype.from_json(g.to_json()) == g
    derived = build_network(g, width=4)
    x = torch.rand(2, 1, 12, 12)
    derived(x).mean().backward()
    assert all(p.grad is not None for p in derived.parameters())


def test_derived_network_from_a_hand_written_genotype_runs_forward_and_backward():
    g = Genotype.load("example_denoise")
    net = build_network(g, width=4)
    x = torch.rand(2, 1, 16, 16)
    y = net(x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1  # sigmoid output (CVPR)
    y.mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
    # One cell per layer, each at its level's width.
    assert [net.cells[k].channels for k in sorted(net.cells)] == [4, 8, 8, 4]


def test_width_scaling_keeps_level_ratios_and_grows_parameters():
    g = Genotype.load("example_denoise")
    small, big = build_network(g, width=10), build_network(g, width=20)
    assert count_parameters(big) > 3 * count_parameters(small)
    with pytest.raises(ValueError, match="width"):
        build_network(g, width=0)


@pytest.mark.parametrize("mode, levels, widths", [("w40", (0, 0, 0), (40,)), ("wm", (0, 1, 2), (10, 20, 40))])
def test_fixed_width_ablations_have_no_beta(mode, levels, widths):
    cfg = SpaceConfig(width_mode=mode, layers=3, nodes=2)
    net = Supernet(cfg)
    assert net.beta is None and net.arch_parameters() == [net.alpha]
    g = net.genotype()
    assert g.levels == levels and g.widths == widths
    assert net(torch.rand(1, 1, 12, 12)).shape == (1, 1, 12, 12)


def test_journal_switches():
    cfg = preset("journal")
    net = Supernet(cfg)
    assert net.alpha.shape == (3, num_edges(4), 5)
    assert cfg.widths == (10, 15, 20)
    g = net.genotype()
    assert len(g.cells) == 3 and "def" not in g.ops_used()
    x = torch.rand(1, 1, 12, 12)
    assert net(x).shape == x.shape


def test_a_residual_network_starts_as_the_identity_and_learns_from_there():
    x = torch.rand(2, 1, 16, 16) + 0.1 * torch.randn(2, 1, 16, 16)
    for net in (Supernet(SpaceConfig(**TINY, output="residual")),
                build_network(Genotype.load("example_denoise"), width=4, output="residual")):
        assert torch.equal(net(x), x)  # the end conv is zero: a noisy input comes back as it is
        net(x).sub(x.clamp(0, 1)).pow(2).mean().backward()
        end = net.net.end if isinstance(net, Supernet) else net.end  # a Supernet wraps its Topology
        assert end.weight.grad.abs().sum() > 0  # and it still gets a gradient
    sigmoid = build_network(Genotype.load("example_denoise"), width=4)  # the paper's: default init
    assert sigmoid.end.weight.abs().sum() > 0


def test_no_device_is_hard_coded():
    net = Supernet(SpaceConfig(**TINY)).to(torch.float64)
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    assert net(x).dtype == torch.float64
    assert net.transition_probs().dtype == torch.float64


@pytest.mark.parametrize("channels", [8, 40, 203])
def test_aspp_block_shapes_and_parameter_count(channels):
    from hinas_core.network import ASPP

    block = ASPP(channels)
    c, b = channels, channels // 4
    assert block(torch.rand(2, c, 13, 11)).shape == (2, b, 13, 11)
    assert count_parameters(block) == 4 * c * b + 4 * b * b + 27 * c + 6 * c + 10 * b  # the docstring's count


def test_aspp_in_the_end_part_adds_its_block_and_narrows_the_end_conv():
    g = Genotype.load("example_denoise")  # last level 0: the end part reads 5 nodes x 6 channels
    plain, aspp = build_network(g, width=6), build_network(g, width=6, aspp=True)
    x = torch.rand(2, 1, 20, 20)
    assert plain.aspp is None and aspp(x).shape == plain(x).shape == x.shape
    c = 5 * 6
    end_saved = 9 * (c - c // 4)  # the end conv reads c // 4 channels instead of c
    assert count_parameters(aspp) - count_parameters(plain) == count_parameters(aspp.aspp) - end_saved
    assert {k for k in aspp.state_dict() if not k.startswith("aspp.")} == set(plain.state_dict())  # nothing else differs
    aspp(x).pow(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in aspp.aspp.parameters())


def test_aspp_is_in_the_model_spec_only_when_on():
    from hinas_core.models import ModelError, build_model, hinas_spec

    g = Genotype.load("example_denoise")
    assert "aspp" not in hinas_spec(g, width=4)  # specs and model files from before the switch are unchanged
    spec = hinas_spec(g, target_params=60_000, aspp=True)
    assert spec["aspp"] is True and build_model(spec).aspp is not None
    assert abs(count_parameters(build_model(spec)) - 60_000) < abs(count_parameters(build_model({**spec, "width": spec["width"] + 2})) - 60_000)
    with pytest.raises(ModelError, match="aspp"):
        build_model({**spec, "aspp": "yes"})
